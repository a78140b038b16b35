"""The wrappers of scripts/bench_decode.py: NoCache decodes like the cache, FixedLength fixes the length."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from seq2seq.decoding.beam import beam_search
from seq2seq.decoding.greedy import greedy_search
from seq2seq.models import RecurrentEncoderDecoder, Transformer
from seq2seq.special import EOS_ID, PAD_ID

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_decode.py"
V = 50


def load_script():
    spec = importlib.util.spec_from_file_location("bench_decode", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_script()


def tiny_model(kind: str):
    torch.manual_seed(0)
    if kind == "transformer":
        model = Transformer(V, V, d_model=32, heads=4, encoder_layers=1, decoder_layers=2, ffn_dim=64)
    else:
        model = RecurrentEncoderDecoder(V, V, shared_vocab=True, cell=kind, emb_size=32, hidden_size=32)
    return model.eval()


def source(batch: int = 4):
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 6][:batch])
    src = torch.randint(EOS_ID + 1, V, (batch, int(lengths.max())), generator=gen)
    src[torch.arange(batch), lengths - 1] = EOS_ID
    src = src.masked_fill(torch.arange(src.size(1)) >= lengths[:, None], PAD_ID)
    return src, lengths


def tokens(hyps):
    return [h[0].tokens for h in hyps]


@pytest.mark.parametrize("kind", ["transformer", "gru", "lstm"])
def test_no_cache_greedy_matches_cached_greedy(kind):
    model = tiny_model(kind)
    src, lengths = source()
    cached = greedy_search(model, src, lengths, max_len_a=0, max_len_b=9)
    uncached = greedy_search(bench.NoCache(model), src, lengths, max_len_a=0, max_len_b=9)
    assert tokens(uncached) == tokens(cached)
    for a, b in zip(cached, uncached, strict=True):
        assert a[0].log_prob == pytest.approx(b[0].log_prob, abs=1e-4)


@pytest.mark.parametrize("kind", ["transformer", "gru"])
@pytest.mark.parametrize("cache", [True, False])
def test_fixed_length_gives_exactly_n_tokens(kind, cache):
    n = 6
    model = tiny_model(kind)
    model = bench.FixedLength(model if cache else bench.NoCache(model), n)
    src, lengths = source()
    greedy = greedy_search(model, src, lengths, max_len_a=0, max_len_b=n + 1)
    beam = beam_search(model, src, lengths, beam_size=3, nbest=2, max_len_a=0, max_len_b=n + 1)
    assert [len(t) for t in tokens(greedy)] == [n] * len(lengths)
    assert all(len(h.tokens) == n for hyps in beam for h in hyps)
    assert [len(hyps) for hyps in beam] == [2] * len(lengths)
    assert all(torch.isfinite(torch.tensor(h.score)) for hyps in beam for h in hyps)
