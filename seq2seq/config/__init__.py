"""Every command's config: its schema (``schema.py``), its checks (``checks.py``), and its
composition from ``configs/`` and the command line, with ``--help`` (``compose.py``), and the
``model.*`` keys that the constructors' signatures give (``model_arguments.py``).

May import: ``models`` (the constructor checks), ``decoding.options``, ``training.schedule``
and the leaf modules (``settings``, ``errors``).
"""

from seq2seq.config.checks import check, composition_error, schema_fields
from seq2seq.config.compose import (
    CONFIG_DIR,
    DATA_DIR,
    compose,
    help_text,
    model_choices,
    model_preset,
    register_presets,
    require_model,
)
from seq2seq.config.schema import SCHEMAS

__all__ = [
    "CONFIG_DIR",
    "DATA_DIR",
    "SCHEMAS",
    "check",
    "compose",
    "composition_error",
    "help_text",
    "model_choices",
    "model_preset",
    "register_presets",
    "require_model",
    "schema_fields",
]
