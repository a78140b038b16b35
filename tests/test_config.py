"""Config composition: every model file, the defaults, and the errors."""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seq2seq.config import (
    CONFIG_DIR,
    SCHEMAS,
    check,
    help_text,
    model_choices,
    model_preset,
    register_presets,
)
from seq2seq.config import compose as seq2seq_compose
from seq2seq.config.model_arguments import constructor_defaults, with_constructor_defaults
from seq2seq.config.schema import OptimConfig, TrainerConfig
from seq2seq.errors import UserError
from seq2seq.models import EncoderDecoder

from .conftest import run_cli


def composed(*overrides: str):
    register_presets()
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
    assert cfg.decoding.beam_size == 1 and composed().model is None


def test_recurrent_presets_bring_their_optimiser_and_the_command_line_wins():
    rnn = OmegaConf.load(CONFIG_DIR / "optim" / "adam_rnn.yaml")
    adam = OmegaConf.load(CONFIG_DIR / "optim" / "adam.yaml")
    assert rnn.lr != adam.lr
    for name in ("gru_bahdanau", "lstm_luong"):
        optim = composed(f"+model={name}").optim
        assert (optim.lr, optim.warmup_steps) == (rnn.lr, rnn.warmup_steps)
        assert composed(f"+model={name}", "optim=adam").optim == composed("+model=transformer").optim
        assert composed(f"+model={name}", "optim.lr=0.5").optim.lr == 0.5
        assert "defaults" not in composed(f"+model={name}").model
    transformer = composed("+model=transformer").optim
    assert (transformer.lr, transformer.warmup_steps) == (adam.lr, adam.warmup_steps)
    assert transformer.decay == adam.decay == "linear"
    assert composed("+model=gru_bahdanau").optim.decay == rnn.decay == "linear" != OptimConfig.decay


def test_the_transformer_preset_brings_its_batches_and_the_command_line_wins():
    batches = OmegaConf.load(CONFIG_DIR / "trainer" / "transformer.yaml").max_tokens
    assert batches != TrainerConfig.max_tokens
    assert composed("+model=transformer").trainer.max_tokens == batches
    assert composed("+model=transformer", "trainer=default").trainer.max_tokens == TrainerConfig.max_tokens
    assert composed("+model=transformer", "trainer.max_tokens=3000").trainer.max_tokens == 3000
    assert "defaults" not in composed("+model=transformer").model
    assert composed("+model=transformer").trainer.keep_last == TrainerConfig.keep_last
    for name in ("gru_bahdanau", "lstm_luong"):
        assert composed(f"+model={name}").trainer.max_tokens == TrainerConfig.max_tokens
        assert composed(f"+model={name}").trainer.keep_last == TrainerConfig.keep_last


def test_unknown_keys_are_rejected():
    for override, key in (
        ("+trainer.max_stepz=3", "trainer.max_stepz"),
        ("trainer.max_stepz=3", "trainer.max_stepz"),
        ("+data.tokenizer.vocab=3", "data.tokenizer.vocab"),
        ("trainer.max_steps=many", "trainer.max_steps"),
    ):
        with pytest.raises(UserError, match=re.escape(key)) as caught:
            seq2seq_compose("train", ["+model=transformer", override])
        assert "\n" not in str(caught.value)


# Each bad setting: the command, its overrides, and what the one-line error must say
# (the key with its value, and the allowed values).
BAD_SETTINGS = [
    ("train", ["trainer.eval_every=0"], "trainer.eval_every=0: must be >= 1"),
    ("train", ["trainer.log_every=0"], "trainer.log_every=0: must be >= 1"),
    ("train", ["trainer.save_every=-1"], "trainer.save_every=-1: must be >= 0"),
    ("train", ["trainer.max_tokens=0"], "trainer.max_tokens=0: must be >= 1"),
    ("train", ["trainer.max_tokens=-5"], "trainer.max_tokens=-5: must be >= 1"),
    ("train", ["trainer.max_tokens=64"], "trainer.max_tokens=64: must be at least data.max_len=128"),
    ("train", ["trainer.precision=fp8"], "trainer.precision=fp8: must be one of auto, fp32, bf16, fp16"),
    ("train", ["trainer.device=gpu"], "trainer.device=gpu: must be auto, cpu, cuda or cuda:N"),
    ("train", ["trainer.patience=-1"], "trainer.patience=-1: must be >= 0"),
    ("train", ["optim.lr=-1"], "optim.lr=-1.0: must be > 0"),
    ("train", ["optim.lr=0"], "optim.lr=0.0: must be > 0"),
    ("train", ["optim.label_smoothing=1.5"], "optim.label_smoothing=1.5: must be in [0, 1)"),
    ("train", ["optim.betas=[0.9,1.0]"], "optim.betas=[0.9, 1.0]: must be in [0, 1)"),
    ("train", ["optim.warmup_steps=-3"], "optim.warmup_steps=-3: must be >= 0"),
    ("train", ["optim.betas=[0.9]"], "optim.betas=[0.9]: must be two numbers"),
    ("train", ["optim.lr=inf"], "optim.lr=inf: must be a finite number"),
    (
        "train",
        ["trainer.max_epochs=0", "trainer.max_time=0", "trainer.patience=0"],
        "all 0, so training would never stop",
    ),
    ("train", ["optim.decay=cosine"], "optim.decay=cosine: must be one of inverse_sqrt, linear"),
    (
        "train",
        ["optim.decay=linear", "trainer.max_epochs=0", "trainer.max_time=0", "trainer.patience=3"],
        "optim.decay=linear decays to 0 where the training budget ends",
    ),
    ("train", ["model.heads=0"], "heads (0) must be a whole number of at least 1"),
    ("train", ["model.dropout=1.0"], "dropout (1.0) must be in [0, 1)"),
    ("train", ["data.max_len=1000"], "data.max_len=1000: must be at most model.max_positions=256"),
    ("train", ["data.max_len=0"], "data.max_len=0: must be >= 1"),
    ("train", ["data.tokenizer.model_type=wordpiece"], "data.tokenizer.model_type=wordpiece: must be one of"),
    (
        "train",
        ["data.tokenizer.character_coverage=0"],
        "data.tokenizer.character_coverage=0.0: must be in (0, 1]",
    ),
    ("train", ["seed=-1"], "seed=-1: must be >= 0"),
    ("train", ["decoding.beam_size=0"], "decoding.beam_size=0: must be >= 1"),
    ("train", ["decoding.nbest=3"], "decoding.nbest=3 is not used by greedy search, only by beam search"),
    ("train", ["model.heads=5"], "d_model (256) must be a multiple of heads (5)"),
    ("translate", ["decoding.beam_size=0"], "decoding.beam_size=0: must be >= 1"),
    ("translate", ["decoding.nbest=10"], "decoding.nbest=10: must be at most decoding.beam_size=5"),
    ("translate", ["decoding=sample", "decoding.temperature=0"], "decoding.temperature=0.0: must be > 0"),
    ("translate", ["decoding.top_p=0.9"], "decoding.top_p=0.9 is not used by beam search"),
    ("translate", ["decoding=sample", "decoding.top_p=1.5"], "decoding.top_p=1.5: must be in (0, 1]"),
    ("translate", ["decoding=sample", "decoding.top_p=0"], "decoding.top_p=0.0: must be in (0, 1]"),
    ("translate", ["decoding=sample", "decoding.top_k=-1"], "decoding.top_k=-1: must be >= 0"),
    (
        "translate",
        ["decoding=sample", "decoding.beam_size=4"],
        "decoding.beam_size=4 is not used by sampling search",
    ),
    (
        "translate",
        ["decoding=greedy", "decoding.no_repeat_ngram_size=2"],
        "decoding.no_repeat_ngram_size=2 is not used",
    ),
    ("translate", ["decoding.seed=3"], "decoding.seed=3 is not used by beam search, only by sampling search"),
    ("translate", ["decoding.max_tokens=0"], "decoding.max_tokens=0: must be >= 1"),
    ("translate", ["num_threads=-2"], "num_threads=-2: must be >= 0"),
    ("evaluate", ["decoding.alpha=-1"], "decoding.alpha=-1.0: must be >= 0"),
    ("evaluate", ["precision=half"], "precision=half: must be one of auto, fp32, bf16, fp16"),
    ("evaluate", ["decoding=sample", "decoding.temperature=0"], "decoding.temperature=0.0: must be > 0"),
]


@pytest.mark.parametrize(
    "command, overrides, message", BAD_SETTINGS, ids=[" ".join(b[1]) for b in BAD_SETTINGS]
)
def test_bad_setting_is_one_line_naming_key_value_and_range(command, overrides, message):
    base = ["+model=transformer"] if command == "train" else ["checkpoint=missing.pt"]
    with pytest.raises(UserError) as caught:
        seq2seq_compose(command, [*base, *overrides])
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_bad_settings_stop_the_commands_before_any_work(tmp_path):
    """Through the real command lines: exit 2, one error line, nothing written; translate
    checks its decoding settings even with nothing on stdin, and with no checkpoint loaded."""
    for command, args, message in (
        ("train", ["+model=transformer", "trainer.eval_every=0"], "trainer.eval_every=0"),
        (
            "translate",
            ["checkpoint=missing.pt", "decoding=sample", "decoding.temperature=0"],
            "temperature=0.0",
        ),
        ("evaluate", ["checkpoint=missing.pt", "decoding.nbest=10"], "decoding.nbest=10"),
    ):
        proc = run_cli(command, *args, cwd=tmp_path, stdin="", check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_presets_write_no_default_twice():
    """A YAML preset holds only what it changes: no key of it equals the schema default, and no
    key of a model preset equals the constructor's default."""
    for path in sorted(CONFIG_DIR.glob("*/*.yaml")):
        group = path.parent.name
        preset = OmegaConf.to_container(OmegaConf.load(path) or OmegaConf.create()) or {}
        if group == "model":
            defaults = constructor_defaults(preset["_target_"])
            assert defaults is not None, f"{path.name}: _target_ {preset['_target_']} does not import"
        else:
            schema = SCHEMAS["train"].__dataclass_fields__[group].default_factory()
            defaults = {key: getattr(schema, key) for key in preset if key != "defaults"}
        for key, value in preset.items():
            if not isinstance(value, (dict, list)) and key in defaults:
                assert value != defaults[key], f"{path.name}: {key} repeats its default {value}"


@pytest.mark.parametrize("name", model_choices())
def test_model_config_holds_every_constructor_argument(name):
    """Composed, checked or read without Hydra, a preset gives every argument of its constructor,
    so a plain ``model.KEY=VALUE`` overrides one the preset leaves out and a checkpoint records it."""
    target = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")._target_
    every = ["_target_", *constructor_defaults(target)]
    assert list(composed(f"+model={name}").model) == every
    assert list(check(composed(f"+model={name}")).model) == every
    assert list(model_preset(name)) == every
    assert check(composed(f"+model={name}", "model.max_positions=300")).model.max_positions == 300
    bare = OmegaConf.create({"_target_": target})
    assert list(with_constructor_defaults(bare)) == every


@pytest.mark.slow
def test_help_lists_every_key_with_default_and_range(tmp_path):
    proc = run_cli("train", "--help", cwd=tmp_path)
    for line in ("trainer.eval_every=200", "[>= 1]", "decoding.top_p=1.0", "optim.label_smoothing=0.1"):
        assert line in proc.stdout
    assert "gru_bahdanau, lstm_luong, transformer" in proc.stdout
    model = run_cli("train", "+model=lstm_luong", "--help", cwd=tmp_path)
    assert "model.attention=general" in model.stdout and "optim.lr=0.003" in model.stdout
    translate = help_text("translate", seq2seq_compose("translate", [], checked=False))
    assert "decoding.beam_size=5" in translate and "nbest_output=null" in translate
    assert "checkpoint=??? (required)" in translate
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
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
