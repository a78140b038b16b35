"""The decoding settings (``decoding.*``) and the rules between them: which search a
config selects, which keys each search reads, and when beam search may stop.

No torch import: the CTranslate2 engine maps these same options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from seq2seq.errors import UserError
from seq2seq.settings import AT_LEAST_0, AT_LEAST_1, POSITIVE, Allowed, setting

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
