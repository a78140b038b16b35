"""Train on a general-domain corpus, then fine-tune on the in-domain one, in one time budget.

    python scripts/pretrain_finetune.py out=DIR [seconds=3480] [share=0.5] \\
        [general.src=FILE general.tgt=FILE] [key=value ...]

Three stages, each a plain seq2seq command, so every one of them can be rerun by hand:

1. ``seq2seq.train`` on the general corpus (default: the shipped Tatoeba de-en) into
   ``DIR/pretrain`` for ``share`` of the budget. Its vocabulary is learnt from that corpus
   and validation is the in-domain split, so its log shows how far general data alone get.
2. ``seq2seq.train trainer.init_from=DIR/pretrain/checkpoints/best.pt`` on the data config's
   own corpus (default: Multi30k) into ``DIR/finetune`` for the rest of the budget: a fresh
   optimiser and schedule, the parent's tokenizer.
3. ``seq2seq.average`` of the fine-tune's last three step checkpoints.

The budget is split as ``trainer.max_time`` (seconds in the training loop, validations
included), so the whole takes ``seconds`` plus each command's start-up (data preparation,
the first stage's vocabulary); the script prints the wall time at the end. Every other
``key=value`` goes to both trainings (``+model=transformer`` unless ``+model=NAME`` is
given).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from stages import fail, run, split_args

DEFAULTS = {
    "seconds": "3480",
    "share": "0.5",
    "general.src": "data/tatoeba-deu-eng/train.de.gz",
    "general.tgt": "data/tatoeba-deu-eng/train.en.gz",
}


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """The script's own ``key=value`` settings and the overrides passed on to training."""
    return split_args(argv, DEFAULTS, "the folder for the two runs")


def main() -> None:
    own, overrides = parse(sys.argv[1:])
    out = Path(own["out"])
    try:
        budget, share = float(own["seconds"]), float(own["share"])
    except ValueError:
        fail(f"seconds={own['seconds']} share={own['share']}: both are numbers")
    if not 0 < share < 1:
        fail(f"share={share:g}: the pretraining's part of the budget, between 0 and 1")
    start = time.monotonic()
    pretrain, finetune = out / "pretrain", out / "finetune"

    run(
        ["-m", "seq2seq.train", *overrides, f"data.train.src={own['general.src']}",
         f"data.train.tgt={own['general.tgt']}", f"trainer.max_time={budget * share:.0f}",
         f"hydra.run.dir={pretrain}"]
    )  # fmt: skip
    run(
        ["-m", "seq2seq.train", *overrides, f"trainer.init_from={pretrain}/checkpoints/best.pt",
         f"trainer.max_time={budget * (1 - share):.0f}", f"hydra.run.dir={finetune}"]
    )  # fmt: skip
    run(["-m", "seq2seq.average", f"checkpoints={finetune}/checkpoints", "last=3"])
    wall = time.monotonic() - start
    print(f"done in {wall:.0f} s of wall time: {finetune}/checkpoints/average_last3.pt", flush=True)


if __name__ == "__main__":
    main()
