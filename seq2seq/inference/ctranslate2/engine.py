"""Decoding an export (``format.py`` lists its files) with CTranslate2.

``CTranslate2Translator`` decodes with it behind ``Translator``'s interface, so
``translate`` and ``evaluate`` take every ``decoding.*`` key they take with
``engine=torch``. Each key maps to a ``translate_batch`` option:

    beam_size, nbest       beam_size, num_hypotheses
    alpha, patience        length_penalty (power: length ** alpha, EOS counted), patience
    no_repeat_ngram_size   no_repeat_ngram_size
    max_len_a, max_len_b   max_decoding_length: the batch's largest limit, then again for outputs
                           that reached their own (``CTranslate2Translator.decode``)
    sampling, temperature, top_k, top_p, seed
                           sampling_temperature, sampling_topk, sampling_topp, set_random_seed
    max_tokens, batch_size the batches seq2seq forms (sorted by length) and passes one at a time;
                           on the CPU CTranslate2 splits each among its workers (``open_ct2_translator``)

What CTranslate2 does not do is refused with one line (``check_options``): the
GNMT length penalty, searching to the end (``patience=0``) with a length
penalty, or ``patience`` with ``alpha=0`` (CTranslate2 then stops once its best
hypothesis is finished, which ``patience=0`` does here). With float32 weights and
the same options, the output is seq2seq's own, token for token (``tests/test_export.py``).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from seq2seq.data.tokenizer import referenced_tokenizer
from seq2seq.decoding import Hypothesis
from seq2seq.decoding.common import length_penalty, max_output_length
from seq2seq.decoding.options import search_name
from seq2seq.errors import UserError
from seq2seq.inference.ctranslate2.format import has_vmap, is_export, read_export, require_ctranslate2
from seq2seq.inference.translator import Translator

COMPUTE_TYPES = {"auto": "default", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Sentences per worker batch on the CPU: 16 and 32 led 64 on an int8 export, and with a
# vocabulary map the smaller parts (fewer candidates each) led further; 128 was slower, and one
# part per call left a worker idle (scripts/bench_ct2_workers.py, docs/BENCHMARKS.md).
WORKER_BATCH = 16


def check_options(decoding, key: str = "decoding") -> None:
    """Refuse, in one line, the decoding settings CTranslate2 cannot honour."""
    if search_name(decoding) != "beam":
        return
    if decoding.alpha > 0 and decoding.length_penalty != "power":
        raise UserError(
            f"{key}.length_penalty={decoding.length_penalty}: CTranslate2 ranks by length ** alpha only; "
            f"use {key}.length_penalty=power, or engine=torch"
        )
    if decoding.alpha > 0 and decoding.patience == 0:
        raise UserError(
            f"{key}.patience=0: with a length penalty CTranslate2 stops after round(beam_size * patience) "
            f"finished hypotheses; give {key}.patience > 0, or engine=torch"
        )
    if decoding.alpha == 0 and decoding.patience > 0:
        raise UserError(
            f"{key}.patience={decoding.patience}: with alpha=0 CTranslate2 searches until its best "
            f"hypothesis is finished; set {key}.patience=0 (the same search here), or engine=torch"
        )


def ct2_device(name: str, key: str = "device") -> tuple[str, int]:
    """CTranslate2's (device, index) for a ``device`` setting."""
    ctranslate2 = require_ctranslate2()
    gpus = ctranslate2.get_cuda_device_count()
    if name == "auto":
        return ("cuda", 0) if gpus else ("cpu", 0)
    if name.startswith("cuda"):
        index = int(name.partition(":")[2] or 0)
        if index >= gpus:
            raise UserError(f"{key}={name}: CTranslate2 sees {gpus} CUDA device(s); use {key}=cpu")
        return "cuda", index
    return "cpu", 0


def open_ct2_translator(
    folder, device: str = "cpu", index: int = 0, compute_type: str = "default", num_threads: int = 0
):
    """A ``ctranslate2.Translator`` on an export folder. On the CPU it runs one worker per
    thread (``num_threads``, 0: one per CPU this process may use), each worker single-threaded
    and given its own part of every batch: on 2 cores that decodes about twice as fast as one
    worker with two threads, whose small matrix products leave a thread waiting (measured in
    docs/BENCHMARKS.md). On a GPU, one worker."""
    ctranslate2 = require_ctranslate2()
    if device == "cpu":
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        workers = num_threads or len(usable)
        threads = {"inter_threads": workers, "intra_threads": 1}
    else:
        threads = {"inter_threads": 1, "intra_threads": num_threads}
    return ctranslate2.Translator(
        str(folder), device=device, device_index=index, compute_type=compute_type, **threads
    )


def worker_batch(ct2, sentences: int) -> int:
    """``max_batch_size`` for ``translate_batch`` of ``sentences`` on ``ct2``, a
    ``ctranslate2.Translator``: every worker gets a share, of at most ``WORKER_BATCH``
    sentences (0: no split, for one worker)."""
    workers = ct2.num_translators
    return 0 if workers == 1 else min(WORKER_BATCH, math.ceil(sentences / workers))


def translate_options(d, limit: int, use_vmap: bool = False) -> dict:
    """``translate_batch`` options for the search of a ``decoding`` config ``d``, for outputs
    of at most ``limit`` tokens, EOS counted; ``use_vmap``: score only the map's candidates."""
    opts = {
        "max_decoding_length": max(limit - 1, 1),
        "min_decoding_length": 0,
        "max_input_length": 0,
        "use_vmap": use_vmap,
    }
    search = search_name(d)
    if search == "sampling":
        sampling = {
            "sampling_topk": d.top_k,
            "sampling_topp": d.top_p,
            "sampling_temperature": d.temperature,
        }
        return {**opts, **sampling, "beam_size": 1, "return_scores": True, "length_penalty": 0}
    if search == "greedy":
        return {**opts, "beam_size": 1, "return_scores": True, "length_penalty": 0}
    return {
        **opts,
        "beam_size": d.beam_size,
        "num_hypotheses": d.nbest,
        "length_penalty": d.alpha,
        "patience": d.patience if d.patience > 0 else 1.0,
        "no_repeat_ngram_size": d.no_repeat_ngram_size,
        "return_scores": True,
    }


class CTranslate2Translator(Translator):
    """A ``Translator`` whose batches CTranslate2 decodes.

    Args:
        folder: an export folder.
        decoding: a ``decoding`` config (checked with ``check_options``).
        device, precision: the command's ``device`` and ``precision`` settings;
            precision ``auto`` keeps the export's own quantization.
        num_threads: CPU threads, one worker each (0: one per CPU; ``open_ct2_translator``).
    """

    def __init__(self, folder: Path, decoding, device: str = "auto", precision: str = "auto", num_threads=0):
        ctranslate2 = require_ctranslate2()
        check_options(decoding)
        self.meta = read_export(folder)
        tokenizer = referenced_tokenizer(self.meta["tokenizer"], folder, folder)
        super().__init__(tokenizer, decoding, self.meta["max_positions"])
        ct2_name, index = ct2_device(device)
        try:
            self.ct2 = open_ct2_translator(folder, ct2_name, index, COMPUTE_TYPES[precision], num_threads)
        except (RuntimeError, ValueError) as e:
            raise UserError(f"{folder}: CTranslate2 cannot load it: {str(e).splitlines()[0]}") from None
        self.use_vmap = has_vmap(folder)
        if decoding.get("seed") is not None:
            ctranslate2.set_random_seed(decoding.seed)

    def check_decoding(self, decoding, key: str = "decoding") -> None:
        """Refuse what CTranslate2 cannot honour (``check_options``), naming ``key``."""
        check_options(decoding, key)

    def with_decoding(self, decoding) -> CTranslate2Translator:
        """This translator with other decoding settings; a ``seed`` restarts CTranslate2's draws."""
        if decoding.get("seed") is not None:
            require_ctranslate2().set_random_seed(decoding.seed)
        return super().with_decoding(decoding)

    def describe(self) -> dict:
        """``engine``: ctranslate2, ``parameters`` (recorded by exports since they record it),
        ``quantization`` and whether a vocabulary map is used."""
        return {
            "engine": "ctranslate2",
            "parameters": self.meta.get("parameters"),
            "quantization": self.meta.get("quantization"),
            "vmap": self.use_vmap,
            "device": self.ct2.device,
        }

    def decode(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Hypotheses of one batch of source ids (each ending in EOS), best first.

        ``translate_batch`` takes one length limit, so the whole batch is decoded at its
        largest limit, then the sentences whose output reached their own limit are
        decoded again, in runs that share it. An output that ended before its limit is
        what its own limit gives: exactly so for greedy search; for beam search, but for
        a sentence whose search had a live beam at its limit and still chose a shorter
        hypothesis (how often: docs/BENCHMARKS.md). Torch is not even imported on this
        path: it would cost every command about 2 s of start-up, and its idle CPU threads
        would spin beside CTranslate2's."""
        d = self.cfg
        limits = [max_output_length(len(r), d.max_len_a, d.max_len_b, self.max_positions) for r in ids]
        pieces = [self.tokenizer.src_pieces(r[:-1]) for r in ids]  # CTranslate2 appends EOS
        longest = max(limits)
        out = self.translate(pieces, longest)
        reached = [i for i, hyps in enumerate(out) if max(len(h.tokens) for h in hyps) >= limits[i] - 1]
        for limit in sorted({limits[i] for i in reached if limits[i] < longest}):
            rows = [i for i in reached if limits[i] == limit]
            for i, hyps in zip(rows, self.translate([pieces[i] for i in rows], limit), strict=True):
                out[i] = hyps
        return out

    def translate(self, pieces: list[list[str]], limit: int) -> list[list[Hypothesis]]:
        """The hypotheses of source ``pieces`` with outputs of at most ``limit`` tokens, EOS counted."""
        options = translate_options(self.cfg, limit, self.use_vmap)
        results = self.ct2.translate_batch(
            pieces, max_batch_size=worker_batch(self.ct2, len(pieces)), **options
        )
        return [self.hypotheses_of(result) for result in results]

    def hypotheses_of(self, result) -> list[Hypothesis]:
        alpha = self.cfg.alpha if search_name(self.cfg) == "beam" else 0.0
        hyps = []
        for pieces, score in zip(result.hypotheses, result.scores, strict=True):
            tokens = [self.tokenizer.tgt.piece_to_id(p) for p in pieces]
            hyps.append(Hypothesis(tokens, score, score * length_penalty(len(tokens), alpha, "power")))
        return hyps


def ctranslate2_translator(checkpoint: str, decoding, device: str, precision: str, num_threads: int):
    """A ``CTranslate2Translator`` and the training config, for an export or a ``.pt``
    checkpoint (converted at start-up into a temporary float32 export)."""
    path = Path(checkpoint)
    if is_export(path):
        translator = CTranslate2Translator(path, decoding, device, precision, num_threads)
        return translator, translator.meta["config"]
    check_options(decoding)
    # A .pt is converted with torch, which the export path never loads otherwise.
    from seq2seq.checkpoints.loading import load_model
    from seq2seq.inference.ctranslate2.convert import write_export

    model, tokenizer, config = load_model(path)
    scratch = tempfile.TemporaryDirectory(prefix="seq2seq-ct2-")
    folder = Path(scratch.name) / "model"
    write_export(model, tokenizer, config, folder, "float32", path)
    translator = CTranslate2Translator(folder, decoding, device, precision, num_threads)
    translator.scratch = scratch  # removed with the translator
    return translator, config
