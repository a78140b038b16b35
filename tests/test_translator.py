"""The Translator and the translate command: batching, order, line numbers."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf

import seq2seq.translate
from seq2seq.config import compose
from seq2seq.data.preparation import open_prepared, prepare
from seq2seq.data.reading import read_lines
from seq2seq.inference.torch_engine import TorchTranslator
from seq2seq.inference.translator import Translator
from seq2seq.models import Transformer
from seq2seq.models.base import EncoderDecoder

from .conftest import compose_train


def test_translator_batches_by_tokens_and_sentences():
    lengths = [5, 30, 7, 12, 5, 9, 30, 2]
    cfg = OmegaConf.create({"max_tokens": 40, "batch_size": 2})
    batches = Translator(None, cfg).batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 2 and len(b) * max(lengths[i] for i in b) <= 40 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted(lengths[b[0]] for b in batches)  # by length


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus):
    """A 500-piece joint SentencePiece model of the tiny corpus."""
    cfg = compose_train(tiny_corpus).data
    return open_prepared(prepare(cfg, workers=1))[1]


class CopyModel(EncoderDecoder):
    """Outputs its source, piece by piece: the translation of a line is the line itself."""

    def __init__(self, max_positions: int):
        super().__init__()
        self.limit = max_positions

    def encode(self, src, src_lengths):
        return {"src": src}

    def init_state(self, memory):
        return {"src": memory["src"], "t": torch.zeros(memory["src"].size(0), dtype=torch.long)}

    def step(self, tgt, state):
        src, t = state["src"], state["t"]
        nxt = src.gather(1, t.clamp(max=src.size(1) - 1)[:, None]).squeeze(1)  # (B,) the source piece at t
        logits = torch.full((src.size(0), 600), -1e9)
        logits[torch.arange(src.size(0)), nxt] = 0.0  # EOS where the source ends
        return logits, {**state, "t": t + 1}

    @property
    def max_positions(self):
        return self.limit


@pytest.mark.slow
def test_output_line_i_is_the_translation_of_input_line_i(
    tiny_corpus, tokenizer, tmp_path, monkeypatch, caplog
):
    """4,100 lines (more than two of translate's 2,000-line chunks; empty lines among
    them), sorted into small batches by length: line i of the output is the copy of
    line i, and the warning for the one over-long line names its real line number."""
    train = read_lines(tiny_corpus["train.de"])
    lines = [train[(i * 7) % len(train)] if i % 9 else "" for i in range(4100)]
    lines[2500] = " ".join(train[:20])  # longer than the copy model's 200 positions
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    cfg = compose(
        "translate",
        [
            "checkpoint=unused.pt",
            f"input={tmp_path / 'in.txt'}",
            f"output={tmp_path / 'out.txt'}",
            "decoding=greedy",
            "decoding.max_tokens=200",
            "decoding.max_len_a=1",
            "decoding.max_len_b=2",
        ],
    )
    model = CopyModel(max_positions=200)
    translator = TorchTranslator(model, tokenizer, cfg.decoding, "cpu")
    monkeypatch.setattr(seq2seq.translate, "make_translator", lambda cfg: (translator, {}))
    with caplog.at_level(logging.WARNING):
        seq2seq.translate.translate(cfg)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert out.pop() == "" and len(out) == len(lines)
    for i, (line, got) in enumerate(zip(lines, out, strict=True)):
        if i == 2500:
            continue
        expected = tokenizer.decode_tgt(tokenizer.encode_src([line])[0][:-1]) if line else ""
        assert got == expected, (i, line, got)
    assert out[2500] and lines[2500].startswith(out[2500][:20])  # cut to the limit, still its own line
    warnings = [r.getMessage() for r in caplog.records if "cut to the model's limit" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("line 2501 has"), warnings


def test_sampling_seed_repeats_the_draws(tiny_corpus, tokenizer):
    """decoding.seed gives the same samples every time; without it every Translator draws anew."""
    torch.manual_seed(0)
    model = Transformer(500, 500, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32).eval()
    sentences = read_lines(tiny_corpus["valid.de"])

    def samples(*overrides):
        cfg = compose(
            "translate", ["checkpoint=unused.pt", "decoding=sample", "decoding.max_len_b=8", *overrides]
        )
        return TorchTranslator(model, tokenizer, cfg.decoding, "cpu")(sentences)

    assert samples("decoding.seed=7") == samples("decoding.seed=7")
    assert samples("decoding.seed=7") != samples("decoding.seed=8")
    assert samples() != samples()
