"""The bodies of the ``/v1`` routes and the decoding options a request may set.

A request names a documented subset of the ``decoding.*`` keys in ``options``
(``REQUEST_OPTIONS``); anything else is refused by name. The options are laid over the
server's ``decoding`` config and checked by the same rules as ``translate``'s command line
(``decoding.options.check_decoding``) and by the engine (``Translator.check_decoding``).
"""

from __future__ import annotations

from typing import Annotated

from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from seq2seq.decoding.options import SEARCH_KEYS, DecodingConfig, check_decoding, search_name
from seq2seq.errors import UserError

# The decoding keys a request may set, each a decoding.* key of the same name.
REQUEST_OPTIONS = (
    "beam_size",
    "nbest",
    "alpha",
    "patience",
    "sampling",
    "temperature",
    "top_k",
    "top_p",
    "seed",
)
MAX_BEAM = 64

Number = StrictFloat | StrictInt


class Options(BaseModel):
    """Per-request decoding options; unset ones keep the server's ``decoding.*`` values."""

    model_config = ConfigDict(extra="forbid")

    beam_size: Annotated[StrictInt, Field(ge=1, le=MAX_BEAM)] | None = Field(
        None, description="1: greedy search; more: beam search with this many beams"
    )
    nbest: Annotated[StrictInt, Field(ge=1, le=MAX_BEAM)] | None = Field(
        None, description="hypotheses returned per sentence (beam search; at most beam_size)"
    )
    alpha: Annotated[Number, Field(ge=0, le=10, allow_inf_nan=False)] | None = Field(
        None, description="length-penalty exponent of beam search (0: rank by log-probability)"
    )
    patience: Annotated[Number, Field(ge=0, le=100, allow_inf_nan=False)] | None = Field(
        None,
        description="beam search stops a sentence once round(beam_size * patience) hypotheses "
        "finished (0: only when no live beam can still win)",
    )
    sampling: StrictBool | None = Field(None, description="draw every token at random")
    temperature: Annotated[Number, Field(gt=0, le=100, allow_inf_nan=False)] | None = Field(
        None, description="sampling: below 1 sharpens, above 1 flattens"
    )
    top_k: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = Field(
        None, description="sampling: only among the k likeliest tokens (0: all)"
    )
    top_p: Annotated[Number, Field(gt=0, le=1, allow_inf_nan=False)] | None = Field(
        None, description="sampling: only within the nucleus of this mass"
    )
    seed: Annotated[StrictInt, Field(ge=0, le=2**32 - 1)] | None = Field(
        None, description="sampling: seed of the draws; a seeded request is decoded on its own"
    )
    tgt_lang: StrictStr | None = Field(
        None, max_length=32, description="target language; a bilingual model takes only its own"
    )


class TranslateRequest(BaseModel):
    """``POST /v1/translate``."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr | list[StrictStr] = Field(
        description="one sentence, or a list of sentences (an empty one translates to an empty one)"
    )
    options: Options = Field(default_factory=Options, description="decoding options of this request")
    attention: StrictBool = Field(
        False, description="also return each translation's attention over the source, with the pieces"
    )
    attention_layer: StrictInt | None = Field(
        None, description="the decoder layer whose attention to return (null: the model's choice)"
    )
    attention_head: StrictInt | None = Field(None, description="one head (null: the heads averaged)")


class Attention(BaseModel):
    """Attention of a translation: ``weights[i][j]`` is how much target piece i attended to
    source piece j; each row sums to 1."""

    source: list[str]
    target: list[str]
    weights: list[list[float]]


class Translation(BaseModel):
    text: str
    score: float = Field(
        description="the value the search ranked by (beam: length-normalised log-probability)"
    )
    attention: Attention | None = None


class Sentence(BaseModel):
    """One input sentence: its best translation first, then (with ``nbest``) the others."""

    text: str
    score: float
    nbest: list[Translation] | None = None
    attention: Attention | None = None


class TranslateResponse(BaseModel):
    translations: list[Sentence]


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong, naming the field")
    field: str | None = Field(None, description="the field at fault, dotted (options.nbest, text[3])")


def option_key(options: Options, base) -> tuple:
    """The options a request set to other values than ``base`` (the server's ``decoding``
    config), and its ``seed`` if it gave one (its draws start there), as a hashable key:
    requests with equal keys decode together."""
    chosen = options.model_dump(exclude_none=True)
    return tuple(
        sorted((k, v) for k, v in chosen.items() if k != "tgt_lang" and (k == "seed" or base.get(k) != v))
    )


def request_decoding(base, key: tuple):
    """The ``decoding`` config of a request: ``base`` (the server's) with the options of
    ``key`` over it. When the options choose another search, the keys that search would
    ignore return to their defaults unless the request set them, so that only what the
    request said can be refused. Raises ``UserError`` naming ``options.<key>``."""
    if not key:
        return base
    cfg = OmegaConf.merge(base, dict(key))
    if search_name(cfg) != search_name(base):
        defaults, own = DecodingConfig(), {k for k, _ in key}
        for name in SEARCH_KEYS["beam"] | SEARCH_KEYS["sampling"]:
            if name not in SEARCH_KEYS[search_name(cfg)] and name not in own and name != "sampling":
                cfg[name] = getattr(defaults, name)
    check_decoding(cfg, key="options")
    return cfg


def check_language(options: Options, target: str | None, translator=None):
    """The translator that encodes a request's sentences. A multilingual model (target
    tags): ``translator`` into ``options.tgt_lang``, or into the server's ``tgt_lang`` when the
    request names none (one of them is required). Otherwise ``translator``, after refusing a
    ``tgt_lang`` other than the model's ``target``."""
    if translator is not None and translator.tokenizer.target_tags:
        if options.tgt_lang is None and translator.tgt_lang is not None:
            return translator
        return translator.with_target(options.tgt_lang, "options.tgt_lang")
    if options.tgt_lang is not None and target is not None and options.tgt_lang != target:
        raise UserError(f"options.tgt_lang={options.tgt_lang}: this model translates into {target} only")
    return translator
