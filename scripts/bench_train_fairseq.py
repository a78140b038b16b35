"""Training speed: fairseq-train against ``python -m seq2seq.train``, same data, same model.

Runs alternate (fairseq, seq2seq, fairseq, ...) for ``--rounds`` rounds, so that drift on a
shared machine hits both alike; prints target tokens/s per round as a markdown table.

Data: Multi30k de-en. ``python -m seq2seq.prepare`` finds (or makes) our prepared corpus and
its joint 8k SentencePiece model in ``~/.cache/seq2seq/prepared/KEY``; the training pairs its
``meta.json`` names are encoded with that model into pieces (``data.max_len`` applied, the
lengths checked against ours) and binarized once per KEY in ``--workdir`` by
``fairseq-preprocess --joined-dictionary`` with a ``dict.txt`` of the pieces in id order:
fairseq's <s> <pad> </s> <unk> take ids 0-3 (ours: <pad> <unk> <s> </s>), every other piece
keeps its id; 8,000 tokens on both sides.

Model and training, both: d_model 256, 3+3 layers, 4 heads, ffn 1024 (ReLU), pre-norm with a final
LayerNorm, sinusoidal positions, embeddings scaled by sqrt(d_model) and all tied, dropout 0.1
(ours: ``model.dropout=0.1``, the preset has 0.2), attention and activation dropout 0, label
smoothing 0.1, Adam (0.9, 0.98) eps 1e-9, lr 1e-3 (400 linear warmup steps, then 1/sqrt(step)),
clip-norm 1.0, seed 1, on 2 CPU threads (ours: ``trainer.precision=auto``, bf16 autocast on a CPU
with AMX; fairseq: fp32 unless ``--extra-fairseq=--bf16``), one data-loading worker, no validation
or checkpoint while measuring: our defaults (``seq2seq/config/schema.py``,
``configs/model/transformer.yaml``) with fairseq's schedule in place of the preset's
(``configs/optim/adam.yaml``), given to fairseq as flags (its default Adam eps is 1e-8). What
differs:

* batches: both cap n sentences times the largest max(source, target) length among them at
  4,096, EOS counted on both sides (ours: ``trainer.max_tokens=4096``, twice the preset's, the
  padded rows, sizes max(src + EOS, tgt + 1); fairseq: ``--max-tokens`` over max(src_sizes, tgt_sizes));
  ``--required-batch-size-multiple 1`` stops fairseq rounding a batch down to a multiple of
  8 sentences. Ours sorts by that size, fairseq by source then target length (ties random),
  so the batches differ: see "target tokens/update";
* ours runs the output layer on the non-padding target positions only, fairseq on all;
* fairseq 0.12.2 reports 9.94M parameters, we 7.58M: its encoder layers also hold unused
  copies of their weights for BetterTransformer inference (2.37M, never given a gradient);
* ours times each step from the end of the one before (batch loading in, validation and
  saving out); fairseq's ``wps`` is the tokens since the last log line over the wall time
  since then (a TimeMeter reset at each log line).

Target tokens/s, a log line every 10 steps: ours, non-padding ``tgt_out`` tokens (EOS in), from
the ``step N epoch E ... target tokens/s X`` lines; fairseq, the ``wps`` of its ``train_inner``
lines, ``metrics.log_speed("wps", ntokens)`` (``tasks/fairseq_task.py``), ``ntokens`` being the
non-padding target tokens, EOS in (``collate``, ``data/language_pair_dataset.py``). Per run the
median of the windows but the first (warm-up); each side's median over rounds; their ratio.

    python scripts/bench_train_fairseq.py --fairseq /work/peers/fairseq [--rounds 3]
        [--steps 80] [--workdir /tmp/seq2seq-bench-fairseq] [--extra-seq2seq 'key=value ...']
        [--extra-fairseq='--flag ...'] [--baseline-tree DIR]

``--baseline-tree DIR`` adds our trainer run from another checkout (``git worktree add DIR
COMMIT``) as a third column, so one interleaved run gives before, after and fairseq.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import sentencepiece as spm

from seq2seq.device import cpu_name

ROOT = Path(__file__).resolve().parent.parent
SPECIALS = 4  # fairseq's <s> <pad> </s> <unk>, and our <pad> <unk> <s> </s>: ids 0-3
# 0.12.2 loads the valid subset even with --disable-validation: --valid-subset names one that exists
FAIRSEQ_FLAGS = """--task translation --source-lang src --target-lang tgt --arch transformer
    --encoder-layers 3 --encoder-embed-dim 256 --encoder-ffn-embed-dim 1024 --encoder-attention-heads 4
    --decoder-layers 3 --decoder-embed-dim 256 --decoder-ffn-embed-dim 1024 --decoder-attention-heads 4
    --encoder-normalize-before --decoder-normalize-before --share-all-embeddings
    --max-source-positions 256 --max-target-positions 256 --dropout 0.1 --attention-dropout 0
    --activation-dropout 0 --criterion label_smoothed_cross_entropy --label-smoothing 0.1
    --optimizer adam --adam-betas (0.9,0.98) --adam-eps 1e-9 --clip-norm 1.0 --lr 1e-3
    --lr-scheduler inverse_sqrt --warmup-updates 400 --max-tokens 4096 --required-batch-size-multiple 1
    --seed 1 --cpu --num-workers 1 --disable-validation --valid-subset train --no-save
    --log-format simple --log-interval 10"""
SEQ2SEQ_ARGS = """+model=transformer trainer.eval_every=100000 trainer.save_every=0 trainer.log_every=10
    trainer.samples=0 trainer.num_threads=2 trainer.max_tokens=4096 optim.lr=1e-3 optim.warmup_steps=400
    optim.decay=inverse_sqrt model.dropout=0.1"""


def env(tree: Path = ROOT) -> dict:
    threads = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    return {**os.environ, **threads, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}


def run_quietly(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def prepared(extra: list[str]) -> Path:
    """Our prepared corpus (made once, in the usual cache) under the ``data.*`` overrides."""
    out = run_quietly([sys.executable, "-m", "seq2seq.prepare", *(a for a in extra if a.startswith("data."))])
    return Path(re.search(r"^(?:prepared|found): (.+)$", out, re.M).group(1))


def read_lines(path: str, count: int) -> list[str]:
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
        return [line.strip() for line in islice(f, count)]


def fairseq_data(folder: Path, work: Path, fairseq: Path) -> Path:
    """Binarize the pairs of the prepared ``folder`` for fairseq, once; returns its data dir."""
    out = work / f"data-{folder.name}"
    if (out / "done").is_file():
        return out
    if not (folder / "spm.model").is_file():
        raise SystemExit("fairseq shares all embeddings: it needs data.tokenizer.joint=true")
    meta = json.loads((folder / "meta.json").read_text())
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    sides = [
        sp.encode(read_lines(meta["files"][s]["path"], meta["lines"]), out_type=str) for s in ("src", "tgt")
    ]
    limit = meta["settings"]["max_len"]  # ours keeps a pair when both sides fit with EOS
    pairs = [p for p in zip(*sides, strict=True) if max(map(len, p)) + 1 <= limit]
    for i, side in enumerate(("src", "tgt")):  # our src lengths count the EOS
        if not np.array_equal(np.load(folder / f"{side}.len.npy") - (i == 0), [len(p[i]) for p in pairs]):
            raise SystemExit(f"the {side} pieces differ from those of {folder}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for i, side in enumerate(("src", "tgt")):
        (out / f"train.{side}").write_text("".join(" ".join(p[i]) + "\n" for p in pairs), encoding="utf-8")
    counts = Counter(piece for pair in pairs for side in pair for piece in side)
    vocab = [sp.id_to_piece(i) for i in range(SPECIALS, sp.get_piece_size())]
    (out / "dict.txt").write_text("".join(f"{p} {counts[p]}\n" for p in vocab), encoding="utf-8")
    cmd = [str(fairseq / "bin" / "fairseq-preprocess"), "--trainpref", str(out / "train")]
    paths = ["--srcdict", str(out / "dict.txt"), "--destdir", str(out / "bin")]
    run_quietly(cmd + paths + "--source-lang src --target-lang tgt --joined-dictionary --workers 2".split())
    print(f"# fairseq data: {len(pairs):,} pairs, {len(vocab) + SPECIALS:,} tokens, in {out}")
    (out / "done").touch()
    return out


def fairseq_cmd(fairseq: Path, data: Path, run: Path, steps: int, extra: list[str]) -> list[str]:
    cmd = [str(fairseq / "bin" / "fairseq-train"), str(data / "bin"), *FAIRSEQ_FLAGS.split()]
    return cmd + ["--max-update", str(steps), "--save-dir", str(run), *extra]


def seq2seq_cmd(run: Path, steps: int, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "seq2seq.train", *SEQ2SEQ_ARGS.split(), f"trainer.max_steps={steps}"]
    return cmd + [f"hydra.run.dir={run}", *extra]


def parse(name: str, line: str) -> tuple[int, float, float | None] | None:
    """(step, target tokens/s, target tokens/update or None) of a log window's line."""
    if name == "fairseq":
        f = dict(re.findall(r"(\w+)=([^,\s]+)", line)) if "| train_inner |" in line else None
        return f and (int(f["num_updates"]), float(f["wps"]), float(f["wpb"]))
    m = re.search(r"step (\d+) epoch \d+ .* target tokens/s (\d+)", line)
    return (int(m.group(1)), float(m.group(2)), None) if m else None


def measure(name: str, cmd: list[str], run: Path, steps: int, tree: Path = ROOT) -> tuple[float, float]:
    """Run ``cmd``, reading its log as it comes: the median tokens/s of its windows but the
    first, and the mean target tokens per update. Ours gets SIGTERM after its last window:
    it would validate; the signal abandons that, and it saves and exits (143)."""
    run.mkdir(parents=True)
    proc = subprocess.Popen(
        cmd, cwd=run, env=env(tree), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    windows, tail = [], []
    for line in proc.stdout:
        tail = [*tail[-40:], line]
        if window := parse(name, line):
            windows.append(window)
            if name != "fairseq" and window[0] >= steps:
                proc.send_signal(signal.SIGTERM)
    if proc.wait() not in (0, 143) or len(windows) < 2:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{''.join(tail)}")
    if name == "fairseq":
        tokens = statistics.mean(w[2] for w in windows)
    else:
        tokens = statistics.mean(json.loads(row)["tokens"] for row in open(run / "metrics.jsonl"))
    shutil.rmtree(run, ignore_errors=True)
    return statistics.median(w[1] for w in windows[1:]), tokens


def version(python: Path | str, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return run_quietly([str(python), "-c", code]).strip()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fairseq", type=Path, required=True, help="the venv holding fairseq")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=80, help="updates per run (a log line every 10)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/seq2seq-bench-fairseq"))
    parser.add_argument(
        "--extra-seq2seq", default="", help="our trainer's overrides, 'k=v k=v' (data.*: both)"
    )
    parser.add_argument(
        "--extra-fairseq", default="", help="more fairseq-train flags, written --extra-fairseq='--bf16'"
    )
    parser.add_argument(
        "--baseline-tree", type=Path, help="also our trainer from another checkout (e.g. before a change)"
    )
    args = parser.parse_args()
    if args.steps < 20:
        parser.error("--steps must be at least 20: two log windows")
    extra, work, peer = shlex.split(args.extra_seq2seq), args.workdir.resolve(), args.fairseq / "bin/python"
    work.mkdir(parents=True, exist_ok=True)
    print(f"# {cpu_name()}, {os.cpu_count()} cores, 2 torch threads")
    fairseq_version = version(peer, "fairseq")
    print(f"# seq2seq: torch {version(sys.executable, 'torch')}")
    print(f"# fairseq {fairseq_version}: torch {version(peer, 'torch')}")
    data = fairseq_data(prepared(extra), work, args.fairseq)

    fairseq_extra = shlex.split(args.extra_fairseq)
    trees = {"seq2seq": ROOT}
    if args.baseline_tree is not None:
        trees = {"seq2seq baseline": args.baseline_tree.resolve(), **trees}
    names = ["fairseq", *trees]
    results = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names:
            run = work / f"run-{name.replace(' ', '-')}-{time.time_ns()}"
            if name == "fairseq":
                cmd, tree = fairseq_cmd(args.fairseq, data, run, args.steps, fairseq_extra), ROOT
            else:
                cmd, tree = seq2seq_cmd(run, args.steps, extra), trees[name]
            results[name].append(measure(name, cmd, run, args.steps, tree))
            print(f"# round {r + 1} {name}: {results[name][-1][0]:,.0f} target tokens/s", flush=True)

    print(f"\n{args.steps} updates a run; median target tokens/s of its log windows but the first")
    print(f"fairseq {fairseq_version} {args.extra_fairseq}; seq2seq {args.extra_seq2seq}\n")
    print("| round | " + " | ".join(names) + " | " + " | ".join(f"{n} / fairseq" for n in names[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(names) - 1))
    rows = [(str(r + 1), *(results[n][r][0] for n in names)) for r in range(args.rounds)]
    medians = ("median", *(statistics.median(speed for speed, _ in results[n]) for n in names))
    for label, base, *ours in [*rows, medians]:
        ratios = " | ".join(f"{b / base:.2f}" for b in ours)
        print(f"| {label} | {base:,.0f} | " + " | ".join(f"{b:,.0f}" for b in ours) + f" | {ratios} |")
    per_update = [statistics.mean(tokens for _, tokens in results[n]) for n in names]
    print("| target tokens/update | " + " | ".join(f"{t:,.0f}" for t in per_update) + " |" * len(names))


if __name__ == "__main__":
    main()
