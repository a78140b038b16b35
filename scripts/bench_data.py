"""Large corpora: preparation time, time to the first training step, and peak memory.

Generates a corpus of ``--pairs`` de-en pairs from the shipped data (each line joins 1 to 4
random training pairs of Multi30k, and of every ``--extra`` folder of train.de.gz/train.en.gz,
such as ../shared/data/tatoeba-deu-eng), then measures, each in a fresh process:

* preparation: ``python -m seq2seq.prepare`` into an empty cache (SentencePiece sampling and
  training, encoding, writing), wall time and pairs per second;
* training with that cache: ``python -m seq2seq.train +model=transformer`` on the corpus,
  the wall time from the start of the command to its first training step, and the peak
  resident memory (VmHWM) of the training process after ``--steps`` steps; the same on the
  embedded Multi30k for comparison, and with ``--torchrun N`` on N processes (each one's peak);
* with ``--baseline-tree DIR`` (another checkout, e.g. the code before a change): training
  target tokens/s on Multi30k of both trees, interleaved for ``--rounds`` rounds.

    python scripts/bench_data.py --pairs 1000000 [--extra ../shared/data/tatoeba-deu-eng]
        [--workdir /tmp/seq2seq-bench-data] [--steps 10] [--torchrun 2] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from seq2seq.device import cpu_name

ROOT = Path(__file__).resolve().parent.parent


def read_gz(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.strip() for line in f]


def generate(out: Path, pairs: int, extra: list[Path], seed: int = 0) -> tuple[Path, Path]:
    """Write ``pairs`` lines of 1-4 joined random pairs to out/big.de and out/big.en (once)."""
    src, tgt = out / f"big{pairs}.de", out / f"big{pairs}.en"
    if src.is_file() and tgt.is_file():
        return src, tgt
    folders = [ROOT / "data" / "multi30k", *extra]
    pool_de = [line for f in folders for line in read_gz(f / "train.de.gz")]
    pool_en = [line for f in folders for line in read_gz(f / "train.en.gz")]
    rng = np.random.default_rng(seed)
    start = time.time()
    with open(src, "w", encoding="utf-8") as fde, open(tgt, "w", encoding="utf-8") as fen:
        for first in range(0, pairs, 100_000):
            n = min(100_000, pairs - first)
            counts = rng.integers(1, 5, n)
            picks = rng.integers(0, len(pool_de), int(counts.sum()))
            ends = np.cumsum(counts)
            de, en = [], []
            for a, b in zip((ends - counts).tolist(), ends.tolist(), strict=True):
                rows = picks[a:b].tolist()
                de.append(" ".join(pool_de[i] for i in rows))
                en.append(" ".join(pool_en[i] for i in rows))
            fde.write("\n".join(de) + "\n")
            fen.write("\n".join(en) + "\n")
    print(f"# generated {pairs:,} pairs from {len(pool_de):,} in {time.time() - start:.0f} s: {src}, {tgt}")
    return src, tgt


def env(tree: Path = ROOT) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}


def prepare(src: Path, tgt: Path, cache: Path) -> float:
    """Seconds of ``python -m seq2seq.prepare`` into an empty cache."""
    shutil.rmtree(cache, ignore_errors=True)
    start = time.time()
    cmd = [
        sys.executable,
        "-m",
        "seq2seq.prepare",
        f"data.train.src={src}",
        f"data.train.tgt={tgt}",
        f"data.cache_dir={cache}",
    ]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    seconds = time.time() - start
    print(proc.stdout.strip())
    folder = re.search(r"^(?:prepared|found): (.+)$", proc.stdout, re.M).group(1)
    parts = json.loads((Path(folder) / "meta.json").read_text())["seconds"]
    print("  of which " + ", ".join(f"{step} {s:.1f} s" for step, s in parts.items()))
    return seconds


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmHWM:\s+(\d+)", f.read(), re.M).group(1)) / 1024


def training_pids(proc: subprocess.Popen, torchrun: int) -> list[int]:
    """The training processes: the command itself, or torchrun's children."""
    if not torchrun:
        return [proc.pid]
    kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(k) for k in kids]


def train(args: list[str], work: Path, steps: int, torchrun: int = 0, tree: Path = ROOT) -> dict:
    """Start training, time its first step, read the peak memory of its processes after
    ``steps`` steps, then stop it with SIGTERM (it saves and exits)."""
    run = work / f"run-{time.time_ns()}"
    cmd = [
        sys.executable,
        "-m",
        "seq2seq.train",
        "+model=transformer",
        f"hydra.run.dir={run}",
        "trainer.eval_every=100000",
        "trainer.save_every=0",
        "trainer.log_every=10",
        "trainer.samples=0",
        *args,
    ]
    if torchrun:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={torchrun}",
            *cmd[1:],
        ]
    start = time.time()
    proc = subprocess.Popen(
        cmd, cwd=work, env=env(tree), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    first, speeds, log = None, [], []
    for line in proc.stderr:
        log.append(line)
        if first is None and re.search(r"\] - step \d+ |first step", line):
            first = time.time() - start
        if m := re.search(r"step (\d+) epoch \d+ .* target tokens/s (\d+)", line):
            speeds.append(int(m.group(2)))
            if int(m.group(1)) >= steps:
                break
    if proc.poll() is not None:
        raise SystemExit("".join(log[-20:]))
    peaks = [vm_hwm_mb(pid) for pid in training_pids(proc, torchrun)]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    shutil.rmtree(run, ignore_errors=True)
    return {"first_step_s": first, "peak_mb": peaks, "tokens_per_s": speeds}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument(
        "--extra", type=Path, action="append", default=[], help="another folder of train.*.gz"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/seq2seq-bench-data"))
    parser.add_argument("--steps", type=int, default=10, help="training steps before the memory is read")
    parser.add_argument("--torchrun", type=int, default=0, help="also train on this many processes")
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-prepare", action="store_true", help="keep a cache prepared before")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"# {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")

    src, tgt = generate(work, args.pairs, args.extra)
    cache = work / f"cache{args.pairs}"
    big = [f"data.train.src={src}", f"data.train.tgt={tgt}", f"data.cache_dir={cache}"]
    if not args.skip_prepare:
        seconds = prepare(src, tgt, cache)
        print(f"preparation of {args.pairs:,} pairs: {seconds:.1f} s, {args.pairs / seconds:,.0f} pairs/s")
    small_cache = [f"data.cache_dir={work / 'cache-multi30k'}"]
    train(small_cache, work, 1)  # prepares Multi30k once, outside the measurement
    runs = [("Multi30k", small_cache, 0), (f"{args.pairs:,} pairs", big, 0)]
    if args.torchrun:
        runs += [(f"Multi30k, torchrun {args.torchrun}", small_cache, args.torchrun)]
        runs += [(f"{args.pairs:,} pairs, torchrun {args.torchrun}", big, args.torchrun)]
    for name, extra, n in runs:
        result = train(extra, work, args.steps, torchrun=n)
        peaks = ", ".join(f"{p:,.0f}" for p in result["peak_mb"])
        print(
            f"{name}: first step {result['first_step_s']:.1f} s after the start; peak RSS {peaks} MB "
            f"after {args.steps} steps"
        )

    if args.baseline_tree is not None:
        rates = {"baseline": [], "this tree": []}
        for _ in range(args.rounds):
            for name, tree in (("baseline", args.baseline_tree), ("this tree", ROOT)):
                r = train(["trainer.max_steps=1000", "trainer.num_threads=2"], work, 80, tree=tree)
                rates[name].append(statistics.median(r["tokens_per_s"][1:]))  # the first window warms up
        for name, values in rates.items():
            shown = ", ".join(f"{v:,.0f}" for v in values)
            print(f"Multi30k training, {name}: median target tokens/s per round {shown}")


if __name__ == "__main__":
    main()
