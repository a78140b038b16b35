"""The Transformer backend and the label-smoothed loss."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.models import Transformer
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID
from seq2seq.training.loss import label_smoothed_cross_entropy


def tiny(**kw) -> Transformer:
    torch.manual_seed(0)
    args = dict(d_model=32, heads=4, encoder_layers=2, decoder_layers=2, ffn_dim=64, dropout=0.0)
    return Transformer(50, 50, **{**args, **kw})


def toy_batch():
    src = torch.tensor(
        [[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID, PAD_ID, PAD_ID], [11, EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    )
    tgt_in = torch.tensor([[BOS_ID, 12, 13, 14], [BOS_ID, 15, 16, PAD_ID], [BOS_ID, 17, PAD_ID, PAD_ID]])
    return src, (src != PAD_ID).sum(1), tgt_in


@pytest.mark.parametrize("pre_norm", [True, False])
def test_cached_steps_equal_full_forward(pre_norm):
    model = tiny(pre_norm=pre_norm).eval()
    src, lengths, tgt_in = toy_batch()
    full = model(src, lengths, tgt_in)  # (B, T, V)
    state = model.init_state(model.encode(src, lengths))
    steps = []
    for t in range(tgt_in.size(1)):
        logits, state = model.step(tgt_in[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=0)
    assert state["self_k"][0].shape == (3, 4, tgt_in.size(1), 8)  # (B, h, T, d): one entry per step


def test_padding_changes_nothing_and_gets_no_attention():
    model = tiny().eval()
    src, lengths, tgt_in = toy_batch()
    alone = model(src[1:2, :3], lengths[1:2], tgt_in[1:2, :3])
    padded = model(src, lengths, tgt_in)[1:2, :3]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=0)
    weights = model.attention(src, lengths, tgt_in)  # (B, T, S)
    assert weights.shape == (3, 4, 5)
    assert weights[1, :, 3:].abs().max() == 0 and weights[2, :, 2:].abs().max() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))


def test_embeddings_are_tied():
    model = tiny()
    assert model.output.weight is model.src_embed.weight is model.tgt_embed.weight
    separate = Transformer(50, 60, shared_vocab=False, d_model=32, heads=4, ffn_dim=64)
    untied = Transformer(50, 50, d_model=32, heads=4, ffn_dim=64, tie_embeddings=False)
    assert untied.output.weight is not untied.tgt_embed.weight
    assert separate.output.weight is separate.tgt_embed.weight
    assert separate.src_embed.weight is not separate.tgt_embed.weight


@pytest.mark.slow
def test_overfits_a_handful_of_pairs():
    model = tiny()
    src, lengths, tgt_in = toy_batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((3, 1), PAD_ID)], 1)
    tgt_out[torch.arange(3), (tgt_in != PAD_ID).sum(1) - 1] = EOS_ID
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model(src, lengths, tgt_in)
        loss, _ = label_smoothed_cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), 0.0)
        loss = loss / (tgt_out != PAD_ID).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02


def test_label_smoothing_against_hand_computation():
    logits = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.25)], [0.0, 0.0, 0.0]])
    loss, nll = label_smoothed_cross_entropy(logits, torch.tensor([1, PAD_ID]), epsilon=0.3)
    # Row 0, reference token 1: (1 - 0.3) * -log 0.25 + 0.3 * mean(-log 0.5, -log 0.25, -log 0.25);
    # row 1 is padding and counts for nothing.
    expected = 0.7 * math.log(4) + 0.3 * (math.log(2) + 2 * math.log(4)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert nll.item() == pytest.approx(math.log(4), abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"heads": 5}, r"d_model \(32\) must be a multiple of heads \(5\)"),
        ({"attention_layer": 4}, r"attention_layer \(4\)"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)
    with pytest.raises(ValueError, match="shared_vocab needs equal vocab sizes"):
        Transformer(50, 60, shared_vocab=True, d_model=32, heads=4)
