"""Checking a composed config against its command's schema: a misspelt key, a value of the
wrong type or out of its range, and a combination that cannot work all end in one
``UserError`` naming the key, its value and what is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, fields, is_dataclass

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from seq2seq.config.model_arguments import with_constructor_defaults
from seq2seq.config.schema import CORPUS_KEYS, SCHEMAS
from seq2seq.decoding.options import check_decoding
from seq2seq.errors import UserError


def schema_fields(schema, prefix: str = ""):
    """(dotted key, dataclass field) of every setting of ``schema``, nested ones included."""
    for f in fields(schema):
        nested = f.default_factory if f.default_factory is not MISSING else None
        if nested is not None and is_dataclass(nested):
            yield from schema_fields(nested, f"{prefix}{f.name}.")
        elif "help" in f.metadata:
            yield f"{prefix}{f.name}", f


def _value(cfg, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _leaf_keys(cfg: DictConfig, prefix: str = ""):
    for name, value in cfg.items_ex(resolve=False):
        if OmegaConf.is_dict(value) and not value._is_none():  # a null node is a leaf
            yield from _leaf_keys(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def _check_ranges(cfg: DictConfig, schema, command: str) -> None:
    known = {key for key, _ in schema_fields(schema)}
    for key in _leaf_keys(cfg):
        if key not in known and key != "model" and not key.startswith(("model.", "data.corpora.")):
            raise UserError(f"{key}: no such key; python -m seq2seq.{command} --help lists every key")
    several = command == "train" and bool(cfg.data.corpora)  # data.train/valid/test then unused
    for key, f in schema_fields(schema):
        parent, _, name = key.rpartition(".")
        if several and key.startswith(("data.train.", "data.valid.", "data.test.")):
            continue
        if OmegaConf.is_missing(OmegaConf.select(cfg, parent) if parent else cfg, name):
            raise UserError(f"{key} is required: add {key}=...")
        allowed, value = f.metadata["allowed"], _value(cfg, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{key}={value}: must be a finite number")
        if allowed is not None and not allowed.admits(value):
            shown = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else value
            raise UserError(f"{key}={shown}: must be {allowed.describe()}")


LANGUAGE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")


def _check_corpora(data: DictConfig) -> None:
    """``data.corpora``: each entry complete, language codes fit for a ``<2xx>`` tag, one
    joint vocabulary, no ``data.train`` beside them, one validation set per direction."""
    if not data.corpora:
        return
    if not OmegaConf.is_missing(data.train, "src"):
        raise UserError(
            "data.train and data.corpora are both set; give one: the corpora replace data.train/valid/test "
            "(choose a preset without data.train, e.g. data=multi30k_all)"
        )
    if not data.tokenizer.joint:
        raise UserError(
            "data.tokenizer.joint=false: data.corpora share one vocabulary; set data.tokenizer.joint=true"
        )
    directions: dict[tuple[str, str], str] = {}
    for name, entry in data.corpora.items():
        key = f"data.corpora.{name}"
        for field in CORPUS_KEYS[:4]:
            if OmegaConf.is_missing(entry, field):
                raise UserError(f"{key}.{field} is required: add {key}.{field}=...")
        for field in ("src_lang", "tgt_lang"):
            if not LANGUAGE.fullmatch(entry[field]):
                raise UserError(
                    f"{key}.{field}={entry[field]}: a language code is a letter, then up to 15 letters, "
                    "digits, - or _ (de, en, pt_BR)"
                )
        if not entry.weight > 0 or not math.isfinite(entry.weight):
            raise UserError(f"{key}.weight={entry.weight}: must be a finite number > 0")
        for split in ("valid", "test"):
            if entry[split] is not None:
                for side in ("src", "tgt"):
                    if OmegaConf.is_missing(entry[split], side):
                        where = f"{key}.{split}"
                        raise UserError(f"{where}.{side} is required: add {where}.{side}=... or {where}=null")
        direction = (entry.src_lang, entry.tgt_lang)
        if entry.valid is not None:
            if direction in directions:
                raise UserError(
                    f"{key}.valid: data.corpora.{directions[direction]} validates {'-'.join(direction)} "
                    f"already; give one validation set per direction ({key}.valid=null)"
                )
            directions[direction] = name
    if not directions:
        raise UserError(
            "data.corpora: no entry has a valid split; give one, e.g. data.corpora.NAME.valid.src=..."
        )


def _check_train(cfg: DictConfig) -> None:
    _check_corpora(cfg.data)
    if len(cfg.optim.betas) != 2:
        raise UserError(f"optim.betas={list(cfg.optim.betas)}: must be two numbers, [beta1, beta2]")
    t = cfg.trainer
    if not (t.max_steps or t.max_epochs or t.max_time or t.patience):
        raise UserError(
            "trainer.max_steps, max_epochs, max_time and patience are all 0, so training would never "
            "stop; set one of them"
        )
    if cfg.optim.decay == "linear" and not (t.max_steps or t.max_epochs or t.max_time):
        raise UserError(
            "optim.decay=linear decays to 0 where the training budget ends, and trainer.max_steps, "
            "max_epochs and max_time are all 0; set one of them or use optim.decay=inverse_sqrt"
        )
    tok = cfg.data.tokenizer
    if tok.sampling and tok.model_type not in ("unigram", "bpe"):
        raise UserError(
            f"data.tokenizer.sampling=true: only unigram and bpe models sample segmentations, not "
            f"model_type={tok.model_type}; set data.tokenizer.sampling=false"
        )
    if cfg.model is None:
        return
    # The models load torch (about 2 s): only for a config that names a model, never
    # while translating an export.
    from seq2seq.models import build_model

    build_model(cfg.model, 16, 16, shared_vocab=True)  # every constructor check, before any work
    positions = cfg.model.get("max_positions")
    tag = int(len({entry.tgt_lang for entry in cfg.data.corpora.values()}) > 1)  # a <2xx> before sources
    if positions is not None and cfg.data.max_len + tag > positions:
        also = " plus the target-language tag" if tag else ""
        raise UserError(
            f"data.max_len={cfg.data.max_len}: must be at most model.max_positions={positions}{also}, the "
            f"longest sequence the model takes; lower data.max_len or raise model.max_positions"
        )
    if cfg.trainer.max_tokens < cfg.data.max_len:
        raise UserError(
            f"trainer.max_tokens={cfg.trainer.max_tokens}: must be at least data.max_len={cfg.data.max_len}, "
            f"so that every kept pair fits in a batch"
        )


def check(cfg: DictConfig, command: str = "train") -> DictConfig:
    """Type-check ``cfg`` against the schema of ``command``, resolve interpolations and
    check every range and rule. Returns the typed config; raises ``UserError``."""
    schema = SCHEMAS[command]
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        OmegaConf.resolve(typed)
    except OmegaConfBaseException as e:
        raise UserError(composition_error(e, command)) from None
    _check_ranges(typed, schema, command)
    if "decoding" in typed:
        check_decoding(typed.decoding)
    if command == "train":
        if typed.model is not None:
            typed.model = with_constructor_defaults(typed.model)
        _check_train(typed)
    return typed


def composition_error(e: Exception, command: str) -> str:
    """One line for an error Hydra or OmegaConf raised while composing: the key and
    what is wrong with it, without Hydra's search path and object types."""
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
    key = getattr(cause, "full_key", None)
    if key and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return f"{key}: no such key; python -m seq2seq.{command} --help lists every key"
    if key:
        message = getattr(cause, "msg", None) or str(cause)
        return f"{key}: {message.splitlines()[0]}"
    return " ".join(str(e).split("Config search path")[0].split())
