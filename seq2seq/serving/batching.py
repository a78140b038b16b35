"""Requests decoded together: one bounded queue, batches formed by source tokens and time,
decoded off the event loop, split back to their requests.

A ``Job`` is one request's non-empty sentences, already encoded. ``Batcher.submit`` queues
it (``QueueFull`` when ``queue_size`` jobs wait). ``Batcher.run`` takes the oldest job, then
every job that arrives until the batch holds ``max_tokens`` source tokens or ``max_wait``
seconds have passed since that first job arrived, and decodes them on its one decoding
thread; jobs whose client went away (their future cancelled) are dropped unseen. Jobs with
the same decoding options share ``Translator.decode_all`` (sorted by length, batched by
``decoding.max_tokens``); a seeded sampling job is decoded alone, so its draws are those
``translate`` makes for the same sentences.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from seq2seq.inference.translator import Translator, one_line

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds ``queue_size`` jobs: the request is refused (503)."""


@dataclass(eq=False)
class Job:
    """One request's work.

    ids: the source ids of its non-empty sentences (each ending in EOS).
    key: its decoding options (``api.option_key``): jobs with equal keys are decoded together.
    decoding: the ``decoding`` config of those options.
    solo: decode it alone (seeded sampling).
    attention: (layer, head) when the request asked for attention weights, else None.
    """

    ids: list[list[int]]
    key: tuple = ()
    decoding: Any = None
    solo: bool = False
    attention: tuple | None = None
    future: asyncio.Future | None = field(default=None, repr=False)
    arrived: float = 0.0

    @property
    def tokens(self) -> int:
        return sum(len(r) for r in self.ids)


def decode_jobs(translator: Translator, jobs: list[Job]) -> list[Any]:
    """Decode ``jobs`` (on the decoding thread): for each, the list of its sentences' results
    (``sentence_results``), or the exception that decoding its group raised."""
    groups: dict[Any, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(("solo", i) if job.solo else job.key, []).append(i)
    out: list[Any] = [None] * len(jobs)
    for members in groups.values():
        first = jobs[members[0]]
        try:
            engine = translator if not first.key else translator.with_decoding(first.decoding)
            hyps = engine.decode_all([r for i in members for r in jobs[i].ids])
            start = 0
            for i in members:
                n = len(jobs[i].ids)
                out[i] = sentence_results(engine, jobs[i], hyps[start : start + n])
                start += n
        except Exception as e:  # one group's failure is its requests' 500, not the server's end
            log.exception("decoding failed")
            for i in members:
                out[i] = e
    return out


def sentence_results(engine: Translator, job: Job, hyps: list[list]) -> list[dict]:
    """For each sentence of ``job``, its hypotheses as ``{"text", "score"}`` dicts, best
    first, each with ``attention`` (source and target pieces, weights) when the job asked."""
    tok = engine.tokenizer
    results = [
        [{"text": one_line(tok.decode_tgt(h.tokens)), "score": float(h.score)} for h in sentence]
        for sentence in hyps
    ]
    if job.attention is None:
        return results
    layer, head = job.attention
    pairs = [(src, h.tokens) for src, sentence in zip(job.ids, hyps, strict=True) for h in sentence]
    weights = engine.attention([s for s, _ in pairs], [t for _, t in pairs], layer, head) or []
    flat = [h for sentence in results for h in sentence]
    for hyp, (src, out), w in zip(flat, pairs, weights, strict=False):
        hyp["attention"] = {
            "source": tok.src_pieces(src),
            "target": [*tok.tgt_pieces(out), "</s>"],
            "weights": [[round(x, 5) for x in row] for row in w],
        }
    return results


class Batcher:
    """The queue and the loop that decodes it (see the module's docstring).

    Args:
        translator: any engine.
        max_tokens: source tokens a batch collects at most (``decoding.max_tokens``).
        max_wait: seconds a batch waits for more jobs after its first one arrived.
        queue_size: jobs that may wait.
    """

    def __init__(self, translator: Translator, max_tokens: int, max_wait: float, queue_size: int):
        self.translator, self.max_tokens, self.max_wait = translator, max_tokens, max_wait
        self.queue_size = queue_size
        self.queue: collections.deque[Job] = collections.deque()
        self.arrival = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="seq2seq-decode")
        self.stats = {"batches": 0, "jobs": 0, "sentences": 0, "dropped": 0, "refused": 0}
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=1000)  # jobs per batch

    def submit(self, job: Job) -> asyncio.Future:
        """Queue ``job``; returns the future of its results. Raises ``QueueFull``."""
        if len(self.queue) >= self.queue_size:
            self.drop_cancelled()
            if len(self.queue) >= self.queue_size:
                self.stats["refused"] += 1
                raise QueueFull
        loop = asyncio.get_running_loop()
        job.future, job.arrived = loop.create_future(), loop.time()
        self.queue.append(job)
        self.arrival.set()
        return job.future

    def drop_cancelled(self) -> None:
        """Forget queued jobs whose request was abandoned."""
        kept = [j for j in self.queue if not j.future.done()]
        self.stats["dropped"] += len(self.queue) - len(kept)
        self.queue = collections.deque(kept)

    def pop_live(self) -> Job | None:
        """The oldest queued job whose request still waits, or None."""
        while self.queue:
            job = self.queue.popleft()
            if not job.future.done():
                return job
            self.stats["dropped"] += 1
        return None

    async def next_batch(self) -> list[Job]:
        """Wait for a job, then gather a batch behind it (see the class docstring)."""
        loop = asyncio.get_running_loop()
        first = self.pop_live()
        while first is None:
            self.arrival.clear()
            await self.arrival.wait()
            first = self.pop_live()
        batch, tokens, deadline = [first], first.tokens, first.arrived + self.max_wait
        while tokens < self.max_tokens:
            while self.queue and self.queue[0].future.done():
                self.queue.popleft()
                self.stats["dropped"] += 1
            if self.queue:
                if tokens + self.queue[0].tokens > self.max_tokens:
                    break
                job = self.queue.popleft()
                batch.append(job)
                tokens += job.tokens
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.arrival.clear()
            try:
                await asyncio.wait_for(self.arrival.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    async def run(self) -> None:
        """Decode batches until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [j for j in await self.next_batch() if not j.future.done()]
            if not batch:
                continue
            results = await loop.run_in_executor(self.executor, decode_jobs, self.translator, batch)
            self.stats["batches"] += 1
            self.stats["jobs"] += len(batch)
            self.stats["sentences"] += sum(len(j.ids) for j in batch)
            self.batch_sizes.append(len(batch))
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def close(self) -> None:
        """Stop the decoding thread (after the batch in progress)."""
        self.executor.shutdown(wait=True, cancel_futures=True)
