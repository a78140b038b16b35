"""``python -m seq2seq.train +model=NAME [key=value ...]``: train a model.

On several processes: ``torchrun --standalone --nproc_per_node=N -m seq2seq.train ...``
(see ``seq2seq/distributed.py``). ``--help`` lists every key with its default and range.

Exit status: 0 when training ends by a budget (or the run directory already met
it), 2 for a user mistake (one ``error:`` line), 130 after Ctrl-C and 143 after
SIGTERM (``last.pt`` saved first, see ``seq2seq/signals.py``).
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
from omegaconf import DictConfig, OmegaConf

from seq2seq import distributed
from seq2seq.config import CONFIG_DIR, check, compose, help_text, require_model
from seq2seq.errors import UserError
from seq2seq.signals import Interrupted

log = logging.getLogger("seq2seq.train")

# What a run directory holds before the first step: Hydra's files, then the trainer's config and tokenizer.
BEFORE_TRAINING = (".hydra", "train.log", "config.yaml", "tokenizer")


def remove_if_unused(run_dir: Path) -> None:
    """Delete ``run_dir`` when it holds nothing but what this command wrote before training
    started, and the folders above it that this leaves empty (``outputs/<date>``, ``outputs``)."""
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if not names or not all(n in BEFORE_TRAINING or n.startswith("train_rank") for n in names):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    here, folder = Path.cwd().resolve(), run_dir.resolve().parent
    while folder != here and here in folder.parents and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def resume_command(run_dir: Path) -> str:
    """The command that continues this run: its overrides, and its run directory."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.run.dir=")]
    return shlex.join(["python", "-m", "seq2seq.train", *overrides, f"hydra.run.dir={run_dir}"])


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    require_model(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if not distributed.is_main():  # the main process reports; the others only warn
        logging.getLogger("seq2seq").setLevel(logging.WARNING)
    try:
        from seq2seq.trainer import train

        trainer = train(check(cfg, "train"), run_dir, resume_command(run_dir))
    except UserError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        if distributed.is_main():
            remove_if_unused(run_dir)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt) as e:
        stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        log.info("stopped by %s before training started; nothing new was saved", stop)
        if distributed.is_main():
            remove_if_unused(run_dir)
        sys.exit(stop.exit_code)
    if trainer.stops.received:
        sys.exit(128 + trainer.stops.received)


def _raise_on_sigterm(signum, frame):
    raise Interrupted(signum)


def _already_complete(cfg: DictConfig, args: list[str]) -> str | None:
    """When ``hydra.run.dir`` names a run whose ``last.pt`` met its budget, the line that
    says so (checked before Hydra writes anything into that directory)."""
    chosen = [a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra.run.dir=")]
    if not chosen or not (Path(chosen[-1]) / "checkpoints" / "last.pt").is_file():
        return None
    from seq2seq.checkpoint import Checkpointer
    from seq2seq.trainer import completed

    saved = Checkpointer(Path(chosen[-1]), OmegaConf.to_container(cfg, resolve=True)).previous()
    return completed(saved, cfg.trainer)


def main() -> None:
    """Check the overrides first, so that a wrong model name or key is one line of
    error, then hand over to Hydra (which also runs ``-m`` sweeps)."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # the trainer takes over once it starts
    args = sys.argv[1:]
    try:
        if any(a in ("-h", "--help") for a in args):
            rest = [a for a in args if a not in ("-h", "--help")]
            print(help_text("train", compose("train", rest)))
            return
        if any(a.startswith("-") for a in args):  # Hydra flags such as -m: Hydra checks the rest
            if distributed.launched():
                raise UserError("under torchrun give key=value overrides only, no Hydra flags such as -m")
        else:
            cfg = compose("train", args)
            if cfg.model is not None and (done := _already_complete(cfg, args)):
                print(done, file=sys.stderr)
                return
            if distributed.launched():
                distributed.init(cuda=distributed.wants_cuda(cfg.trainer.device))
                sys.argv += distributed.run_dir_overrides(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    try:
        _main()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
