"""What the evaluate and translate command lines share: config, errors, logging, model."""

from __future__ import annotations

import logging
import os
import sys

import torch

from seq2seq.checkpoint import load_model
from seq2seq.config import compose
from seq2seq.errors import UserError
from seq2seq.trainer import pick_device, pick_precision
from seq2seq.translator import Translator


def run(config_name: str, body) -> None:
    """Compose ``configs/<config_name>.yaml`` with ``sys.argv`` overrides and call
    ``body(cfg)``; user mistakes end in one ``error:`` line and exit status 2."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(name)s] %(message)s")
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        print(
            open(os.path.join(os.path.dirname(__file__), "..", "configs", f"{config_name}.yaml")).readline()[
                2:
            ]
        )
        return
    try:
        if not any(a.startswith("checkpoint=") for a in args):
            raise UserError("checkpoint is required: add checkpoint=RUN_DIR/checkpoints/best.pt")
        body(compose(config_name, args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def make_translator(cfg):
    """Load ``cfg.checkpoint`` and wrap it in a ``Translator`` with ``cfg.decoding``."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    model, tokenizer, train_cfg = load_model(cfg.checkpoint, device)
    return Translator(model, tokenizer, cfg.decoding, device, precision), train_cfg
