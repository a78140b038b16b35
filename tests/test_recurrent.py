"""Tests of the recurrent encoder-decoder and its attention modules (tiny models, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from seq2seq.config import model_preset
from seq2seq.models.attention import ATTENTIONS
from seq2seq.models.recurrent import RecurrentEncoderDecoder
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID

CELLS = ["gru", "lstm"]
VOCAB = 13


def tiny_model(cell="gru", attention="bahdanau", **kwargs) -> RecurrentEncoderDecoder:
    torch.manual_seed(0)
    options = {"emb_size": 8, "hidden_size": 8, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.1}
    options.update(local_window=2, **kwargs)
    return RecurrentEncoderDecoder(VOCAB, VOCAB, cell=cell, attention=attention, **options).eval()


def toy_batch(lengths=(5, 2, 4), tgt_len=4):
    """Source rows ``pieces + [EOS]`` right-padded; tgt_in starts with BOS."""
    generator = torch.Generator().manual_seed(1)
    src = torch.full((len(lengths), max(lengths)), PAD_ID)
    for row, length in enumerate(lengths):
        src[row, : length - 1] = torch.randint(4, VOCAB, (length - 1,), generator=generator)
        src[row, length - 1] = EOS_ID
    tgt_in = torch.randint(4, VOCAB, (len(lengths), tgt_len), generator=generator)
    tgt_in[:, 0] = BOS_ID
    return src, torch.tensor(lengths), tgt_in


def step_through(model, src, src_lengths, tgt_in):
    """Logits (B, T, V) and weights (B, T, S) from stepping token by token."""
    state = model.init_state(model.encode(src, src_lengths))
    logits, weights = [], []
    for t in range(tgt_in.size(1)):
        step_logits, state = model.step(tgt_in[:, t], state)
        logits.append(step_logits)
        weights.append(state["attention"])
    return torch.stack(logits, dim=1), torch.stack(weights, dim=1)


def assert_masked(weights, src_lengths):
    """Weights (B, T, S) are exactly 0 at padding and rows sum to 1."""
    padding = torch.arange(weights.size(-1)) >= src_lengths.unsqueeze(1)  # (B, S)
    assert torch.all(weights.masked_select(padding.unsqueeze(1)) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_shapes_masking_and_step_equivalence(cell, attention):
    model = tiny_model(cell, attention)
    src, src_lengths, tgt_in = toy_batch()
    with torch.no_grad():
        logits = model(src, src_lengths, tgt_in)
        weights = model.attention(src, src_lengths, tgt_in)
        step_logits, step_weights = step_through(model, src, src_lengths, tgt_in)
    assert logits.shape == (3, 4, VOCAB)
    assert weights.shape == (3, 4, 5)
    assert_masked(weights, src_lengths)
    assert_masked(step_weights, src_lengths)
    torch.testing.assert_close(logits, step_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, step_weights, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_without_input_feeding_matches_stepping(cell):
    model = tiny_model(cell, "local", input_feeding=False, bidirectional=False, decoder_layers=1)
    src, src_lengths, tgt_in = toy_batch()
    with torch.no_grad():
        logits = model(src, src_lengths, tgt_in)
        step_logits, step_weights = step_through(model, src, src_lengths, tgt_in)
    assert "feed" not in model.init_state(model.encode(src, src_lengths))
    assert_masked(step_weights, src_lengths)
    torch.testing.assert_close(logits, step_logits, atol=1e-5, rtol=0)


def test_state_is_batch_first():
    model = tiny_model("lstm", "bahdanau", decoder_layers=3)
    src, src_lengths, _ = toy_batch()
    state = model.init_state(model.encode(src, src_lengths))
    assert state["hidden"].shape == state["cell"].shape == (3, 3, 8)
    assert state["feed"].shape == (3, 8)
    assert state["memory"].shape[:2] == state["keys"].shape[:2] == state["src_mask"].shape == (3, 5)


def test_tied_and_shared_embeddings_share_parameters():
    torch.manual_seed(0)
    model = RecurrentEncoderDecoder(VOCAB, VOCAB, shared_vocab=True, emb_size=8, hidden_size=8)
    assert model.output.weight is model.tgt_embed.weight
    assert model.encoder.embedding.weight is model.tgt_embed.weight
    untied = RecurrentEncoderDecoder(VOCAB, VOCAB + 1, emb_size=8, hidden_size=8, tie_embeddings=False)
    assert untied.output.weight is not untied.tgt_embed.weight
    assert untied.encoder.embedding.weight is not untied.tgt_embed.weight


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cell": "rnn"}, "gru, lstm"),
        ({"attention": "cosine"}, ", ".join(ATTENTIONS)),
        ({"emb_size": 6, "tie_embeddings": True}, r"emb_size \(6\).*hidden_size \(8\)"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    options = {"emb_size": 8, "hidden_size": 8} | kwargs
    with pytest.raises(ValueError, match=message):
        RecurrentEncoderDecoder(VOCAB, VOCAB, **options)


def toy_pairs():
    """Four fixed pairs as padded (src, src_lengths, tgt_in, tgt_out)."""
    sources = [[4, 5, 6], [7, 8], [9, 10, 11, 12], [6, 5]]
    targets = [[12, 11], [10, 9, 8], [7, 6, 5, 4], [4, 4]]
    src, tgt_in, tgt_out = (torch.full((4, 5), PAD_ID) for _ in range(3))
    for row, (s, t) in enumerate(zip(sources, targets, strict=False)):
        src[row, : len(s) + 1] = torch.tensor(s + [EOS_ID])
        tgt_in[row, : len(t) + 1] = torch.tensor([BOS_ID] + t)
        tgt_out[row, : len(t) + 1] = torch.tensor(t + [EOS_ID])
    return src, torch.tensor([len(s) + 1 for s in sources]), tgt_in, tgt_out


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["gru_bahdanau", "lstm_luong"])
def test_preset_overfits_toy_pairs(preset):
    config = model_preset(preset)
    config.update(emb_size=32, hidden_size=32, dropout=0.0)
    torch.manual_seed(0)
    model = instantiate(config, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, shared_vocab=True)
    assert isinstance(model, RecurrentEncoderDecoder)
    src, src_lengths, tgt_in, tgt_out = toy_pairs()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        logits = model(src, src_lengths, tgt_in)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits.view(-1, VOCAB), tgt_out.view(-1), ignore_index=PAD_ID
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_readme_lists_every_attention_type():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in ATTENTIONS:
        assert f"`{name}`" in readme, name
