"""Translate lists of sentences with any engine: sort, batch, decode, restore order.

No torch import here: ``Translator`` is shared by the torch engine
(``seq2seq/inference/torch_engine.py``) and the CTranslate2 engine
(``seq2seq/inference/ctranslate2/engine.py``), and the latter runs without loading torch.
"""

from __future__ import annotations

import copy
import logging

from seq2seq.data.batching import token_batches
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding import Hypothesis
from seq2seq.special import EOS_ID

log = logging.getLogger(__name__)


def clean_source(text: str) -> str:
    """A source line as it is translated: control characters other than TAB become
    spaces, and the ends are stripped."""
    return "".join(c if c >= " " or c == "\t" else " " for c in text).strip()


def one_line(text: str) -> str:
    """A translation never spans lines, whatever bytes the model produced."""
    return " ".join(text.splitlines())


class Translator:
    """Turns sentences into hypotheses with a tokenizer, a decoding config and an engine's
    ``decode`` (one batch of source ids to hypotheses), which subclasses provide.

    Sentences are sorted by length and grouped into batches of at most
    ``decoding.max_tokens`` source tokens, so little work goes into padding;
    results come back in input order. Empty sentences give empty outputs.

    Args:
        tokenizer: the model's tokenizer.
        decoding: a ``decoding`` config.
        max_positions: the longest source the model takes (longer ones are cut), or None.
    """

    model = None  # the torch model, for engines that have one (attention heatmaps)
    prefix: list[int] = []  # ids before every source: the target-language tag (``with_target``)
    tgt_lang: str | None = None

    def __init__(self, tokenizer: Tokenizer, decoding, max_positions: int | None = None):
        self.tokenizer, self.cfg, self.max_positions = tokenizer, decoding, max_positions

    def with_target(self, tgt_lang: str | None, key: str = "tgt_lang") -> Translator:
        """This translator, sharing its model, translating into ``tgt_lang``: a multilingual
        model's sources then start with its tag. Required by a model of several target
        languages, refused by one of one (``Tokenizer.source_prefix``; errors name ``key``)."""
        prefix = self.tokenizer.source_prefix(tgt_lang, key)
        other = copy.copy(self)
        other.prefix, other.tgt_lang = prefix, tgt_lang
        return other

    def encode(
        self, sentences: list[str], line_numbers: list[int] | None = None, warn: bool = True
    ) -> list[list[int]]:
        """Source ids (after the target-language tag, if any), cut to the model's longest
        input; a warning names the line (``line_numbers[i]`` for sentence i, else i + 1) of
        every sentence cut."""
        ids = self.tokenizer.encode_src(sentences)
        if self.prefix:
            ids = [self.prefix + row for row in ids]
        limit = self.max_positions
        if limit is not None:
            for i, row in enumerate(ids):
                if len(row) > limit:
                    ids[i] = row[: limit - 1] + [EOS_ID]
                    if not warn:
                        continue
                    line = line_numbers[i] if line_numbers is not None else i + 1
                    log.warning(
                        "line %d has %d pieces; cut to the model's limit of %d", line, len(row), limit
                    )
        return ids

    def batches(self, lengths: list[int]) -> list[list[int]]:
        """Sentence indices grouped by length, at most ``decoding.max_tokens`` source
        tokens and (if set) ``decoding.batch_size`` sentences a batch."""
        batches = token_batches(lengths, [0] * len(lengths), self.cfg.max_tokens)
        size = self.cfg.get("batch_size", 0)
        if size > 0:
            batches = [b[i : i + size] for b in batches for i in range(0, len(b), size)]
        return batches

    def hypotheses(self, sentences: list[str], first_line: int = 1) -> list[list[Hypothesis]]:
        """Decode every sentence; returns its hypotheses, best first, in input order.
        ``first_line`` is the input line number of ``sentences[0]``, for warnings."""
        out: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in sentences]
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        if not todo:
            return out
        ids = self.encode([sentences[i] for i in todo], [first_line + i for i in todo])
        for i, hyps in zip(todo, self.decode_all(ids), strict=True):
            out[i] = hyps
        return out

    def decode_all(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Hypotheses of any number of source ids (each ending in EOS), in their order:
        sorted by length, decoded in ``batches``, put back."""
        out: list[list[Hypothesis]] = [[] for _ in ids]
        for batch_rows in self.batches([len(r) for r in ids]):
            results = self.decode([ids[r] for r in batch_rows])
            for r, hyps in zip(batch_rows, results, strict=True):
                out[r] = hyps
        return out

    def decode(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Hypotheses of one batch of source ids (each ending in EOS), best first."""
        raise NotImplementedError

    def __call__(self, sentences: list[str]) -> list[str]:
        """Best translation of each sentence, detokenised."""
        return [self.tokenizer.decode_tgt(h[0].tokens) for h in self.hypotheses(sentences)]

    # What a server asks of an engine, besides decoding (seq2seq/serving/).

    def check_decoding(self, decoding, key: str = "decoding") -> None:
        """Refuse, in one ``UserError`` naming ``key``, decoding settings this engine cannot
        honour (an engine that honours them all accepts everything)."""

    def with_decoding(self, decoding) -> Translator:
        """This translator with other decoding settings, sharing its model: what one request
        with its own options decodes with. Seeded sampling starts its draws anew, as a new
        ``translate`` would."""
        other = copy.copy(self)
        other.cfg = decoding
        return other

    @property
    def attention_grid(self) -> tuple[int, int] | None:
        """(layers, heads) of the attention maps ``attention`` can give, or None (none)."""
        return None

    def attention(
        self, src_ids: list[list[int]], out_ids: list[list[int]], layer: int | None = None, head=None
    ) -> list[list[list[float]]] | None:
        """For each sentence, the attention of its output ``out_ids`` (target ids without
        BOS or EOS) over its source ``src_ids`` (ending in EOS): one row per output piece
        and one for the EOS, one column per source piece; None for an engine without."""
        return None

    def describe(self) -> dict:
        """What the engine says of itself: ``engine`` and ``parameters`` (None when unknown)."""
        return {"engine": "unknown", "parameters": None}
