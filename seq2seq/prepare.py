"""``python -m seq2seq.prepare [key=value ...]``: prepare the training corpus ahead of time.

Takes the same ``data.*`` settings and overrides as ``python -m seq2seq.train`` (no
model needed) and does what training would do first: encode the training split once
into the memory-mapped form of ``seq2seq/data/indexed.py``, in the cache that training
then finds (with ``trainer.init_from``, with that checkpoint's tokenizer, as a fine-tune
does). Useful on a CPU machine before a GPU job. Prints where the result is and its counts.
"""

from __future__ import annotations

import signal
import sys
import time

from seq2seq.cli.runner import run


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # ends the encoding workers and removes the unfinished folder


def _stopped(stop) -> None:
    print("stopped; nothing was prepared (a later run starts again)", file=sys.stderr)


def prepare_corpus(cfg) -> str:
    """Prepare (or find) the training corpus of ``cfg.data``; the lines that say where it is
    and what it holds."""
    # The preparation's modules load torch (about 2 s): only once the config is checked.
    from seq2seq.data.indexed import IndexedPairs
    from seq2seq.data.preparation import cache_folder, corpus_key, prepare

    start = time.time()
    tokenizer = None
    if cfg.trainer.init_from:  # a fine-tune's data: encoded with its parent's tokenizer
        from seq2seq.training.parent import check_parent, load_parent

        parent = load_parent(cfg.trainer.init_from)
        check_parent(cfg, parent)
        tokenizer = parent.tokenizer
    if cfg.data.corpora:
        return _prepare_corpora(cfg.data, tokenizer, start)
    key = corpus_key(cfg.data, tokenizer)
    found = (cache_folder(cfg.data, key[0]) / "meta.json").is_file()
    folder = prepare(cfg.data, key=key, tokenizer=tokenizer)
    meta = IndexedPairs(folder).meta
    return (
        f"{'found' if found else 'prepared'}: {folder}\n"
        f"{meta['pairs']:,} pairs kept of {meta['lines']:,}, {meta['longer_than_max_len']:,} longer than "
        f"data.max_len={cfg.data.max_len} left out; vocabulary {meta['vocab_size']['src']:,} "
        f"(target {meta['vocab_size']['tgt']:,}), ids as {meta['dtype']}; {time.time() - start:.1f} s"
    )


def _prepare_corpora(data, tokenizer, start: float) -> str:
    """``prepare_corpus`` of ``data.corpora``: the joint tokenizer and each corpus's folder."""
    from seq2seq.data.corpora import prepare_corpora
    from seq2seq.data.indexed import IndexedPairs

    lines = []
    for name, folder in zip(data.corpora, prepare_corpora(data, tokenizer), strict=True):
        meta = IndexedPairs(folder).meta
        lines.append(
            f"{name}: {folder}\n  {meta['pairs']:,} pairs kept of {meta['lines']:,}, "
            f"{meta['longer_than_max_len']:,} longer than data.max_len={data.max_len} left out"
        )
    lines.append(f"one vocabulary of {meta['vocab_size']['src']:,} pieces; {time.time() - start:.1f} s")
    return "\n".join(lines)


def main() -> None:
    """Prepare the corpus that ``configs/train.yaml`` and the overrides name, and report it."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    report = run("prepare", prepare_corpus, config="train", on_stop=_stopped)
    if report is not None:  # None: --help
        print(report)


if __name__ == "__main__":
    main()
