"""``python -m seq2seq.prepare [key=value ...]``: prepare the training corpus ahead of time.

Takes the same ``data.*`` settings and overrides as ``python -m seq2seq.train`` (no
model needed) and does what training would do first: encode the training split once
into the memory-mapped form of ``seq2seq/data/indexed.py``, in the cache that training
then finds. Useful on a CPU machine before a GPU job. Prints where the result is and
its counts.
"""

from __future__ import annotations

import logging
import signal
import sys
import time

from seq2seq.config import compose, help_text
from seq2seq.errors import UserError


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # ends the encoding workers and removes the unfinished folder


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(name)s] %(message)s")
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    args = sys.argv[1:]
    try:
        if any(a in ("-h", "--help") for a in args):
            print(help_text("train", compose("train", [a for a in args if a not in ("-h", "--help")], False)))
            return
        cfg = compose("train", args)
        from seq2seq.data.preparation import cache_folder, corpus_key, prepare

        start = time.time()
        key = corpus_key(cfg.data)
        found = (cache_folder(cfg.data, key[0]) / "meta.json").is_file()
        folder = prepare(cfg.data, key=key)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("stopped; nothing was prepared (a later run starts again)", file=sys.stderr)
        sys.exit(130)
    from seq2seq.data.indexed import IndexedPairs

    meta = IndexedPairs(folder).meta
    print(f"{'found' if found else 'prepared'}: {folder}")
    print(
        f"{meta['pairs']:,} pairs kept of {meta['lines']:,}, {meta['longer_than_max_len']:,} longer than "
        f"data.max_len={cfg.data.max_len} left out; vocabulary {meta['vocab_size']['src']:,} "
        f"(target {meta['vocab_size']['tgt']:,}), ids as {meta['dtype']}; {time.time() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
