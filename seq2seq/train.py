"""``python -m seq2seq.train +model=NAME [key=value ...]``: train a model."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from seq2seq import config as _config  # noqa: F401  (registers ${data_root:})
from seq2seq.config import check, require_model
from seq2seq.errors import UserError

log = logging.getLogger("seq2seq.train")


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_model(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        cfg = check(cfg)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        from seq2seq.trainer import train

        train(cfg, run_dir)
    except UserError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
