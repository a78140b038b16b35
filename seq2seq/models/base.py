"""The one interface every encoder-decoder implements.

Training uses the teacher-forced ``features`` and ``project``. Decoding (greedy,
beam search, sampling), evaluation and translation use only ``encode``,
``init_state``, ``step`` and ``reorder_state``, so they never need to know which
architecture they drive. ``attention`` is optional: a model without attention
weights to show returns None, and no heatmap is drawn.

The decoder state
    A plain dict of tensors (or lists of tensors), batch in dimension 0. ``step``
    returns a new state instead of storing anything on the module, and
    ``reorder_state(state, index)`` selects its rows, which is all a search needs.

Rows and sentences
    ``init_state`` gives one row per source sentence. A search may then give a
    sentence several rows (its beams), always side by side: the rows of sentence
    ``j`` are ``j * G ... j * G + G - 1`` for ``G`` rows per sentence. Parts of the
    state that depend on the source alone (the encoder memory, attention keys)
    are kept once per sentence and shared by its rows; a model lists them in
    ``sentence_keys``. Every other entry has one row per decoder row.
    ``reorder_state`` keeps the sharing whenever the new rows come in equal runs
    per sentence (beam search always selects rows that way), and otherwise gives
    each row its own copy (G = 1). ``rows_per_sentence`` reads G off the shapes.
"""

from __future__ import annotations

import torch
from torch import nn

State = dict

# The longest sequence a model takes unless its ``max_positions`` says otherwise: the
# sinusoidal table of the Transformer, the ``location`` attention's score layer.
MAX_POSITIONS = 256


def map_state(state, fn):
    """Apply ``fn`` to every tensor in a (nested) state; other values are kept."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(v, fn) for v in state)
    return state


def first_tensor(value) -> torch.Tensor | None:
    """The first tensor of a (nested) state entry, or None."""
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def rows_per_sentence(state: State, sentence_keys: tuple[str, ...]) -> int:
    """G: decoder rows over source sentences, read off the first tensor of each kind."""
    if not sentence_keys:
        return 1
    rows = first_tensor([v for k, v in state.items() if k not in sentence_keys])
    sentences = first_tensor([state[k] for k in sentence_keys])
    if rows is None or sentences is None or sentences.size(0) == 0:
        return 1
    return max(1, rows.size(0) // sentences.size(0))


def reorder_rows(state: State, index: torch.Tensor, sentence_keys: tuple[str, ...]) -> State:
    """Row i of the result is row ``index[i]`` of ``state``; the entries in
    ``sentence_keys`` follow once per sentence (module docstring)."""
    rows = {
        k: map_state(v, lambda t: t.index_select(0, index))
        for k, v in state.items()
        if k not in sentence_keys
    }
    if not sentence_keys:
        return rows
    source = torch.div(
        index, rows_per_sentence(state, sentence_keys), rounding_mode="floor"
    )  # (B',) sentence
    runs, counts = torch.unique_consecutive(source, return_counts=True)  # (N',), (N',)
    grouped = counts.numel() > 0 and bool((counts == counts[0]).all())
    sentences = runs if grouped else source  # (B' / G',) the sentence of each new group of rows
    before = first_tensor([state[k] for k in sentence_keys]).size(0)
    unchanged = sentences.numel() == before and torch.equal(
        sentences, torch.arange(before, device=sentences.device)
    )
    shared = {
        k: state[k] if unchanged else map_state(state[k], lambda t: t.index_select(0, sentences))
        for k in sentence_keys
    }
    return {**rows, **shared}


def check_sizes(**sizes: int) -> None:
    """Constructor check: every size is a whole number of at least 1 (ValueError otherwise)."""
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} ({value}) must be a whole number of at least 1")


def check_rates(**rates: float) -> None:
    """Constructor check: every dropout rate lies in [0, 1) (ValueError otherwise)."""
    for name, value in rates.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} ({value}) must be in [0, 1)")


class EncoderDecoder(nn.Module):
    """Base class of the models in ``seq2seq.models``.

    Subclasses implement ``encode``, ``init_state``, ``step`` and
    ``features``/``project``, and list in ``sentence_keys`` the state entries they
    keep once per source sentence; ``reorder_state`` then works for them as it is.
    """

    sentence_keys: tuple[str, ...] = ()

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> State:
        """Encode the source once.

        Args:
            src: (B, S) source token ids, padded with ``PAD_ID``.
            src_lengths: (B,) number of real tokens in each row.
        Returns:
            ``memory``: a dict of tensors with the batch in dimension 0, passed
            to ``init_state``.
        """
        raise NotImplementedError

    def init_state(self, memory: State) -> State:
        """Return the decoder state before the first target token, one row per sentence."""
        raise NotImplementedError

    def step(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Advance the decoder by one token.

        Args:
            tgt: (B,) the previous target token of each row (``BOS_ID`` first).
            state: the state returned by ``init_state``, ``reorder_state`` or the previous step.
        Returns:
            logits: (B, V) unnormalised scores of the next token.
            state: the new state; the input state is left unchanged.
        """
        raise NotImplementedError

    def features(self, src, src_lengths, tgt_in) -> torch.Tensor:
        """Teacher-forced pass up to the output layer.

        Args:
            src: (B, S) source ids; src_lengths: (B,);
            tgt_in: (B, T) target ids that start with ``BOS_ID``.
        Returns:
            (B, T, D) decoder outputs; ``project`` turns them into logits.
        """
        raise NotImplementedError

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Output layer: (..., D) decoder outputs to (..., V) logits."""
        raise NotImplementedError

    def forward(self, src, src_lengths, tgt_in) -> torch.Tensor:
        """Teacher-forced logits (B, T, V), equal to stepping the decoder
        through ``tgt_in`` one token at a time. The trainer calls ``features``
        and ``project`` itself so that padded positions skip the output layer."""
        return self.project(self.features(src, src_lengths, tgt_in))

    def attention(self, src, src_lengths, tgt_in, layer=None, head=None) -> torch.Tensor | None:
        """Cross-attention weights of a teacher-forced pass, for heatmaps (optional).

        Args:
            layer, head: which of the ``attention_grid`` maps to show (None: the model's own
                choice of layer, the heads averaged).
        Returns:
            (B, T, S) weights, each row summing to 1 over the real source tokens;
            or None for a model that has none to show.
        """
        return None

    @property
    def attention_grid(self) -> tuple[int, int] | None:
        """(layers, heads) of attention maps ``attention`` can show, or None when it shows none."""
        return None

    def reorder_state(self, state: State, index: torch.Tensor) -> State:
        """Select (and repeat) decoder rows: row i of the result is row ``index[i]``
        of ``state``. Used by the searches after each step."""
        return reorder_rows(state, index, self.sentence_keys)

    def rows_per_sentence(self, state: State) -> int:
        """G, the decoder rows each source sentence has in ``state``."""
        return rows_per_sentence(state, self.sentence_keys)

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the model can take, or None when unbounded."""
        return None
