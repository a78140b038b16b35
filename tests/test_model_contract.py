"""The decoding contract of ``seq2seq/models/base.py``, checked on every backend alike:
the Transformer, the GRU and the LSTM with every attention type, and an ensemble of two."""

from __future__ import annotations

import pytest
import torch

from seq2seq.inference.heatmaps import attention_figures
from seq2seq.models import Ensemble, RecurrentEncoderDecoder, Transformer
from seq2seq.models.attention import ATTENTIONS
from seq2seq.models.base import EncoderDecoder, map_state
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID

V = 30
RECURRENT = [f"{cell}-{kind}" for cell in ("gru", "lstm") for kind in ATTENTIONS]
BACKENDS = ["transformer", *RECURRENT, "ensemble"]


def build(name: str) -> EncoderDecoder:
    torch.manual_seed(0)
    if name == "transformer":
        model = Transformer(
            V, V, d_model=16, heads=2, encoder_layers=1, decoder_layers=2, ffn_dim=32, dropout=0.0
        )
    elif name == "ensemble":  # two architectures, each keeping its own sentence sharing
        model = Ensemble([build("transformer"), build("lstm-bahdanau")])
    else:
        cell, kind = name.split("-")
        sizes = {"emb_size": 16, "hidden_size": 16, "dropout": 0.0, "local_window": 2, "decoder_layers": 2}
        model = RecurrentEncoderDecoder(V, V, shared_vocab=True, cell=cell, attention=kind, **sizes)
    return model.eval()


def toy():
    """Three sources of different lengths (padded) and a target prefix for each."""
    src = torch.tensor(
        [[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID, PAD_ID, PAD_ID], [11, EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    )
    tgt = torch.tensor([[BOS_ID, 12, 13], [BOS_ID, 15, 16], [BOS_ID, 17, 18]])
    return src, (src != PAD_ID).sum(1), tgt


def tensors(state) -> list[torch.Tensor]:
    out = []
    map_state(state, out.append)
    return out


def sentence_parts(model, state) -> list[torch.Tensor]:
    """The tensors a state keeps once per sentence (an ensemble's: its members')."""
    if isinstance(model, Ensemble):
        return [t for m, s in zip(model.members, state["members"], strict=True) for t in sentence_parts(m, s)]
    return [t for key in model.sentence_keys for t in tensors(state[key])]


def assert_same_state(a, b, atol=1e-6):
    """Two states of one layout (the same keys, lists and tensor shapes) and values."""
    assert map_state(a, lambda t: t.shape) == map_state(b, lambda t: t.shape)
    for x, y in zip(tensors(a), tensors(b), strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def first_and_stepped(model):
    """The states to test a step from: (state, target ids, position of the next target token)
    for the first state and for the state after one step (a non-empty cache)."""
    src, lengths, tgt = toy()
    first = model.init_state(model.encode(src, lengths))
    _, stepped = model.step(tgt[:, 0], first)
    return [(first, tgt, 0), (stepped, tgt, 1)]


@pytest.mark.parametrize("name", BACKENDS)
def test_reorder_then_step_equals_step_then_reorder(name):
    """Selecting rows (reordered, repeated, dropped) before a step gives the logits and
    the state of selecting them after it, from the first state and from a stepped one."""
    model = build(name)
    with torch.no_grad():
        for state, tgt, t in first_and_stepped(model):
            for index in (torch.tensor([2, 0, 0, 1]), torch.tensor([1, 2])):
                before, state_before = model.step(tgt[index, t], model.reorder_state(state, index))
                after, state_after = model.step(tgt[:, t], state)
                torch.testing.assert_close(before, after[index], atol=1e-6, rtol=0)
                assert_same_state(state_before, model.reorder_state(state_after, index))


@pytest.mark.parametrize("name", BACKENDS)
def test_beams_share_the_sentence_state_and_decode_like_separate_rows(name):
    """Two rows per sentence share its sentence_keys entries (no copy); any reorder
    (beams swapped, a sentence dropped, uneven rows) keeps one copy per sentence where
    the rows come in equal runs, and gives the logits of a model given each row's
    sentence as a batch row of its own."""
    model = build(name)
    src, lengths, tgt = toy()
    with torch.no_grad():
        state = model.init_state(model.encode(src, lengths))
        assert sentence_parts(model, state), "every backend keeps its source-side state once per sentence"
        beams = model.reorder_state(state, torch.tensor([0, 0, 1, 1, 2, 2]))
        assert model.rows_per_sentence(beams) == 2
        shared = zip(sentence_parts(model, beams), sentence_parts(model, state), strict=True)
        assert all(a is b for a, b in shared)  # not copied
        _, beams = model.step(tgt[[0, 0, 1, 1, 2, 2], 0], beams)
        for index, group in (
            (torch.tensor([1, 0, 2, 2, 5, 4]), 2),  # same sentences, beams swapped
            (torch.tensor([0, 1, 4, 5]), 2),  # sentence 1 finished
            (torch.tensor([0, 2, 3, 3, 5]), 1),  # uneven: one copy per row
        ):
            fast = model.reorder_state(beams, index)
            assert model.rows_per_sentence(fast) == group
            assert all(t.size(0) == len(index) // group for t in sentence_parts(model, fast))
            rows = index // 2  # the sentence of each new row
            alone = model.init_state(model.encode(src[rows], lengths[rows]))
            _, alone = model.step(tgt[rows, 0], alone)
            a, _ = model.step(tgt[rows, 1], fast)
            b, _ = model.step(tgt[rows, 1], alone)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", BACKENDS)
def test_step_leaves_its_input_state_unchanged(name):
    """Stepping from the first state and from a stepped one (a non-empty cache) leaves
    every tensor of it, and its layout, as it was."""
    model = build(name)
    with torch.no_grad():
        for state, tgt, t in first_and_stepped(model):
            before = map_state(state, torch.clone)
            model.step(tgt[:, t], state)
            assert_same_state(state, before, atol=0)


class WithCounter(Transformer):
    """A Transformer whose state carries one more per-row entry."""

    def init_state(self, memory):
        state = super().init_state(memory)
        return {**state, "count": torch.arange(state["pos"].size(0))}


def test_reorder_keeps_state_entries_it_does_not_know():
    model = WithCounter(V, V, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32).eval()
    src, lengths, _ = toy()
    state = model.init_state(model.encode(src, lengths))
    reordered = model.reorder_state(state, torch.tensor([2, 2, 0]))
    assert reordered["count"].tolist() == [2, 2, 0]


class NoAttention(EncoderDecoder):
    """A model that implements only what decoding needs: no attention weights."""


def test_attention_is_optional():
    class Tok:
        def src_pieces(self, ids):
            return [str(i) for i in ids]

        def tgt_pieces(self, ids):
            return [str(i) for i in ids]

    assert attention_figures(NoAttention(), Tok(), [[5, EOS_ID]], [[6]], "cpu") == []
    figures = attention_figures(build("gru-dot"), Tok(), [[5, EOS_ID]], [[6]], "cpu")
    assert len(figures) == 1


def test_location_attention_reads_positions_from_the_query_alone():
    """Luong's location score: softmax(W_a h_t) over the real positions; padding gets 0,
    and the keys' content does not change the weights."""
    model = build("gru-location")
    src, lengths, tgt = toy()
    with torch.no_grad():
        weights = model.attention(src, lengths, tgt)  # (B, T, S)
        layer = model.attention_layer
        keys = torch.randn(3, 5, 16)
        query = torch.randn(3, 2, 16)
        assert torch.equal(layer.score(query, keys, lengths), layer.score(query, 2 * keys, lengths))
    assert weights[1, :, 3:].abs().max() == 0 and weights[2, :, 2:].abs().max() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 3))


def test_local_attention_attends_only_inside_its_window():
    model = RecurrentEncoderDecoder(
        V, V, shared_vocab=True, attention="local", emb_size=8, hidden_size=8, local_window=1
    )
    src = torch.randint(4, V, (2, 12))
    lengths = torch.tensor([12, 12])
    tgt = torch.full((2, 4), BOS_ID)
    with torch.no_grad():
        weights = model.attention(src, lengths, tgt)  # (B, T, S)
        query = torch.randn(2, 4, 8)
        center = model.attention_layer.predict_position(query, lengths)  # (B, T)
        scores = model.attention_layer.score(query, torch.randn(2, 12, 8), lengths)
    positions = torch.arange(12).float()
    outside = (positions - center.unsqueeze(-1)).abs() > 1  # (B, T, S)
    assert torch.isinf(scores[outside]).all() and torch.isfinite(scores[~outside]).all()
    assert ((weights > 0).sum(-1) <= 3).all()  # at most the 2D + 1 positions of the window
