"""How a setting is declared: its default, its one-line help and the values it may take.

A leaf module: it imports nothing of seq2seq, so every layer declares its settings
the same way (the command configs in ``seq2seq/config/``, the decoding options in
``seq2seq/decoding/options.py``), and ``--help`` prints them all alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from omegaconf import OmegaConf


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
