"""``python -m seq2seq.train +model=NAME [key=value ...]``: train a model.

On several processes: ``torchrun --standalone --nproc_per_node=N -m seq2seq.train ...``
(see ``seq2seq/distributed.py``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seq2seq import distributed
from seq2seq.config import check, compose, require_model
from seq2seq.errors import UserError

log = logging.getLogger("seq2seq.train")


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    require_model(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if not distributed.is_main():  # the main process reports; the others only warn
        logging.getLogger("seq2seq").setLevel(logging.WARNING)
    try:
        from seq2seq.trainer import train

        train(check(cfg), run_dir)
    except UserError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Check the overrides first, so that a wrong model name or key is one line of
    error, then hand over to Hydra (which also runs ``-m`` sweeps)."""
    args = sys.argv[1:]
    try:
        if any(a.startswith("-") for a in args):  # Hydra flags such as -m: Hydra checks the rest
            if distributed.launched():
                raise UserError("under torchrun give key=value overrides only, no Hydra flags such as -m")
        else:
            cfg = compose("train", args, groups=("data", "optim", "trainer", "decoding"))
            if distributed.launched():
                distributed.init(cuda=distributed.wants_cuda(cfg.trainer.device))
                sys.argv += distributed.run_dir_overrides(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        _main()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
