"""The Translator: batching of decoding input."""

from omegaconf import OmegaConf

from seq2seq.translator import Translator


def test_translator_batches_by_tokens_and_sentences():
    lengths = [5, 30, 7, 12, 5, 9, 30, 2]
    cfg = OmegaConf.create({"max_tokens": 40, "batch_size": 2})
    batches = Translator(None, None, cfg, "cpu").batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 2 and len(b) * max(lengths[i] for i in b) <= 40 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted(lengths[b[0]] for b in batches)  # by length
