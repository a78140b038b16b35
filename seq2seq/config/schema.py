"""The schema of every command's config: each key's default, allowed values and meaning.

Each command's config (``train``, ``evaluate``, ``translate``, ``average``, ``export``, ``serve``;
``prepare`` takes train's) is checked against a dataclass below before any work starts
(``seq2seq/config/checks.py``). The YAML files in ``configs/`` hold only what a preset
changes; ``--help`` on any command lists every key with its default and range. Model keys
are the model constructor's arguments and are checked by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from seq2seq.decoding.options import DecodingConfig
from seq2seq.settings import AT_LEAST_0, AT_LEAST_1, POSITIVE, PROBABILITY, Allowed, setting
from seq2seq.training.schedule import DECAYS


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


@dataclass
class SplitConfig:
    src: str = setting("???", "source file: UTF-8, one sentence a line, plain or .gz")
    tgt: str = setting("???", "target file, line-aligned with the source")


@dataclass
class CorpusConfig:
    """One entry of ``data.corpora``: a training corpus of one direction (checked by
    ``seq2seq/config/checks.py``; ``--help`` lists these keys under ``data.corpora.NAME``)."""

    src: str = setting("???", "source file of the training pairs (plain or .gz)")
    tgt: str = setting("???", "target file, line-aligned with the source")
    src_lang: str = setting("???", "source language code (de, en, ...)")
    tgt_lang: str = setting("???", "target language code; with several, sources get a <2xx> tag")
    weight: float = setting(
        1.0, "counts the corpus this many times in the mixture: p ~ (weight * size) ** (1 / T)", POSITIVE
    )
    valid: SplitConfig | None = setting(None, "validation pairs of this direction ({src, tgt}), or null")
    test: SplitConfig | None = setting(None, "test pairs that evaluate uses by default, or null")


CORPUS_KEYS = ("src", "tgt", "src_lang", "tgt_lang", "weight", "valid", "test")


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
    sampling: bool = setting(
        False,
        "training sees a newly sampled segmentation of each pair every epoch: subword regularization "
        "(unigram) or BPE-dropout (bpe); validation and translation never sample (docs/GUIDE.md)",
    )
    alpha: float = setting(
        0.1,
        "sampling: unigram's smoothing (P(segmentation)^alpha; lower: more varied) or bpe's dropout "
        "probability",
        Allowed(low=0, high=1, low_open=True),
    )
    nbest_size: int = setting(
        64,
        "sampling, unigram: draw among this many best segmentations (more: more varied, slower)",
        Allowed(low=2),
    )


@dataclass
class DataConfig:
    src_lang: str = setting("src", "source language code (used in the preset's file names)")
    tgt_lang: str = setting("tgt", "target language code")
    train: SplitConfig = field(default_factory=SplitConfig)
    valid: SplitConfig = field(default_factory=SplitConfig)
    test: SplitConfig = field(default_factory=SplitConfig)
    corpora: dict[str, CorpusConfig] = field(
        default_factory=dict,
        metadata={
            "help": "several training corpora, one model: NAME: {src, tgt, src_lang, tgt_lang, weight, "
            "valid, test} each, in place of data.train/valid/test (configs/data/multi30k_all.yaml)",
            "allowed": None,
        },
    )
    temperature: float = setting(
        1.0,
        "data.corpora: corpus i gets p_i ~ (weight_i * N_i) ** (1 / T) of an epoch's pairs, N_i its "
        "pairs; 1: in proportion to size, more: flatter",
        POSITIVE,
    )
    max_len: int = setting(128, "pairs with more pieces on either side are left out of training", AT_LEAST_1)
    train_lines: int = setting(0, "use only the first N training pairs (0: all)", AT_LEAST_0)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    cache_dir: str = setting(
        "~/.cache/seq2seq/prepared", "prepared corpora (token ids, tokenizer), one folder each"
    )
    num_workers: int = setting(
        0, "processes that encode a corpus being prepared (0: one per core)", AT_LEAST_0
    )


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
    init_from: str | None = setting(
        None,
        "fine-tune: start a new run from this checkpoint's weights and tokenizer, with a fresh "
        "optimiser, schedule, progress and best score (model.* must equal its settings but for "
        "dropout rates; data.tokenizer.* must agree with its tokenizer)",
    )
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
    tgt_lang: str | None = setting(
        None,
        "the target language of a multilingual model (its sources get the <2xx> tag); required by one, "
        "refused by a model of one target language",
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
    input: str | None = setting(None, "file to translate, plain or .gz (default: stdin, line by line)")
    output: str | None = setting(None, "file to write (default: stdout)")
    nbest_output: str | None = setting(None, "also write every n-best hypothesis: LINE<TAB>SCORE<TAB>TEXT")
    attention_dir: str | None = setting(None, "save one attention heatmap (PNG) per sentence here")


@dataclass
class ServeConfig(DecodeConfig):
    host: str = setting(
        "127.0.0.1", "address to listen on (127.0.0.1: this machine only; 0.0.0.0 opens it to the network)"
    )
    port: int = setting(
        8000, "TCP port to listen on (0: any free port, printed at start)", Allowed(low=0, high=65535)
    )
    max_wait_ms: float = setting(
        5.0,
        "a batch is decoded at most this long after its first request arrived, with whatever "
        "requests came meanwhile (up to decoding.max_tokens source tokens)",
        AT_LEAST_0,
    )
    queue_size: int = setting(
        256, "requests that may wait for decoding; beyond that the answer is 503 with Retry-After", AT_LEAST_1
    )
    max_sentences: int = setting(256, "sentences a request may hold (more: 413)", AT_LEAST_1)
    max_chars: int = setting(
        20_000, "characters a request may hold, all sentences together (more: 413)", AT_LEAST_1
    )
    api_key: str | None = setting(
        None,
        "when set (or SEQ2SEQ_API_KEY), every route but /healthz needs the header Authorization: Bearer KEY "
        "or X-API-Key: KEY (else 401)",
    )
    shutdown_timeout: float = setting(
        30.0, "on SIGTERM, seconds to finish the requests in flight before closing", AT_LEAST_0
    )


QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16")  # CTranslate2 weight types of an export
EXPORT_FORMATS = ("ctranslate2", "transformers")


@dataclass
class ExportConfig:
    checkpoint: str = setting("???", "the Transformer checkpoint to export (RUN/checkpoints/best.pt)")
    output: str = setting("???", "the folder to write (an earlier export there is replaced)")
    format: str = setting(
        "ctranslate2",
        "ctranslate2: a CTranslate2 model that translate and evaluate run; transformers: a Hugging Face "
        "folder (float32) for AutoModelForSeq2SeqLM, AutoTokenizer and pipeline('translation')",
        Allowed(choices=EXPORT_FORMATS),
    )
    quantization: str = setting(
        "float32",
        "weights: float32, int8 (fastest on CPU), int8_float32 (int8 matrices, float32 elsewhere), int16 "
        "(format=ctranslate2)",
        Allowed(choices=QUANTIZATIONS),
    )
    vmap: bool = setting(
        False,
        "also write a vocabulary map learnt from the checkpoint's training data: CTranslate2 then "
        "scores only the likely target pieces of each batch (faster; seq2seq/inference/ctranslate2/"
        "vocab_map.py; format=ctranslate2)",
    )
    vmap_per_piece: int = setting(50, "vmap: target candidates kept for each source piece", AT_LEAST_1)
    vmap_common: int = setting(
        500, "vmap: the most frequent target pieces, candidates for every batch", AT_LEAST_0
    )
    vmap_lines: int = setting(1_000_000, "vmap: learn from the first N training pairs (0: all)", AT_LEAST_0)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)  # format=transformers: generation_config


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
    "serve": ServeConfig,
}


def _register_schemas() -> None:
    """Make each schema the base of its command's YAML (``defaults: [NAME_schema, ...]``),
    so Hydra knows every key, its type and its default while composing."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)


_register_schemas()
