"""How training ends: on a signal, on a budget already met, on a failed check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import seq2seq.training.trainer
from seq2seq.checkpoints.format import load_checkpoint
from seq2seq.special import EOS_ID
from seq2seq.training.signals import Interrupted, StopSignals

from .conftest import compose_train, last_losses, run_cli, tiny_overrides

STEPS = 30


def long_run_args(tiny_corpus, tmp_path: Path) -> list[str]:
    """A tiny run of STEPS steps that validates only at its end (dropout on)."""
    return [
        *tiny_overrides(tiny_corpus),
        f"trainer.max_steps={STEPS}",
        "trainer.max_tokens=300",
        "trainer.save_every=0",
        "trainer.eval_every=1000",
        "trainer.samples=0",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]


@pytest.fixture(scope="module")
def reference(tiny_corpus, tmp_path_factory):
    """An uninterrupted run: (its folder, the arguments that made it)."""
    work = tmp_path_factory.mktemp("reference")
    args = long_run_args(tiny_corpus, work)
    run_cli("train", *args, "hydra.run.dir=A", cwd=work)
    return work, args


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_saves_says_how_to_resume_and_resumes_exactly(reference, sig, code):
    """A signal mid-epoch: the step in progress finishes, last.pt is saved at that step,
    one log line says where training stopped and how to resume, the exit status is
    128 + the signal; training again from there logs the uninterrupted run's losses."""
    work, args = reference
    run = work / sig.name
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    err = work / f"{sig.name}.stderr"
    with open(err, "w") as stderr:
        victim = subprocess.Popen(
            [sys.executable, "-m", "seq2seq.train", *args, f"hydra.run.dir={run}"],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        metrics, deadline = run / "metrics.jsonl", time.time() + 240
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5):
            assert victim.poll() is None and time.time() < deadline, err.read_text()
            time.sleep(0.01)
        victim.send_signal(sig)
        assert victim.wait(timeout=120) == code, err.read_text()
    text = err.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    stopped = re.search(
        rf"stopped by {sig.name} at step (\d+) \(epoch 1\); saved (\S+); to resume: (.+)", text
    )
    assert stopped, text
    step = int(stopped.group(1))
    assert 5 <= step < STEPS and Path(stopped.group(2)) == run / "checkpoints" / "last.pt"
    assert stopped.group(3).startswith("python -m seq2seq.train +model=transformer")
    assert stopped.group(3).endswith(f"hydra.run.dir={run}")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == step
    assert len(last_losses(run)) == step  # no step after the saved one

    resumed = run_cli("train", *args, f"hydra.run.dir={run}", cwd=work)
    assert f"resuming from {run / 'checkpoints' / 'last.pt'} at step {step}" in resumed.stderr
    expected, losses = last_losses(work / "A"), last_losses(run)
    assert sorted(losses) == sorted(expected) == list(range(1, STEPS + 1))
    for s, loss in expected.items():
        assert abs(losses[s] - loss) <= 1e-6, (s, losses[s], loss)


@pytest.mark.slow
def test_signal_during_validation_abandons_it_and_saves(tiny_corpus, tmp_path, monkeypatch, caplog):
    """SIGTERM while validating: validation is dropped at once, last.pt is saved at that
    step without a best.pt, and training reports the signal. Training again first runs
    the validation that was dropped."""

    def slow_validation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this
        raise AssertionError("validation was not abandoned")

    monkeypatch.setattr(seq2seq.training.trainer, "validate_all", slow_validation)
    cfg = compose_train(tiny_corpus, "trainer.max_steps=10", "trainer.eval_every=3")
    began = time.time()
    trainer = seq2seq.training.trainer.train(cfg, tmp_path / "run")
    assert time.time() - began < 25
    assert trainer.stops.received == signal.SIGTERM and trainer.progress.step == 3
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["progress"]["step"] == 3
    assert not (tmp_path / "run/checkpoints/best.pt").exists()
    assert signal.getsignal(signal.SIGTERM) != trainer.stops._handle  # handlers given back

    with caplog.at_level("INFO", logger="seq2seq.train"):  # the validation due at step 3 comes first
        monkeypatch.undo()
        caplog.clear()  # the first run's lines
        resumed = seq2seq.training.trainer.train(cfg, tmp_path / "run")
    messages = [m for m in caplog.messages if m.startswith(("resuming", "validation at", "step "))]
    assert messages[0] == f"resuming from {tmp_path / 'run/checkpoints/last.pt'} at step 3 (epoch 1)"
    assert messages[1].startswith("validation at step 3:"), messages  # before any step of training
    assert [m for m in messages if m.startswith("validation at step 3:")] == messages[1:2]  # once
    assert resumed.progress.step == 10 and (tmp_path / "run/checkpoints/best.pt").exists()


def test_stop_signals_defer_then_abort():
    with StopSignals() as stops:
        os.kill(os.getpid(), signal.SIGTERM)  # outside abortable blocks: only noted
        assert stops.received == signal.SIGTERM and stops.name == "SIGTERM"
        with pytest.raises(Interrupted):  # a block that may be dropped does not even start
            with stops.abortable():
                raise AssertionError("not reached")
        with pytest.raises(Interrupted) as second:  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert second.value.exit_code == 130
    with StopSignals(can_abort=False) as stops, stops.abortable():  # torchrun's other processes
        os.kill(os.getpid(), signal.SIGINT)
        assert stops.received == signal.SIGINT


def run_files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_finished_run_is_left_alone(tiny_corpus, tmp_path):
    """Training again into a run whose last.pt met its budget says so, exits 0 and changes
    no byte of the run directory; a raised budget trains on."""
    args = [*tiny_overrides(tiny_corpus), "hydra.run.dir=run", "trainer.samples=0"]
    run_cli("train", *args, cwd=tmp_path)
    before = run_files(tmp_path / "run")
    again = run_cli("train", *args, cwd=tmp_path)
    assert again.stderr.startswith("run is complete: trainer.max_steps=4 reached at step 4")
    assert "raise trainer.max_steps" in again.stderr
    assert run_files(tmp_path / "run") == before
    quoted = [a for a in args if not a.startswith("hydra.run.dir")] + ["hydra.run.dir='run'"]
    assert "nothing changed" in run_cli("train", *quoted, cwd=tmp_path).stderr
    assert run_files(tmp_path / "run") == before
    more = run_cli("train", *args, "trainer.max_steps=6", cwd=tmp_path)
    assert "at step 4" in more.stderr and "stopped: trainer.max_steps=6 at step 6" in more.stderr


@pytest.mark.slow
def test_a_run_stopped_early_is_complete(tiny_corpus, tmp_path, caplog):
    """patience=1 stops after a validation without a better BLEU; trying again says the
    run is complete and which key to raise."""
    cfg = compose_train(tiny_corpus, "trainer.max_steps=40", "trainer.eval_every=1", "trainer.patience=1")
    trainer = seq2seq.training.trainer.train(cfg, tmp_path / "run")
    assert trainer.progress.step < 40 and trainer.progress.bad_evals == 1
    before = run_files(tmp_path / "run")
    with caplog.at_level("INFO", logger="seq2seq.train"):
        again = seq2seq.training.trainer.train(cfg, tmp_path / "run")
    assert again.progress.step == trainer.progress.step and run_files(tmp_path / "run") == before
    assert any(
        "is complete: trainer.patience=1" in m and "raise trainer.patience" in m for m in caplog.messages
    )


@pytest.mark.slow
def test_failed_check_leaves_no_run_directory(tiny_corpus, tmp_path):
    """A missing training file, found after Hydra made the run directory: one error line,
    and neither the run directory nor outputs/ is left behind."""
    args = [a for a in tiny_overrides(tiny_corpus) if not a.startswith("data.train.src")]
    proc = run_cli("train", *args, f"data.train.src={tmp_path / 'nope.de'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "nope.de: no such file; check data.train.src" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_throughput_counts_training_steps_only(tmp_path, caplog):
    """Target tokens/s is the window's tokens over the time of its steps alone, and the
    window starts afresh after every log line."""
    from seq2seq.training.log import TrainingLog

    log = TrainingLog(tmp_path, log_every=2, total_steps=None, step=0, enabled=True, bar=False)
    with caplog.at_level("INFO", logger="seq2seq.train"):
        log.step(1, 0, 2.0, tokens=100, seconds=0.5, lr=1e-3, grad_norm=1.0)
        time.sleep(0.3)  # validation, saving: not training time
        log.step(2, 0, 2.0, tokens=300, seconds=0.5, lr=1e-3, grad_norm=1.0)
        log.step(3, 0, 2.0, tokens=50, seconds=1.0, lr=1e-3, grad_norm=1.0)
        log.step(4, 0, 2.0, tokens=50, seconds=1.0, lr=1e-3, grad_norm=1.0)
    log.close()
    speeds = [float(m.split("target tokens/s ")[1]) for m in caplog.messages if "target tokens/s" in m]
    assert speeds == [400.0, 50.0]


@pytest.mark.slow
def test_second_signal_during_a_step_stops_at_once(tiny_corpus, tmp_path, monkeypatch, caplog):
    """Two SIGINTs inside one step: the second ends training at once, with a line that
    says so; the checkpoint saved before stays as it was."""
    real, calls = seq2seq.training.trainer.train_step, []

    def twice(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # noted: the step goes on
            os.kill(os.getpid(), signal.SIGINT)  # a second one: stop now
        return real(*args, **kwargs)

    monkeypatch.setattr(seq2seq.training.trainer, "train_step", twice)
    cfg = compose_train(tiny_corpus, "trainer.max_steps=10", "trainer.eval_every=100", "trainer.save_every=2")
    with caplog.at_level("INFO", logger="seq2seq.train"):
        trainer = seq2seq.training.trainer.train(cfg, tmp_path / "run")
    assert trainer.stops.received == signal.SIGINT and trainer.progress.step == 2
    assert any("stopped at once by a second SIGINT" in m for m in caplog.messages), caplog.messages
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["progress"]["step"] == 2


def test_signals_wait_while_a_checkpoint_is_written():
    with StopSignals() as stops, stops.shielded():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # even a second one
        assert stops.received == signal.SIGTERM


@pytest.mark.slow
def test_failed_check_keeps_a_folder_that_existed(tiny_corpus, tmp_path):
    """hydra.run.dir naming a folder the user already had (or the working directory
    itself): a failed check removes nothing of it."""
    mine = tmp_path / "exp" / "tokenizer" / "my_spm.model"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    args = [a for a in tiny_overrides(tiny_corpus) if not a.startswith("data.train.src")]
    bad = f"data.train.src={tmp_path / 'nope.de'}"
    for cwd, run in ((tmp_path / "exp", "."), (tmp_path, "exp")):
        proc = run_cli("train", *args, bad, f"hydra.run.dir={run}", cwd=cwd, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert mine.read_text() == "mine"


@pytest.mark.slow
def test_validation_pairs_longer_than_the_model_are_cut(tiny_corpus, tmp_path, caplog):
    """A validation line of about 3,000 pieces: validation cuts it (loss and BLEU) and
    training goes on, instead of failing at the first validation."""
    valid = [line.strip() for line in tiny_corpus["valid.de"].read_text().splitlines()]
    long_src = tmp_path / "valid.de"
    long_src.write_text("\n".join([" ".join(valid * 30)] + valid[1:]) + "\n")
    cfg = compose_train(
        tiny_corpus, f"data.valid.src={long_src}", "trainer.max_steps=2", "trainer.eval_every=2"
    )
    with caplog.at_level("WARNING", logger="seq2seq.train"):
        trainer = seq2seq.training.trainer.train(cfg, tmp_path / "run")
    limit = trainer.model.max_positions
    cut = [m for m in caplog.messages if m.startswith("validation:")]
    assert cut == [f"validation: 1 pairs longer than the model's limit of {limit} pieces are cut"]
    (valid,) = trainer.valid
    assert len(valid.src_ids[0]) == limit and valid.src_ids[0][-1] == EOS_ID
    assert all(len(s) <= limit for s in valid.src_ids)
    assert trainer.progress.validated_step == 2
