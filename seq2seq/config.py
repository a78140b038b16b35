"""Config schemas: every key's default, allowed values and meaning, in one place.

Each command's config (``train``, ``evaluate``, ``translate``) is checked against
a dataclass below before any work starts. A misspelt key, a value of the wrong
type or out of its range, and a combination that cannot work all end in one
``UserError`` naming the key, its value and what is allowed. The YAML files in
``configs/`` hold only what a preset changes; ``--help`` on any command lists
every key with its default and range. Model keys are checked by the model's
constructor (they are its arguments), except the few rules below that tie them
to other groups.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from seq2seq.errors import UserError

PACKAGE = Path(__file__).resolve().parent


def _find(installed: str, checkout: str) -> Path:
    """A folder the wheel carries inside the package (``installed``) and a source
    checkout keeps at the top of the repository (``checkout``)."""
    inside = PACKAGE / installed
    return inside if inside.is_dir() else PACKAGE.parent / checkout


CONFIG_DIR = _find("configs", "configs")
DATA_DIR = _find("corpora", "data")

if not OmegaConf.has_resolver("data_root"):
    OmegaConf.register_new_resolver("data_root", lambda: str(DATA_DIR))


# ----------------------------------------------------------------- allowed values


@dataclass(frozen=True)
class Allowed:
    """The values a setting may take: a numeric interval, a list of choices or a pattern."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    choices: tuple = ()
    pattern: str | None = None
    text: str = ""  # how to say it, where the fields above cannot

    def admits(self, value) -> bool:
        if value is None:
            return True  # optional settings (their type says so) are off when null
        if self.choices:
            return value in self.choices
        if self.pattern is not None:
            return re.fullmatch(self.pattern, str(value)) is not None
        if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
            return all(self.admits(v) for v in value)
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "any value"


POSITIVE = Allowed(low=0, low_open=True)
AT_LEAST_0 = Allowed(low=0)
AT_LEAST_1 = Allowed(low=1)
PROBABILITY = Allowed(low=0, high=1, high_open=True)


def setting(default, help: str, allowed: Allowed | None = None):
    """A schema field: its default, a one-line help text and the values it may take."""
    meta = {"help": help, "allowed": allowed}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def device_setting():
    allowed = Allowed(pattern=r"auto|cpu|cuda(:\d+)?", text="auto, cpu, cuda or cuda:N")
    return setting("auto", "auto: CUDA when present, else the CPU", allowed)


def precision_setting(extra: str = "", cpu: str = "fp32 on CPU"):
    return setting(
        "auto",
        f"auto: bf16 autocast on CUDA, {cpu} (seq2seq/device.py)" + extra,
        Allowed(choices=("auto", "fp32", "bf16", "fp16")),
    )


def threads_setting(extra: str = ""):
    return setting(0, f"torch CPU threads (0: torch's default, one per core){extra}", AT_LEAST_0)


# ----------------------------------------------------------------- schemas


@dataclass
class SplitConfig:
    src: str = setting("???", "source file: UTF-8, one sentence a line, plain or .gz")
    tgt: str = setting("???", "target file, line-aligned with the source")


@dataclass
class TokenizerConfig:
    vocab_size: int = setting(8000, "SentencePiece pieces (per side when not joint)", Allowed(low=8))
    joint: bool = setting(True, "one vocabulary for both sides (lets the Transformer tie all embeddings)")
    model_type: str = setting(
        "unigram", "SentencePiece algorithm", Allowed(choices=("unigram", "bpe", "char", "word"))
    )
    sample_size: int = setting(
        1_000_000,
        "SentencePiece learns from a uniform random sample of at most this many sentences",
        AT_LEAST_1,
    )
    character_coverage: float = setting(
        1.0, "share of characters SentencePiece covers", Allowed(low=0, high=1, low_open=True)
    )


@dataclass
class DataConfig:
    src_lang: str = setting("src", "source language code (used in the preset's file names)")
    tgt_lang: str = setting("tgt", "target language code")
    train: SplitConfig = field(default_factory=SplitConfig)
    valid: SplitConfig = field(default_factory=SplitConfig)
    test: SplitConfig = field(default_factory=SplitConfig)
    max_len: int = setting(128, "pairs with more pieces on either side are left out of training", AT_LEAST_1)
    train_lines: int = setting(0, "use only the first N training pairs (0: all)", AT_LEAST_0)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    cache_dir: str = setting(
        "~/.cache/seq2seq/prepared", "prepared corpora (token ids, tokenizer), one folder each"
    )
    num_workers: int = setting(
        0, "processes that encode a corpus being prepared (0: one per core)", AT_LEAST_0
    )


DECAYS = ("inverse_sqrt", "linear")  # what the learning rate does after the warmup (train_step.Schedule)


@dataclass
class OptimConfig:
    lr: float = setting(1e-3, "peak learning rate, reached after the warmup", POSITIVE)
    betas: list[float] = setting([0.9, 0.98], "Adam's beta1, beta2", PROBABILITY)
    eps: float = setting(1e-9, "Adam's epsilon", POSITIVE)
    weight_decay: float = setting(0.0, "L2 penalty (Adam's weight_decay)", AT_LEAST_0)
    warmup_steps: int = setting(400, "steps of linear warmup to the peak", AT_LEAST_0)
    decay: str = setting(
        "inverse_sqrt",
        "after the warmup: inverse_sqrt (sqrt(warmup/step)) or linear (to 0 where the first "
        "budget ends: trainer.max_steps, max_epochs or max_time)",
        Allowed(choices=DECAYS),
    )
    label_smoothing: float = setting(0.1, "probability mass spread over the vocabulary", PROBABILITY)
    clip_norm: float = setting(1.0, "clip the gradient norm to this (0: no clipping)", AT_LEAST_0)
    fused: bool = setting(True, "Adam's fused kernel, one pass over all parameters (false: one per tensor)")


@dataclass
class TrainerConfig:
    max_steps: int = setting(0, "stop after this many steps (0: no limit)", AT_LEAST_0)
    max_epochs: int = setting(30, "stop after this many epochs (0: no limit)", AT_LEAST_0)
    max_time: float = setting(
        3480.0, "stop after this many seconds of training, validations included (0: no limit)", AT_LEAST_0
    )
    max_tokens: int = setting(4096, "padded tokens per batch (per process)", AT_LEAST_1)
    eval_every: int = setting(200, "steps between validations (each saves a checkpoint)", AT_LEAST_1)
    save_every: int = setting(
        100, "steps between checkpoints without validation (0: only at validations)", AT_LEAST_0
    )
    keep_last: int = setting(
        3, "also keep the newest N step_<N>.pt checkpoints, to average (0: none)", AT_LEAST_0
    )
    max_bad_steps: int = setting(10, "stop after this many non-finite losses in a row", AT_LEAST_1)
    patience: int = setting(
        6, "stop after this many validations without a better BLEU (0: never)", AT_LEAST_0
    )
    log_every: int = setting(50, "steps between log lines and TensorBoard points", AT_LEAST_1)
    samples: int = setting(3, "sample translations and heatmaps written to TensorBoard", AT_LEAST_0)
    precision: str = precision_setting(cpu="bf16 autocast on a CPU with AMX, else fp32")
    compile: bool = setting(
        False,
        "torch.compile the training forward and backward (measured slower on 2 CPU cores, "
        "docs/BENCHMARKS.md)",
    )
    device: str = device_setting()
    num_threads: int = threads_setting()
    progress: bool = setting(True, "show a progress bar on a terminal")
    num_workers: int = setting(
        1,
        "DataLoader processes that collate batches ahead of the step (0: in the training process; "
        "1 measured fastest on 2 cores)",
        AT_LEAST_0,
    )


# The decoding keys each search reads (the selectors beam_size and sampling aside):
# a key set away from its default for a search that does not read it is an error.
SEARCH_KEYS = {
    "greedy": {"beam_size"},
    "beam": {"beam_size", "nbest", "alpha", "length_penalty", "patience", "no_repeat_ngram_size"},
    "sampling": {"sampling", "temperature", "top_k", "top_p", "seed"},
}
EVERY_SEARCH = {"sampling", "max_len_a", "max_len_b", "max_tokens", "batch_size"}


@dataclass
class DecodingConfig:
    beam_size: int = setting(1, "1: greedy search; more: beam search with this many beams", AT_LEAST_1)
    nbest: int = setting(1, "hypotheses kept per sentence (beam search; at most beam_size)", AT_LEAST_1)
    alpha: float = setting(
        1.0, "length-penalty exponent of beam search (0: rank by log-probability)", AT_LEAST_0
    )
    length_penalty: str = setting(
        "power",
        "gnmt: ((5 + length) / 6) ** alpha; power: length ** alpha, as CTranslate2 ranks (EOS counted)",
        Allowed(choices=("gnmt", "power")),
    )
    patience: float = setting(
        2.0,
        "beam search stops a sentence once round(beam_size * patience) hypotheses finished "
        "(0: only when no live beam can still win)",
        AT_LEAST_0,
    )
    max_len_a: float = setting(1.5, "an output stops after ceil(a * source length + b) tokens", AT_LEAST_0)
    max_len_b: int = setting(10, "see max_len_a", AT_LEAST_0)
    no_repeat_ngram_size: int = setting(
        0, "beam search never repeats an n-gram of this size (0: off)", AT_LEAST_0
    )
    sampling: bool = setting(False, "draw every token at random (ancestral sampling)")
    temperature: float = setting(1.0, "sampling: below 1 sharpens, above 1 flattens", POSITIVE)
    top_k: int = setting(0, "sampling: only among the k likeliest tokens (0: all)", AT_LEAST_0)
    top_p: float = setting(
        1.0, "sampling: only within the nucleus of this mass", Allowed(low=0, high=1, low_open=True)
    )
    seed: int | None = setting(None, "sampling: seed of the draws (null: different every run)", AT_LEAST_0)
    max_tokens: int = setting(8000, "source tokens per decoding batch (validation loss too)", AT_LEAST_1)
    batch_size: int = setting(0, "sentences per decoding batch (0: only max_tokens limits it)", AT_LEAST_0)


def patience_limit(beam_size: int, patience: float) -> int | float:
    """Finished hypotheses after which a sentence stops: round(K * patience) (halves
    up), or infinity for ``patience = 0`` (stop on the bound alone)."""
    return math.floor(beam_size * patience + 0.5) if patience > 0 else math.inf


def search_name(decoding) -> str:
    """The search a decoding config selects: ``sampling``, ``beam`` or ``greedy``."""
    if decoding.sampling:
        return "sampling"
    return "beam" if decoding.beam_size > 1 else "greedy"


@dataclass
class TrainConfig:
    seed: int = setting(1, "seed of the initial weights, dropout and batch order", AT_LEAST_0)
    model: Any = None  # constructor arguments, checked by the model itself
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)


@dataclass
class DecodeConfig:
    """What evaluate and translate share."""

    checkpoint: str = setting(
        "???", "the checkpoint to decode with (RUN/checkpoints/best.pt); several, a,b,...: an ensemble"
    )
    engine: str = setting(
        "auto",
        "torch, or ctranslate2 (an export, or a .pt converted at start-up); auto: by the checkpoint",
        Allowed(choices=("auto", "torch", "ctranslate2")),
    )
    device: str = device_setting()
    precision: str = precision_setting("; with ctranslate2, the export's quantization")
    num_threads: int = threads_setting("; with ctranslate2 on a CPU, single-threaded workers")
    decoding: DecodingConfig = field(default_factory=DecodingConfig)


@dataclass
class EvaluateConfig(DecodeConfig):
    src: str | None = setting(None, "source file to translate (default: the test split it was trained with)")
    ref: str | None = setting(None, "its reference translations")
    output: str | None = setting(None, "folder for hypotheses and metrics (default: next to the checkpoint)")


@dataclass
class TranslateConfig(DecodeConfig):
    input: str | None = setting(None, "file to translate (default: stdin, answered line by line)")
    output: str | None = setting(None, "file to write (default: stdout)")
    nbest_output: str | None = setting(None, "also write every n-best hypothesis: LINE<TAB>SCORE<TAB>TEXT")
    attention_dir: str | None = setting(None, "save one attention heatmap (PNG) per sentence here")


QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16")  # CTranslate2 weight types of an export


@dataclass
class ExportConfig:
    checkpoint: str = setting("???", "the Transformer checkpoint to export (RUN/checkpoints/best.pt)")
    output: str = setting("???", "the folder to write (an earlier export there is replaced)")
    quantization: str = setting(
        "float32",
        "weights: float32, int8 (fastest on CPU), int8_float32 (int8 matrices, float32 elsewhere), int16",
        Allowed(choices=QUANTIZATIONS),
    )
    vmap: bool = setting(
        False,
        "also write a vocabulary map learnt from the checkpoint's training data: CTranslate2 then "
        "scores only the likely target pieces of each batch (faster; seq2seq/vocab_map.py)",
    )
    vmap_per_piece: int = setting(50, "vmap: target candidates kept for each source piece", AT_LEAST_1)
    vmap_common: int = setting(
        500, "vmap: the most frequent target pieces, candidates for every batch", AT_LEAST_0
    )
    vmap_lines: int = setting(1_000_000, "vmap: learn from the first N training pairs (0: all)", AT_LEAST_0)


@dataclass
class AverageConfig:
    checkpoints: str | None = setting(None, "a run's checkpoints folder (RUN/checkpoints), with last=N")
    last: int = setting(0, "average the newest N step_<N>.pt of checkpoints= (trainer.keep_last)", AT_LEAST_0)
    inputs: str | None = setting(None, "or the checkpoints to average, a.pt,b.pt,...")
    output: str | None = setting(
        None, "the averaged checkpoint (default: average_last<N>.pt, or average.pt, beside the inputs)"
    )


SCHEMAS = {
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "translate": TranslateConfig,
    "average": AverageConfig,
    "export": ExportConfig,
}


def _register_schemas() -> None:
    """Make each schema the base of its command's YAML (``defaults: [NAME_schema, ...]``),
    so Hydra knows every key, its type and its default while composing."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)


_register_schemas()


# ----------------------------------------------------------------- checking


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
        if OmegaConf.is_dict(value):
            yield from _leaf_keys(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def _check_ranges(cfg: DictConfig, schema, command: str) -> None:
    known = {key for key, _ in schema_fields(schema)}
    for key in _leaf_keys(cfg):
        if key not in known and key != "model" and not key.startswith("model."):
            raise UserError(f"{key}: no such key; python -m seq2seq.{command} --help lists every key")
    for key, f in schema_fields(schema):
        parent, _, name = key.rpartition(".")
        if OmegaConf.is_missing(OmegaConf.select(cfg, parent) if parent else cfg, name):
            raise UserError(f"{key} is required: add {key}=...")
        allowed, value = f.metadata["allowed"], _value(cfg, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{key}={value}: must be a finite number")
        if allowed is not None and not allowed.admits(value):
            shown = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else value
            raise UserError(f"{key}={shown}: must be {allowed.describe()}")


def check_decoding(decoding, key: str = "decoding") -> None:
    """The rules between decoding keys: nbest within the beam, and no key set for a
    search that ignores it."""
    search = search_name(decoding)
    defaults = DecodingConfig()
    for name in sorted(
        set(SEARCH_KEYS["beam"] | SEARCH_KEYS["sampling"]) - SEARCH_KEYS[search] - EVERY_SEARCH
    ):
        if decoding[name] != getattr(defaults, name):
            users = [s for s, keys in SEARCH_KEYS.items() if name in keys and s != search]
            raise UserError(
                f"{key}.{name}={decoding[name]} is not used by {search} search, only by {' or '.join(users)} "
                f"search; drop it or choose that search (decoding=beam, decoding=sample)"
            )
    if search == "beam" and decoding.nbest > decoding.beam_size:
        raise UserError(f"{key}.nbest={decoding.nbest}: must be at most {key}.beam_size={decoding.beam_size}")
    enough = patience_limit(decoding.beam_size, decoding.patience)
    if search == "beam" and decoding.nbest > enough:
        raise UserError(
            f"{key}.nbest={decoding.nbest}: must be at most round(beam_size * patience) = {enough}, the "
            f"hypotheses a sentence finishes with; raise {key}.patience or set it to 0"
        )


def _check_train(cfg: DictConfig) -> None:
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
    if cfg.model is None:
        return
    from seq2seq.models import build_model

    build_model(cfg.model, 16, 16, shared_vocab=True)  # every constructor check, before any work
    positions = cfg.model.get("max_positions")
    if positions is not None and cfg.data.max_len > positions:
        raise UserError(
            f"data.max_len={cfg.data.max_len}: must be at most model.max_positions={positions}, the "
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
        _check_train(typed)
    return typed


# ----------------------------------------------------------------- composing


def model_choices() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def model_preset(name: str) -> DictConfig:
    """The constructor arguments of ``configs/model/NAME.yaml``, read without Hydra
    (its ``defaults`` list, which picks other groups, left out)."""
    cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
    cfg.pop("defaults", None)
    return cfg


def require_model(cfg: DictConfig) -> None:
    """Exit with one line listing the models when none was chosen."""
    if cfg.get("model") is None:
        print(
            f"error: choose a model with +model=NAME, one of: {', '.join(model_choices())}", file=sys.stderr
        )
        sys.exit(2)


def compose(command: str, overrides: list[str], checked: bool = True) -> DictConfig:
    """Compose ``configs/<command>.yaml`` with command-line overrides and (unless
    ``checked`` is false) check it, with no Hydra run directory or log files
    (evaluate and translate run on this; train uses it to check its overrides
    before Hydra starts)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    overrides = [quote_list(o) for o in overrides]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=command, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(composition_error(e, command)) from None
    return check(cfg, command) if checked else cfg


LIST_KEYS = ("checkpoint", "inputs")  # comma-separated file names, not Hydra sweeps


def quote_list(override: str) -> str:
    """``checkpoint=a.pt,b.pt`` as the string Hydra would otherwise read as a sweep."""
    key, sep, value = override.partition("=")
    if sep and key in LIST_KEYS and "," in value and value[:1] not in "'\"[" and "'" not in value:
        return f"{key}='{value}'"
    return override


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


def help_text(command: str, cfg: DictConfig | None = None) -> str:
    """Every key of ``command`` with its value in ``cfg`` (the composed defaults), its
    allowed values and its meaning; the model's keys when one was chosen."""
    usage = {
        "train": "python -m seq2seq.train +model=NAME [key=value ...]",
        "evaluate": "python -m seq2seq.evaluate checkpoint=PATH [key=value ...]",
        "translate": "python -m seq2seq.translate checkpoint=PATH [key=value ...]",
        "average": "python -m seq2seq.average checkpoints=RUN/checkpoints last=N | inputs=a,b [output=PATH]",
        "export": "python -m seq2seq.export checkpoint=PATH output=DIR [quantization=TYPE]",
    }[command]
    lines = [usage, ""]
    if command == "train":
        lines += [f"models (+model=NAME, configs/model/): {', '.join(model_choices())}", ""]
    rows = []
    for key, f in schema_fields(SCHEMAS[command]):
        parent, _, name = key.rpartition(".")
        node = (OmegaConf.select(cfg, parent) if parent else cfg) if cfg is not None else None
        required = f.default == "???" if node is None else OmegaConf.is_missing(node, name)
        value = "??? (required)" if required else _value(cfg, key) if cfg is not None else f.default
        allowed = f.metadata["allowed"]
        rule = f" [{allowed.describe()}]" if allowed is not None else ""
        rows.append((f"{key}={'null' if value is None else value}", f"{f.metadata['help']}{rule}"))
    if cfg is not None and command == "train" and cfg.get("model") is not None:
        rows += [(f"model.{k}={v}", "model constructor argument") for k, v in cfg.model.items()]
    width = max(len(left) for left, _ in rows)
    lines += [f"  {left:<{width}}  {right}" for left, right in rows]
    return "\n".join(lines)
