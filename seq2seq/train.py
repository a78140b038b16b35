"""``python -m seq2seq.train +model=NAME [key=value ...]``: train a model.

On several processes: ``torchrun --standalone --nproc_per_node=N -m seq2seq.train ...``
(see ``seq2seq/training/distributed.py``). ``--help`` lists every key with its default and range.

Exit status: 0 when training ends by a budget (or the run directory already met
it), 2 for a user mistake (one ``error:`` line), 130 after Ctrl-C and 143 after
SIGTERM (``last.pt`` saved first, see ``seq2seq/training/signals.py``).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoints.checkpointer import Checkpointer
from seq2seq.checkpoints.format import CHECKPOINTS, LAST, TOKENIZER
from seq2seq.cli.runner import asks_help, exits, show_help
from seq2seq.config import CONFIG_DIR, check, compose, register_presets, require_model
from seq2seq.errors import UserError
from seq2seq.training import distributed
from seq2seq.training.budget import completed
from seq2seq.training.data import data_key
from seq2seq.training.signals import Interrupted

log = logging.getLogger("seq2seq.train")

# What a run directory holds before the first step: Hydra's files, then the trainer's config and tokenizer.
BEFORE_TRAINING = (".hydra", "train.log", "config.yaml", TOKENIZER)


# hydra.run.dir of this command when that folder existed before it started: never removed.
_existing_run_dir: list[Path] = []


def remove_if_unused(run_dir: Path) -> None:
    """Delete ``run_dir`` when this command made it and it holds nothing but what the
    command wrote before training started; then the folders above it that this leaves
    empty (``outputs/<date>``, ``outputs``), up to the working directory."""
    run_dir, here = run_dir.resolve(), Path.cwd().resolve()
    if run_dir in _existing_run_dir or run_dir == here or run_dir in here.parents:
        return
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if not names or not all(n in BEFORE_TRAINING or n.startswith("train_rank") for n in names):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    folder = run_dir.parent
    while folder != here and here in folder.parents and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def resume_command(run_dir: Path) -> str:
    """The command that continues this run exactly: its overrides, its run directory,
    and under torchrun as many processes."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.run.dir=")]
    world = distributed.world_size()
    start = ["python", "-m"] if world == 1 else ["torchrun", f"--nproc_per_node={world}", "-m"]
    return shlex.join([*start, "seq2seq.train", *overrides, f"hydra.run.dir={run_dir}"])


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    require_model(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    removable = distributed.is_main() and HydraConfig.get().mode == RunMode.RUN  # not a sweep's job
    if not distributed.is_main():  # the main process reports; the others only warn
        logging.getLogger("seq2seq").setLevel(logging.WARNING)

    def failed(e: UserError) -> None:
        log.error("%s", e)
        if removable:
            remove_if_unused(run_dir)

    def stopped(stop: Interrupted) -> None:
        log.info("stopped by %s before training started; nothing new was saved", stop)
        if removable:
            remove_if_unused(run_dir)

    with exits(on_error=failed, on_stop=stopped):
        # The trainer's modules (models, matplotlib, ...) take about 0.7 s to import: not
        # before the overrides are checked, so that --help and a mistake answer at once.
        from seq2seq.training.trainer import train

        trainer = train(check(cfg, "train"), run_dir, resume_command(run_dir))
    if trainer.stops.received:
        sys.exit(128 + trainer.stops.received)


def _raise_on_sigterm(signum, frame):
    raise Interrupted(signum)


def _chosen_run_dir(args: list[str]) -> Path | None:
    """The folder ``hydra.run.dir=...`` names on the command line, if any."""
    chosen = [a for a in args if a.lstrip("+").startswith("hydra.run.dir=")]
    if not chosen:
        return None
    value = OverridesParser.create().parse_overrides(chosen[-1:])[0].value()
    return Path(str(value))


def _already_complete(cfg: DictConfig, run_dir: Path | None) -> str | None:
    """When ``run_dir`` holds a run whose ``last.pt`` met its budget, the line that says
    so (checked before Hydra writes anything into that directory)."""
    if run_dir is None or not (run_dir / CHECKPOINTS / LAST).is_file():
        return None
    from seq2seq.training.parent import kept_tokenizer  # torch: only for a run directory with a checkpoint

    checkpointer = Checkpointer(run_dir, OmegaConf.to_container(cfg, resolve=True))
    saved = checkpointer.previous()
    checkpointer.check_data(saved, data_key(cfg.data, kept_tokenizer(saved))[0])
    done = completed(saved, cfg.trainer)
    return f"{done}; nothing changed" if done else None


def main() -> None:
    """Check the overrides first, so that a wrong model name or key is one line of
    error, then hand over to Hydra (which also runs ``-m`` sweeps)."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # the trainer takes over once it starts
    register_presets()  # before Hydra composes +model=NAME, here or in _main
    args = sys.argv[1:]
    with exits():
        if asks_help(args):
            show_help("train", args, checked=True)
            return
        if any(a.startswith("-") for a in args):  # Hydra flags such as -m: Hydra checks the rest
            if distributed.launched():
                raise UserError("under torchrun give key=value overrides only, no Hydra flags such as -m")
        else:
            cfg = compose("train", args)
            run_dir = _chosen_run_dir(args)
            if run_dir is not None and run_dir.exists():
                _existing_run_dir.append(run_dir.resolve())
            if cfg.model is not None and (done := _already_complete(cfg, run_dir)):
                print(done, file=sys.stderr)
                return
            if distributed.launched():
                distributed.init(cuda=distributed.wants_cuda(cfg.trainer.device))
                sys.argv += distributed.run_dir_overrides(args)
    finished = False
    try:
        _main()
        finished = True
    except SystemExit as e:  # a signal stop is one that every process makes at the same step
        finished = e.code in (None, 0, 130, 143)
        raise
    finally:
        distributed.shutdown(wait=finished)


if __name__ == "__main__":
    main()
