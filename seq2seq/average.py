"""``python -m seq2seq.average checkpoints=RUN/checkpoints last=N``: average checkpoints.

The mean of the weights of the N newest ``step_<N>.pt`` of a run (kept by
``trainer.keep_last``), or of ``inputs=a.pt,b.pt,...``, written atomically as one
checkpoint that ``evaluate``, ``translate``, ``export`` and ``trainer.init_from`` take like
any other. The inputs must be one model with one tokenizer. The result carries that
tokenizer, so it may be written anywhere (``output=``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from seq2seq.checkpoints.format import LAST, step_checkpoints
from seq2seq.cli.files import check_output_file, checkpoint_paths, refuse_exports
from seq2seq.cli.runner import run
from seq2seq.errors import UserError

log = logging.getLogger("seq2seq.average")


def newest_steps(folder: Path, last: int) -> list[Path]:
    """The ``last`` newest ``step_<N>.pt`` of ``folder``, oldest first."""
    if not folder.is_dir():
        raise UserError(f"checkpoints={folder}: no such folder; give RUN_DIR/checkpoints")
    steps = step_checkpoints(folder)
    if len(steps) < last:
        raise UserError(
            f"checkpoints={folder}: {len(steps)} step_<N>.pt checkpoints, fewer than last={last}; "
            "train with trainer.keep_last >= N, or average fewer"
        )
    return steps[-last:]


def choose(cfg) -> tuple[list[Path], Path]:
    """The checkpoints to average and the output path, from the command's settings."""
    if (cfg.checkpoints is None) == (cfg.inputs is None):
        raise UserError("give checkpoints=RUN/checkpoints with last=N, or inputs=a.pt,b.pt (one of the two)")
    if cfg.checkpoints is not None:
        if cfg.last < 1:
            raise UserError("last=N: how many of the newest step checkpoints to average (at least 1)")
        paths = newest_steps(Path(cfg.checkpoints), cfg.last)
        default = Path(cfg.checkpoints) / f"average_last{cfg.last}.pt"
    else:
        names = checkpoint_paths(cfg.inputs, "inputs")
        refuse_exports(names)
        paths = [Path(p) for p in names]
        if cfg.last:
            raise UserError("last= goes with checkpoints=; inputs= names the checkpoints itself")
        default = paths[0].parent / "average.pt"
    output = Path(cfg.output) if cfg.output else default
    if output.resolve() in {p.resolve() for p in paths} or output.name == LAST:
        raise UserError(f"output={output}: would overwrite a checkpoint of the run; give another name")
    check_output_file(str(output), "output")
    return paths, output


def average(cfg) -> Path:
    """Average the checkpoints ``cfg`` names into one, and check that it loads."""
    # torch loads here, once the config is checked: --help and a mistake answer at once.
    from seq2seq.checkpoints.averaging import average_checkpoints
    from seq2seq.checkpoints.format import save_checkpoint
    from seq2seq.checkpoints.loading import load_model

    paths, output = choose(cfg)
    save_checkpoint(average_checkpoints(paths), output)
    load_model(output)  # it loads as evaluate and translate will load it
    print(f"{output}: the mean of {len(paths)} checkpoints: {', '.join(p.name for p in paths)}")
    return output


def main() -> None:
    """``python -m seq2seq.average``: see the module's docstring."""
    run("average", average)


if __name__ == "__main__":
    main()
