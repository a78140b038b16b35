"""BLEU and chrF of a transformers export as a user of transformers gets them: the folder's own
tokenizer, ``generate()`` with the folder's ``generation_config.json`` and nothing else, and
``batch_decode(skip_special_tokens=True)``; beside them, with ``--checkpoint``, what
``python -m seq2seq.evaluate`` scores for the checkpoint the folder came from, and the share of
identical outputs (docs/BENCHMARKS.md).

    python scripts/score_transformers.py HF_DIR [--checkpoint RUN/checkpoints/best.pt]
        [--src data/multi30k/test_2016_flickr.de.gz] [--ref data/multi30k/test_2016_flickr.en.gz]
        [--batch-size 64] [--threads N] [--output HYPS.txt]

Sentences are sorted by length and decoded ``--batch-size`` at a time, padded on the right with
an attention mask, then put back in input order. The seq2seq side runs ``TorchTranslator`` with the
decoding that ``evaluate`` uses by default (beam 5, docs/RECIPES.md), or ``--seq2seq-decoding``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU, CHRF

from seq2seq.data.reading import read_lines
from seq2seq.device import cpu_name

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT / "data" / "multi30k" / "test_2016_flickr"


def transformers_outputs(folder: Path, sentences: list[str], batch_size: int) -> tuple[list[str], float]:
    """Translations of ``sentences`` by the folder's model and tokenizer, and the seconds taken."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(str(folder), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    order = sorted(range(len(sentences)), key=lambda i: len(tokenizer.tokenize(sentences[i])))
    out = [""] * len(sentences)
    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        rows = order[b : b + batch_size]
        batch = tokenizer([sentences[i] for i in rows], return_tensors="pt", padding=True)
        with torch.inference_mode():
            ids = model.generate(**batch)
        for i, text in zip(rows, tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True):
            out[i] = text
    return out, time.perf_counter() - start


def seq2seq_outputs(checkpoint: Path, sentences: list[str], overrides: list[str]) -> tuple[list[str], float]:
    """Translations by seq2seq's torch engine with evaluate's default decoding (plus ``overrides``)."""
    from seq2seq.checkpoints.loading import load_model
    from seq2seq.config import compose
    from seq2seq.inference.torch_engine import TorchTranslator

    cfg = compose("evaluate", [f"checkpoint={checkpoint}", *overrides])
    model, tokenizer, _ = load_model(checkpoint)
    start = time.perf_counter()
    texts = TorchTranslator(model, tokenizer, cfg.decoding, "cpu")(sentences)
    return texts, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a transformers export (export format=transformers)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="the checkpoint it came from")
    parser.add_argument("--src", type=Path, default=Path(f"{TEST}.de.gz"))
    parser.add_argument("--ref", type=Path, default=Path(f"{TEST}.en.gz"))
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per generate() call")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=None, help="write the transformers outputs here")
    parser.add_argument(
        "--seq2seq-decoding", default="", help="comma-separated decoding overrides for the seq2seq side"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sentences, refs = read_lines(args.src), read_lines(args.ref)
    print(
        f"# {cpu_name()}; torch {torch.__version__}; {torch.get_num_threads()} threads; "
        f"{len(sentences)} sentences"
    )
    rows = []
    theirs, seconds = transformers_outputs(args.folder, sentences, args.batch_size)
    rows.append(("transformers generate()", theirs, seconds))
    if args.output is not None:
        args.output.write_text("\n".join(theirs) + "\n", encoding="utf-8")
    if args.checkpoint is not None:
        overrides = [o for o in args.seq2seq_decoding.split(",") if o]
        ours, seconds = seq2seq_outputs(args.checkpoint, sentences, overrides)
        rows.insert(0, ("seq2seq (torch engine)", ours, seconds))
    print("| system | BLEU | chrF | sentences/s | identical to seq2seq |")
    print("|---|---:|---:|---:|---:|")
    for name, texts, secs in rows:
        bleu = BLEU().corpus_score(texts, [refs]).score
        chrf = CHRF().corpus_score(texts, [refs]).score
        same = ""
        if args.checkpoint is not None and name.startswith("transformers"):
            same = f"{sum(a == b for a, b in zip(texts, rows[0][1], strict=True)):,} / {len(texts):,}"
        print(f"| {name} | {bleu:.2f} | {chrf:.2f} | {len(texts) / secs:,.1f} | {same} |")


if __name__ == "__main__":
    main()
