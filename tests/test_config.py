"""Config composition: every model file, the defaults, and the errors."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seq2seq.config import CONFIG_DIR, check, model_choices
from seq2seq.errors import UserError
from seq2seq.models import EncoderDecoder

from .conftest import run_cli


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_model_files_are_the_three_families():
    assert model_choices() == ["gru_bahdanau", "lstm_luong", "transformer"]


@pytest.mark.parametrize("name", model_choices())
def test_every_model_file_composes_and_builds(name):
    cfg = check(composed(f"+model={name}"))
    assert cfg.model._target_.startswith("seq2seq.models.")
    assert {"data", "optim", "trainer", "decoding"} <= set(cfg)
    model = instantiate(cfg.model, src_vocab_size=100, tgt_vocab_size=100, shared_vocab=True)
    assert isinstance(model, EncoderDecoder)


def test_defaults_are_the_embedded_corpus_and_greedy_validation():
    cfg = check(composed("+model=transformer"))
    assert cfg.data.train.src.endswith("data/multi30k/train.de.gz")
    assert cfg.data.test.tgt.endswith("data/multi30k/test_2016_flickr.en.gz")
    assert cfg.decoding.beam_size == 1 and "model" not in composed()


def test_recurrent_presets_bring_their_optimiser_and_the_command_line_wins():
    rnn = OmegaConf.load(CONFIG_DIR / "optim" / "adam_rnn.yaml")
    adam = OmegaConf.load(CONFIG_DIR / "optim" / "adam.yaml")
    assert rnn.lr != adam.lr
    for name in ("gru_bahdanau", "lstm_luong"):
        assert composed(f"+model={name}").optim == rnn
        assert composed(f"+model={name}", "optim=adam").optim == adam
        assert composed(f"+model={name}", "optim.lr=0.5").optim.lr == 0.5
        assert "defaults" not in composed(f"+model={name}").model
    assert composed("+model=transformer").optim == adam


def test_unknown_keys_are_rejected():
    with pytest.raises(UserError, match="trainer.max_stepz"):
        check(composed("+model=transformer", "+trainer.max_stepz=3"))
    with pytest.raises(UserError, match="data.tokenizer.vocab"):
        check(composed("+model=transformer", "+data.tokenizer.vocab=3"))
    with pytest.raises(UserError, match="trainer.max_steps"):
        check(composed("+model=transformer", "trainer.max_steps=many"))


def test_command_line_errors(tmp_path):
    no_model = run_cli("train", cwd=tmp_path, check=False)
    assert no_model.returncode == 2
    assert (
        no_model.stderr.strip()
        == "error: choose a model with +model=NAME, one of: gru_bahdanau, lstm_luong, transformer"
    )
    unknown = run_cli("train", "+model=rnn", cwd=tmp_path, check=False)
    assert unknown.returncode != 0 and "Could not find 'model/rnn'" in unknown.stderr
    assert "transformer" in unknown.stderr and "Traceback" not in unknown.stderr
    no_plus = run_cli("train", "model=gru_bahdanau", cwd=tmp_path, check=False)
    assert no_plus.returncode != 0 and "Could not override 'model'" in no_plus.stderr
    bad_key = run_cli("train", "+model=transformer", "trainer.nope=1", cwd=tmp_path, check=False)
    assert bad_key.returncode != 0 and "trainer.nope" in bad_key.stderr
    bad_arg = run_cli(
        "train", "+model=transformer", "+model.nope=1", "hydra.run.dir=run", cwd=tmp_path, check=False
    )
    assert bad_arg.returncode == 2 and "nope" in bad_arg.stderr and "Traceback" not in bad_arg.stderr
