"""How CTranslate2 should use the CPU's cores: workers × threads, and the part of a batch each
worker gets, on an export and real sentences.

Each setting (``--setting WxT:PART``) opens a ``ctranslate2.Translator`` with W workers
(``inter_threads``) of T threads each (``intra_threads``) and decodes the source file in calls
of ``--call`` sentences (in file order, every call at the longest output limit of the file),
each call split into parts of at most PART sentences (``max_batch_size``; 0: no split).
An export with a vocabulary map (``export vmap=true``) decodes with it, as ``translate`` does.
Settings run interleaved, ``--rounds`` times; sentences/s of every round. What
``seq2seq/inference/ctranslate2/engine.py`` chose (``open_ct2_translator``, ``WORKER_BATCH``) comes from this
table (docs/BENCHMARKS.md).

    python scripts/bench_ct2_workers.py EXPORT_DIR [--src data/multi30k/test_2016_flickr.de.gz]
        [--beam-size 5] [--call 500] [--rounds 2] [--setting 2x1:64 --setting 1x2:0 ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ctranslate2

from seq2seq.config import compose
from seq2seq.data.reading import read_lines
from seq2seq.data.tokenizer import referenced_tokenizer
from seq2seq.decoding.common import max_output_length
from seq2seq.device import cpu_name
from seq2seq.inference.ctranslate2.engine import translate_options
from seq2seq.inference.ctranslate2.format import has_vmap, read_export

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETTINGS = ["2x1:16", "2x1:32", "2x1:64", "2x1:128", "2x1:0", "1x2:64", "1x2:0"]


def parse_setting(text: str) -> tuple[int, int, int]:
    """'WxT:P' -> (workers, threads per worker, part size)."""
    shape, _, part = text.partition(":")
    workers, _, threads = shape.partition("x")
    return int(workers), int(threads), int(part or 0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("export", type=Path, help="a folder written by python -m seq2seq.export")
    parser.add_argument("--src", type=Path, default=ROOT / "data/multi30k/test_2016_flickr.de.gz")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--call", type=int, default=500, help="sentences per translate_batch call")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--setting", action="append", help="WORKERSxTHREADS:PART (PART 0: no split)")
    args = parser.parse_args(argv)

    meta = read_export(args.export)
    tokenizer = referenced_tokenizer(meta["tokenizer"], args.export, args.export)
    decoding = compose("translate", ["checkpoint=unused", f"decoding.beam_size={args.beam_size}"]).decoding
    ids = tokenizer.encode_src(read_lines(args.src))
    pieces = [tokenizer.src_pieces(row[:-1]) for row in ids]  # CTranslate2 appends EOS
    limit = max(
        max_output_length(len(r), decoding.max_len_a, decoding.max_len_b, meta["max_positions"]) for r in ids
    )
    vmap = has_vmap(args.export)
    options = translate_options(decoding, limit, vmap)
    calls = [pieces[i : i + args.call] for i in range(0, len(pieces), args.call)]
    settings = args.setting or DEFAULT_SETTINGS
    translators = {}
    for s in settings:
        workers, threads, _ = parse_setting(s)
        if (workers, threads) not in translators:
            translators[workers, threads] = ctranslate2.Translator(
                str(args.export), device="cpu", inter_threads=workers, intra_threads=threads
            )
    print(f"# {args.export}: {len(pieces)} sentences of {args.src.name}, calls of {args.call}, ", end="")
    print(f"beam {args.beam_size}{', with its vocabulary map' if vmap else ''}, {cpu_name()}")
    rates: dict[str, list[float]] = {s: [] for s in settings}
    for _ in range(args.rounds):
        for s in settings:
            workers, threads, part = parse_setting(s)
            ct2 = translators[workers, threads]
            start = time.perf_counter()
            for call in calls:
                ct2.translate_batch(call, max_batch_size=part, **options)
            rates[s].append(len(pieces) / (time.perf_counter() - start))
    print("| workers × threads | part | sentences/s, each round |")
    print("|---|---:|---|")
    for s in settings:
        workers, threads, part = parse_setting(s)
        print(
            f"| {workers} × {threads} | {part or 'no split'} | {' / '.join(f'{r:.1f}' for r in rates[s])} |"
        )


if __name__ == "__main__":
    main()
