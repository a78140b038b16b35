"""Nothing lost, nothing unsafe: kills, crashes, full disks, hostile files and bad input.

Every failure a user can cause ends in one ``error:`` line and exit status 2, and
leaves what was already on disk as it was; a checkpoint never runs code on load;
a killed training run resumes to exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seq2seq.training.step
import seq2seq.training.trainer
from seq2seq import __version__
from seq2seq.checkpoints.format import FORMAT, load_checkpoint, save_checkpoint
from seq2seq.config import compose
from seq2seq.errors import UserError
from seq2seq.translate import translate

from .conftest import assert_one_error, compose_train, head, last_losses, run_cli, tiny_overrides

# ---------------------------------------------------------------- helpers


def all_finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def payload(value: float) -> dict:
    """The smallest dict ``load_checkpoint`` accepts."""
    return {"format": FORMAT, "version": __version__, "model": {"w": torch.full((4,), value)}, "config": {}}


def write_half_then(exc: BaseException):
    """A ``torch.save`` that writes half of the bytes, then fails with ``exc``."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise exc

    return save


class CreatesFile:
    """Unpickling this object opens (creates) ``path``: code run by a checkpoint."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A zip checkpoint that looks like ours but carries code that creates ``marker``."""
    torch.save({"format": FORMAT, "model": {}, "config": {}, "extra": CreatesFile(marker)}, path)
    return path


def patch_training_loss(monkeypatch, corrupt):
    """Wrap the trainer's loss: ``corrupt(call, logits, loss)`` changes the training
    calls (numbered from 1, one per step); validation calls are left alone."""
    real = seq2seq.training.step.label_smoothed_cross_entropy
    calls = [0]

    def loss_fn(logits, target, epsilon, *args, **kwargs):
        if not torch.is_grad_enabled():
            return real(logits, target, epsilon, *args, **kwargs)
        calls[0] += 1
        logits = corrupt.logits(calls[0], logits)
        loss, nll = real(logits, target, epsilon, *args, **kwargs)
        return corrupt.loss(calls[0], loss), nll

    monkeypatch.setattr(seq2seq.training.step, "label_smoothed_cross_entropy", loss_fn)


class NaNLoss:
    """Loss is NaN on the training calls ``first..last`` (``last=None``: forever)."""

    def __init__(self, first: int, last: int | None = None):
        self.first, self.last = first, last

    def logits(self, call, logits):
        return logits

    def loss(self, call, loss):
        bad = call >= self.first and (self.last is None or call <= self.last)
        return loss * float("nan") if bad else loss


class NaNGradient(torch.autograd.Function):
    """Identity forward; NaN gradients backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class NaNGradientAt:
    """A finite loss whose gradients are NaN, on training call ``call``."""

    def __init__(self, call: int):
        self.call = call

    def logits(self, call, logits):
        return NaNGradient.apply(logits) if call == self.call else logits

    def loss(self, call, loss):
        return loss


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run_dir(tiny_corpus, tmp_path_factory) -> Path:
    """A tiny Transformer trained for 5 steps, saving every step and keeping the last 2
    (one validation, at the end)."""
    work = tmp_path_factory.mktemp("kept")
    run_cli(
        "train",
        *tiny_overrides(tiny_corpus),
        "hydra.run.dir=run",
        "trainer.max_steps=5",
        "trainer.save_every=1",
        "trainer.keep_last=2",
        "trainer.eval_every=100",
        "trainer.samples=0",
        cwd=work,
    )
    return work / "run"


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    """A private copy of ``run_dir`` that a test may damage."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


@pytest.fixture(scope="module")
def refused_run(run_dir, tiny_corpus, tmp_path_factory):
    """Train again into a copy of ``run_dir`` with another vocabulary size.
    Returns (process, run directory, the bytes of its files before)."""
    run = Path(shutil.copytree(run_dir, tmp_path_factory.mktemp("refused") / "run"))
    files = ["tokenizer/spm.model", "checkpoints/last.pt", "checkpoints/best.pt", "config.yaml"]
    before = {name: (run / name).read_bytes() for name in files}
    proc = run_cli(
        "train",
        *tiny_overrides(tiny_corpus),
        "hydra.run.dir=run",
        "trainer.max_steps=5",
        "trainer.save_every=1",
        "trainer.keep_last=2",
        "trainer.samples=0",
        "data.tokenizer.vocab_size=400",
        cwd=run.parent,
        check=False,
    )
    return proc, run, before


# ---------------------------------------------------------------- 1. kill -9 and resume


@pytest.mark.slow
@pytest.mark.parametrize(
    "sampling", [[], ["data.tokenizer.sampling=true"]], ids=["plain", "subword-sampling"]
)
def test_sigkill_then_resume_gives_the_uninterrupted_run(tiny_corpus, tmp_path, sampling):
    """A run killed with SIGKILL mid-epoch and started again logs, step for step, the
    losses of an uninterrupted run (dropout on, so the random state must be restored;
    with subword sampling, each epoch's segmentations too) and ends with the same weights."""
    args = [
        *tiny_overrides(tiny_corpus),
        *sampling,
        "trainer.max_steps=16",
        "trainer.max_tokens=300",
        "trainer.save_every=3",
        "trainer.eval_every=100",
        "trainer.samples=0",
        "data.train_lines=80",  # 12 batches an epoch: 16 steps cross into epoch 2
        "optim.decay=linear",  # the schedule's own state (where its decay began) must resume too
        "optim.warmup_steps=2",
        # train_lines is not part of the tokenizer cache key: keep this tokenizer out of the shared cache
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    run_cli("train", *args, "hydra.run.dir=A", cwd=tmp_path)
    reference = last_losses(tmp_path / "A")
    assert sorted(reference) == list(range(1, 17))
    progress = load_checkpoint(tmp_path / "A/checkpoints/last.pt")["progress"]
    assert progress["epoch"] == 1 and progress["batch_in_epoch"] > 0  # into the second epoch

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "B.stderr", "w") as err:
        victim = subprocess.Popen(
            [sys.executable, "-m", "seq2seq.train", *args, "hydra.run.dir=B"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    metrics, deadline = tmp_path / "B/metrics.jsonl", time.time() + 240
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 8):
        assert victim.poll() is None and time.time() < deadline, (tmp_path / "B.stderr").read_text()
        time.sleep(0.01)
    assert victim.poll() is None, "the run ended before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert len(metrics.read_text().splitlines()) < 16

    resumed = run_cli("train", *args, "hydra.run.dir=B", cwd=tmp_path)
    at = re.search(r"resuming from \S+ at step (\d+)", resumed.stderr)
    assert at and 3 <= int(at.group(1)) < 16, resumed.stderr  # from a save_every checkpoint
    losses = last_losses(tmp_path / "B")
    assert sorted(losses) == sorted(reference)
    for step, loss in reference.items():
        assert abs(losses[step] - loss) <= 1e-6, (step, losses[step], loss)
    a = load_checkpoint(tmp_path / "A/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "B/checkpoints/last.pt")["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name


# ---------------------------------------------------------------- 2. atomic saves


@pytest.mark.parametrize(
    "crash", [KeyboardInterrupt(), RuntimeError("PytorchStreamWriter failed")], ids=["ctrl-c", "error"]
)
def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, crash):
    """A save that dies half-way (Ctrl-C, a serialisation error) leaves the previous
    checkpoint loadable and byte-identical, and no half-written ``.tmp`` behind."""
    path = tmp_path / "last.pt"
    save_checkpoint(payload(1.0), path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", write_half_then(crash))
    with pytest.raises(type(crash)):
        save_checkpoint(payload(2.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((4,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_full_disk_is_one_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """No space left while saving: a UserError naming the file and saying the previous
    checkpoint is kept; that file is unchanged and the partial file is removed."""
    path = tmp_path / "last.pt"
    save_checkpoint(payload(1.0), path)
    before = path.read_bytes()
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", write_half_then(full))
    with pytest.raises(UserError) as caught:
        save_checkpoint(payload(2.0), path)
    message = str(caught.value)
    assert str(path) in message and "No space left on device" in message
    assert "previous one is kept" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_stale_tmp_from_a_killed_save_is_overwritten(tmp_path):
    """A half-written ``last.pt.tmp`` left by a kill does not spoil the next save."""
    path = tmp_path / "last.pt"
    (tmp_path / "last.pt.tmp").write_bytes(b"PK\x03\x04 half a zip")
    save_checkpoint(payload(3.0), path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((4,), 3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ---------------------------------------------------------------- 3. keep_last


@pytest.mark.slow
def test_keep_last_keeps_the_newest_step_checkpoints(run_dir):
    """save_every=1 keep_last=2 max_steps=5 leaves step 4 and 5 next to last.pt and best.pt."""
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*"))
    assert names == ["best.pt", "last.pt", "step_0000004.pt", "step_0000005.pt"]
    for step in (4, 5):
        ckpt = load_checkpoint(run_dir / f"checkpoints/step_{step:07d}.pt")
        assert ckpt["progress"]["step"] == step


# ---------------------------------------------------------------- 4. safe loading


def test_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    """A checkpoint whose pickle would create a file is refused, and the file is not
    created; the same bytes loaded unsafely do run the code (the test file is real)."""
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()

    control = tmp_path / "control"
    torch.load(evil_checkpoint(tmp_path / "control.pt", control), weights_only=False)
    assert control.exists()


@pytest.mark.slow
def test_evaluate_refuses_a_checkpoint_carrying_code(tmp_path):
    """Through the command line: one error line, exit 2, and the code never ran."""
    marker = tmp_path / "pwned"
    evil_checkpoint(tmp_path / "evil.pt", marker)
    proc = run_cli("evaluate", "checkpoint=evil.pt", cwd=tmp_path, check=False)
    assert_one_error(proc, "evil.pt", "refused")
    assert not marker.exists()


# ---------------------------------------------------------------- 5. numerical faults


@pytest.mark.slow
def test_a_few_nan_losses_are_skipped(tiny_corpus, tmp_path, monkeypatch, caplog):
    """Three NaN losses in a row (fewer than max_bad_steps) skip their updates with a
    warning each; training reaches max_steps with finite weights."""
    cfg = compose_train(
        tiny_corpus, "trainer.max_steps=8", "trainer.eval_every=100", "trainer.max_bad_steps=5"
    )
    patch_training_loss(monkeypatch, NaNLoss(3, 5))
    progress = seq2seq.training.trainer.train(cfg, tmp_path / "run").progress
    assert progress.step == 8
    skipped = [r for r in caplog.records if "update skipped" in r.getMessage()]
    assert [r.levelname for r in skipped] == ["WARNING"] * 3
    losses = last_losses(tmp_path / "run")
    assert [s for s, loss in losses.items() if loss is None] == [3, 4, 5]  # non-finite: null
    assert all_finite(load_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"])


@pytest.mark.slow
def test_endless_nan_losses_stop_training_and_keep_the_last_good_checkpoint(
    tiny_corpus, tmp_path, monkeypatch
):
    """NaN from step 4 on: "training diverged" after max_bad_steps, and the last.pt
    saved before that still loads, with finite weights."""
    cfg = compose_train(
        tiny_corpus,
        "trainer.max_steps=20",
        "trainer.eval_every=100",
        "trainer.save_every=2",
        "trainer.max_bad_steps=3",
    )
    patch_training_loss(monkeypatch, NaNLoss(4))
    with pytest.raises(UserError, match="training diverged"):
        seq2seq.training.trainer.train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert 2 <= ckpt["progress"]["step"] < 6
    assert all_finite(ckpt["model"])


@pytest.mark.slow
def test_non_finite_gradients_do_not_reach_the_weights(tiny_corpus, tmp_path, monkeypatch, caplog):
    """A finite loss whose gradients are NaN (an overflow in backward) is skipped like a
    NaN loss: the weights stay finite and training goes on to max_steps."""
    cfg = compose_train(tiny_corpus, "trainer.max_steps=5", "trainer.eval_every=100")
    patch_training_loss(monkeypatch, NaNGradientAt(3))
    seq2seq.training.trainer.train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["progress"]["step"] == 5
    assert all_finite(ckpt["model"]), "one step with NaN gradients made the weights NaN"
    assert all(loss is not None for step, loss in last_losses(tmp_path / "run").items() if step != 3)


# ---------------------------------------------------------------- 6. bad inputs


def train_with(corpus, cwd: Path, *extra: str):
    return run_cli("train", *tiny_overrides(corpus), "hydra.run.dir=run", *extra, cwd=cwd, check=False)


def train_on(corpus, tmp_path: Path, name: str, src: bytes, tgt: bytes):
    """Train with ``name``.de / ``name``.en, holding these bytes, as the training split."""
    (tmp_path / f"{name}.de").write_bytes(src)
    (tmp_path / f"{name}.en").write_bytes(tgt)
    paths = (f"data.train.src={tmp_path / name}.de", f"data.train.tgt={tmp_path / name}.en")
    return train_with(corpus, tmp_path, *paths)


@pytest.mark.slow
def test_empty_corpus(tiny_corpus, tmp_path):
    """Empty training files: one error line saying the corpus is empty."""
    proc = train_on(tiny_corpus, tmp_path, "empty", b"", b"")
    assert_one_error(proc, "empty.de", "empty")
    assert not (tmp_path / "run/checkpoints").exists()


@pytest.mark.slow
def test_line_count_mismatch_names_both_counts(tiny_corpus, tmp_path):
    """3 source lines against 5 target lines: the message gives both counts."""
    proc = train_on(tiny_corpus, tmp_path, "a", b"eins\nzwei\ndrei\n", b"one\ntwo\nthree\nfour\nfive\n")
    assert_one_error(proc, "has 3 lines", "has 5")


@pytest.mark.slow
def test_invalid_utf8_names_file_and_line(tiny_corpus, tmp_path):
    """A byte that is not UTF-8 on line 2 of the training source: the message names file:line."""
    proc = train_on(tiny_corpus, tmp_path, "bad", b"ein Hund\nein \xff\xfe Hund\n", b"a dog\na dog\n")
    assert_one_error(proc, f"{tmp_path / 'bad.de'}:2", "UTF-8")


@pytest.mark.slow
def test_checkpoint_of_another_format(run_copy):
    """A checkpoint written in another layout: the message names both formats and versions."""
    ckpt = torch.load(run_copy / "checkpoints/last.pt", weights_only=True)
    ckpt["format"], ckpt["version"] = FORMAT + 1, "99.0"
    torch.save(ckpt, run_copy / "checkpoints/future.pt")
    proc = run_cli("evaluate", "checkpoint=run/checkpoints/future.pt", cwd=run_copy.parent, check=False)
    assert_one_error(proc, f"format {FORMAT + 1}", "99.0", f"format {FORMAT}", __version__)


@pytest.mark.slow
def test_checkpoint_of_format_1_still_translates_but_is_not_resumed(run_copy, tiny_corpus):
    """A checkpoint written in format 1 (the Transformer's ``tie_output``, one random state
    at the top level, ``trainer.valid_max_tokens``, no prepared corpus): translate reads it;
    training into its run directory is refused with one line saying why, changing nothing."""
    ckpt = torch.load(run_copy / "checkpoints/last.pt", weights_only=True)
    ckpt["format"], ckpt["rng"] = 1, ckpt["rng"][0]
    ckpt["config"]["model"]["tie_output"] = ckpt["config"]["model"].pop("tie_embeddings")
    ckpt["config"]["trainer"]["valid_max_tokens"] = 8000
    ckpt["progress"].pop("validated_step")
    del ckpt["data"]
    torch.save(ckpt, run_copy / "checkpoints/last.pt")
    before = (run_copy / "checkpoints/last.pt").read_bytes()
    out = run_cli("translate", "checkpoint=run/checkpoints/last.pt", cwd=run_copy.parent, stdin="Ein Hund.\n")
    assert out.stdout.count("\n") == 1
    args = ["trainer.max_steps=6", "trainer.save_every=1", "trainer.keep_last=2", "trainer.eval_every=100"]
    proc = run_cli(
        "train", *tiny_overrides(tiny_corpus), "hydra.run.dir=run", "trainer.samples=0", *args,
        cwd=run_copy.parent, check=False,
    )  # fmt: skip
    assert_one_error(
        proc, "before training corpora were prepared", "cannot be resumed", "evaluate and translate"
    )
    assert (run_copy / "checkpoints/last.pt").read_bytes() == before


@pytest.mark.slow
def test_resuming_on_changed_training_data_is_refused(run_copy, tiny_corpus, tmp_path):
    """The same file names with other content: the prepared corpus differs, so resuming is
    refused with one line naming both; validation files may change (a warning says so)."""
    edited = tmp_path / "train.en"
    edited.write_text("".join(line.replace("A", "The", 1) for line in head(tiny_corpus["train.en"], 300)))
    args = [*tiny_overrides(tiny_corpus), "hydra.run.dir=run", "trainer.samples=0", "trainer.max_steps=6"]
    proc = run_cli("train", *args, f"data.train.tgt={edited}", cwd=run_copy.parent, check=False)
    assert_one_error(proc, "was trained on other data", "prepared corpus")
    valid = tmp_path / "valid.en"
    valid.write_text(tiny_corpus["valid.en"].read_text())
    resumed = run_cli(
        "train", *args, f"data.valid.tgt={valid}", "trainer.eval_every=100", cwd=run_copy.parent
    )
    assert "resuming with other data settings" in resumed.stderr and "valid" in resumed.stderr


@pytest.mark.slow
def test_tokenizer_replaced_by_another_model(run_copy, tiny_corpus, tmp_path):
    """Another SentencePiece model in the run's tokenizer/ does not reach a checkpoint, which
    carries its own; one whose carried model was altered is refused by the hash check.
    (A format-2 checkpoint reads its run's tokenizer/: test_compatibility.py checks that.)"""
    lines = [line.strip() for line in head(tiny_corpus["train.de"], 200)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(tmp_path / "other"),
        vocab_size=120,
        minloglevel=2,
        num_threads=1,
    )
    before = run_cli(
        "translate", "checkpoint=run/checkpoints/last.pt", cwd=run_copy.parent, stdin="Ein Hund.\n"
    )
    shutil.copyfile(tmp_path / "other.model", run_copy / "tokenizer/spm.model")
    after = run_cli(
        "translate", "checkpoint=run/checkpoints/last.pt", cwd=run_copy.parent, stdin="Ein Hund.\n"
    )
    assert after.stdout == before.stdout

    ckpt = torch.load(run_copy / "checkpoints/last.pt", weights_only=True)
    model = ckpt["tokenizer"]["models"]["src"]  # joint: the target's too
    model[len(model) // 2] ^= 1
    torch.save(ckpt, run_copy / "checkpoints/altered.pt")
    proc = run_cli("evaluate", "checkpoint=run/checkpoints/altered.pt", cwd=run_copy.parent, check=False)
    assert_one_error(proc, "altered.pt", "spm.model", "does not match its hash")


@pytest.mark.slow
def test_tokenizer_folder_missing(run_copy):
    """The run's tokenizer/ deleted: its checkpoints still translate, with the tokenizer they carry."""
    shutil.rmtree(run_copy / "tokenizer")
    proc = run_cli(
        "translate", "checkpoint=run/checkpoints/last.pt", cwd=run_copy.parent, stdin="Ein Hund.\n"
    )
    assert proc.stdout.count("\n") == 1


@pytest.mark.slow
def test_truncated_checkpoint(run_copy):
    """The first half of a checkpoint's bytes: one error line, no traceback."""
    data = (run_copy / "checkpoints/last.pt").read_bytes()
    (run_copy / "checkpoints/cut.pt").write_bytes(data[: len(data) // 2])
    proc = run_cli("evaluate", "checkpoint=run/checkpoints/cut.pt", cwd=run_copy.parent, check=False)
    assert_one_error(proc, "cut.pt", "truncated")


@pytest.mark.slow
def test_training_into_a_run_with_other_data_settings_loses_nothing(refused_run):
    """Another data.tokenizer.vocab_size in an existing run directory: one error line,
    and the run's tokenizer and checkpoints are byte-identical to before."""
    proc, run, before = refused_run
    assert_one_error(proc, "last.pt", "data.*")
    for name in ("tokenizer/spm.model", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).read_bytes() == before[name], name


@pytest.mark.slow
def test_refused_run_keeps_the_run_config(refused_run):
    """The refused run does not overwrite the run's config.yaml, which still describes
    how its checkpoints were trained."""
    _, run, before = refused_run
    now = (run / "config.yaml").read_text()
    assert now == before["config.yaml"].decode(), "config.yaml now holds the refused settings" + (
        " (vocab_size: 400)" if "vocab_size: 400" in now else ""
    )


@pytest.mark.slow
def test_unknown_model_name(tiny_corpus, tmp_path):
    """+model=nosuch: one error line naming the model, exit 2."""
    args = [a for a in tiny_overrides(tiny_corpus) if not a.startswith(("+model=", "model."))]
    proc = run_cli("train", *args, "+model=nosuch", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert_one_error(proc, "nosuch")


@pytest.mark.slow
def test_unknown_config_key(tiny_corpus, tmp_path):
    """A misspelt key (trainer.max_step): one error line naming it, exit 2."""
    proc = train_with(tiny_corpus, tmp_path, "trainer.max_step=3")
    assert_one_error(proc, "trainer.max_step")


# ---------------------------------------------------------------- 7. translate survives any input

ODD = [
    "\x00", "\t", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\u200b",
    "\u0301", "\U0001f600", "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\U0001f1e9\U0001f1ea",
    "ß", "中文", "עברית", "العربية", "Ωμέγα", "  ", "Ein Hund läuft.",
]  # fmt: skip
TEXT_LINE = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(ODD)), max_size=6).map("".join)


@pytest.fixture(scope="module")
def translate_files(run_dir, tmp_path_factory):
    """(config, input file, output file) for in-process translation with ``run_dir``'s last.pt."""
    work = tmp_path_factory.mktemp("translate")
    inp, out = work / "in.txt", work / "out.txt"
    cfg = compose(
        "translate",
        [
            f"checkpoint={run_dir / 'checkpoints/last.pt'}",
            f"input={inp}",
            f"output={out}",
            "decoding.beam_size=2",
            "decoding.max_len_a=0",  # short outputs keep examples fast; the long-line test
            "decoding.max_len_b=8",  # below decodes up to the model's limit
            "num_threads=1",
            "device=cpu",
        ],
    )
    return cfg, inp, out


def translated_lines(translate_files, data: bytes) -> list[str]:
    """Translate ``data`` as the input file; return the output's lines, checking that
    it is newline-terminated UTF-8 with no other line breaks."""
    cfg, inp, out = translate_files
    inp.write_bytes(data)
    translate(cfg)
    text = out.read_bytes().decode("utf-8")
    lines = text.split("\n")
    assert lines.pop() == ""
    assert text.splitlines() == lines  # no \r, \x85, \u2028 ... inside a line
    return lines


@pytest.mark.slow
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(TEXT_LINE, max_size=8))
def test_translate_any_text_one_line_per_line(translate_files, items):
    """Any text (control characters, emoji, mixed scripts, empty lines) gives exactly
    one output line per input line."""
    items = [t.replace("\n", " ").replace("\r", " ") for t in items]
    data = "".join(t + "\n" for t in items).encode("utf-8")
    assert len(translated_lines(translate_files, data)) == len(items)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.binary(max_size=40), max_size=8), newline_at_end=st.booleans())
def test_translate_any_bytes_one_line_per_line(translate_files, items, newline_at_end):
    """Any bytes (invalid UTF-8, NUL, CR) give one output line per input line; a last
    line without a newline still counts."""
    items = [b.replace(b"\n", b" ") for b in items]
    data = b"\n".join(items) + (b"\n" if newline_at_end and items else b"")
    expected = len(data.split(b"\n")) - (1 if data.endswith(b"\n") or not data else 0)
    assert len(translated_lines(translate_files, data)) == expected


@pytest.mark.slow
def test_very_long_line_is_cut_with_a_warning(run_dir, tmp_path):
    """3000 words on one line: cut to the model's limit with a warning on stderr, and
    still exactly one output line."""
    text = " ".join(["Ein", "Hund", "läuft", "durch", "den", "Schnee."] * 500) + "\n"
    proc = run_cli(
        "translate",
        f"checkpoint={run_dir / 'checkpoints/last.pt'}",
        "decoding.beam_size=2",
        "num_threads=1",
        cwd=tmp_path,
        stdin=text,
    )
    assert "cut to the model's limit of 256" in proc.stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.endswith("\n")
