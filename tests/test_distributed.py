"""Training on two processes (gloo on CPU) does what one process does on both batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from seq2seq.checkpoints.format import load_checkpoint, step_name
from seq2seq.data.collate import collate
from seq2seq.models.transformer import Transformer
from seq2seq.training.step import Objective, Optimization, train_step
from tests.conftest import ROOT, run_cli, tiny_overrides

pytestmark = pytest.mark.slow  # starts worker processes and torchrun trainings


def tiny_model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(
        40, 40, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32, dropout=0.0
    )


def examples(seed: int, n: int) -> tuple[list[list[int]], list[list[int]]]:
    """n random (source, target) id lists of different lengths."""
    gen = torch.Generator().manual_seed(seed)
    src = [
        torch.randint(4, 40, (int(torch.randint(2, 9, (1,), generator=gen)),), generator=gen)
        for _ in range(n)
    ]
    tgt = [
        torch.randint(4, 40, (int(torch.randint(1, 7, (1,), generator=gen)),), generator=gen)
        for _ in range(n)
    ]
    return [s.tolist() + [2] for s in src], [t.tolist() for t in tgt]  # sources end in EOS (id 2)


def one_step(objective, model, src, tgt):
    """One ``train_step`` with SGD (whose update is the gradient itself, where Adam's first
    step would blow float noise up to a full step); returns (loss, tokens, parameters after it)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    opt = Optimization(optimizer, scheduler, scaler, label_smoothing=0.1, clip_norm=1.0)
    result = train_step(objective, collate(src, tgt), opt, torch.device("cpu"), "fp32")
    return result.loss, result.tokens, {k: v.clone() for k, v in model.state_dict().items()}


def worker(rank: int, world: int, init_file: str, out: str) -> None:
    """Process ``rank`` of ``world``: one step on its own batch, through DistributedDataParallel."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = tiny_model()
    objective = DistributedDataParallel(Objective(model))
    src, tgt = examples(rank, 3)
    result = one_step(objective, model, src, tgt)
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


def test_two_processes_take_the_step_of_one_process_on_both_batches(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    loss, tokens, params = torch.load(out)

    model = tiny_model()
    (src0, tgt0), (src1, tgt1) = examples(0, 3), examples(1, 3)
    ref_loss, ref_tokens, ref_params = one_step(Objective(model), model, src0 + src1, tgt0 + tgt1)

    assert tokens == ref_tokens  # every process's target tokens
    assert abs(loss - ref_loss) < 1e-6  # the mean over all of them
    for name, value in ref_params.items():
        torch.testing.assert_close(params[name], value, rtol=1e-5, atol=1e-6, msg=name)


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "seq2seq.train", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, f"torchrun exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_torchrun_trains_into_one_run_directory_and_resumes_exactly(tiny_corpus, tmp_path):
    overrides = [
        *tiny_overrides(tiny_corpus),
        "trainer.max_tokens=300",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    torchrun(*overrides, cwd=tmp_path)
    (prepared,) = (tmp_path / "cache").glob("????????????????*")  # prepared once, by process 0, for both
    assert (prepared / "meta.json").is_file() and not prepared.name.count(".tmp")

    (run_dir,) = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]  # one for both processes
    assert "2 processes" in (run_dir / "train.log").read_text()
    assert (run_dir / "train_rank1.log").is_file()
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["progress"]["step"] == 4
    assert len(ckpt["rng"]) == 2  # both processes' random state, for an exact resume

    torchrun(*overrides, "trainer.max_steps=6", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    log = (run_dir / "train.log").read_text()
    assert "resuming from" in log and "at step 4" in log
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["progress"]["step"] == 6
    assert (ckpt["progress"]["epoch"], ckpt["progress"]["batch_in_epoch"]) == (0, 12)  # 6 steps of 2 batches

    # The same as two processes running straight to step 6 (dropout on: random states restored).
    torchrun(*overrides, "trainer.max_steps=6", f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    for name, value in straight.items():
        assert torch.allclose(ckpt["model"][name], value, rtol=0, atol=1e-6), name

    # Early stopping decided by the main process's validations stops every process at once.
    patience = [
        "trainer.max_steps=60",
        "trainer.eval_every=1",
        "trainer.patience=1",
        f"hydra.run.dir={tmp_path / 'p'}",
    ]
    torchrun(*overrides, *patience, cwd=tmp_path)
    assert "stopped: trainer.patience=1 at step" in (tmp_path / "p" / "train.log").read_text()

    # One process goes on where the two stopped in the epoch's batch order, with fresh random state.
    proc = run_cli("train", *overrides, "trainer.max_steps=7", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert "saved by 2 processes, not 1" in proc.stderr
    after = load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]
    assert (after["step"], after["epoch"], after["batch_in_epoch"]) == (7, 0, 13)  # one more batch


def test_torchrun_fine_tunes_from_a_checkpoint(tiny_corpus, tmp_path):
    overrides = [
        *tiny_overrides(tiny_corpus),
        "trainer.max_tokens=300",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    run_cli("train", *overrides, f"hydra.run.dir={tmp_path / 'parent'}", cwd=tmp_path)
    parent = tmp_path / "parent" / "checkpoints" / "best.pt"

    fine_tune = tmp_path / "fine_tune"
    torchrun(*overrides, f"trainer.init_from={parent}", f"hydra.run.dir={fine_tune}", cwd=tmp_path)
    assert "fine-tuning from" in (fine_tune / "train.log").read_text()
    ckpt = load_checkpoint(fine_tune / "checkpoints" / "last.pt")
    assert ckpt["parent"]["path"] == str(parent.resolve())
    assert ckpt["progress"]["step"] == 4 and len(ckpt["rng"]) == 2
    start = load_checkpoint(fine_tune / "checkpoints" / step_name(0))  # the parent's weights, validated first
    weights = load_checkpoint(parent)["model"]
    assert start["progress"]["step"] == 0
    assert all(torch.equal(start["model"][name], value) for name, value in weights.items())
