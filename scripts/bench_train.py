"""Training speed of the real training step on real batches, setting against setting.

Each setting is a set of ``python -m seq2seq.train`` overrides (after ``+model=``).
For each one the script builds the trainer exactly as training does (``Trainer.setup``:
the prepared Multi30k corpus, the model, the optimiser, the precision, the compiled
step), takes the first batches of the first epoch (the same for every setting with
the same ``trainer.max_tokens``; with ``data.tokenizer.sampling``, their segmentations
sampled for that epoch) and times ``train_step`` on them: forward, loss,
backward, clipping, optimiser. Settings run interleaved, ``--rounds`` times, so that
drift on a shared machine hits all of them alike; each round restarts from the same
weights. The first ``--warmup`` steps of a setting are timed apart (they hold the
compilation of ``trainer.compile=true``).

    python scripts/bench_train.py [--model transformer] [--steps 30] [--rounds 3]
        [--setting "trainer.precision=fp32 trainer.compile=false" --setting "" ...]
        [--profile] [--loader]

With no ``--setting``: the defaults against the eager fp32 step. ``--profile`` also
prints, per setting, the operators that took the most time over ``--steps`` steps
(torch.profiler, self CPU time, milliseconds per step). ``--bf16-weights`` adds a
prototype that the trainer does not offer (``BF16Weights``). Model TFLOP/s: the matrix
products of a step (forward and backward, ``FlopCounterMode``) per target token times
target tokens/s; ``--peak-tflops P`` adds model FLOPs utilisation, that over P. The last column, the mean
training loss over the steps of the last round, shows that the settings learn alike.

``--loader`` times the data path too: each round iterates the trainer's own
``epoch_batches()`` (its DataLoader and ``trainer.num_workers`` workers, which collate, and
with ``data.tokenizer.sampling`` encode, the batches while the step runs) from the first
batch of epoch 1, and moves each batch to the device, as training does; a second table
gives the sentence pairs per second (sampled segmentations are longer, so target tokens/s
alone flatters them).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from seq2seq.config import compose
from seq2seq.data.batching import token_batches
from seq2seq.data.preparation import corpus_key
from seq2seq.device import cpu_name
from seq2seq.special import PAD_ID
from seq2seq.training.loss import label_smoothed_cross_entropy
from seq2seq.training.schedule import Schedule
from seq2seq.training.step import train_step
from seq2seq.training.trainer import Trainer

EAGER_FP32 = "trainer.precision=fp32 optim.fused=false"


class Setting:
    """A trainer built from one set of overrides, and what it needs to restart a round."""

    def __init__(self, model: str, overrides: str, work: Path, batches: int):
        self.name = overrides or "(defaults)"
        cfg = compose("train", [f"+model={model}", "trainer.num_threads=2", *overrides.split()])
        self.trainer = t = Trainer(cfg, Path(tempfile.mkdtemp(dir=work)))
        if hasattr(t, "setup"):
            t.setup()
        else:  # an earlier tree on PYTHONPATH, before Trainer.setup (the same steps)
            t.data_key = corpus_key(cfg.data)
            t.run_dir.mkdir(parents=True, exist_ok=True)
            t.setup_device(), t.setup_data(), t.setup_model(), t.setup_optimizer()
        data = getattr(t, "data", t)  # the trainer's TrainingData; an earlier tree kept it on the trainer
        order = token_batches(*data.lengths, t.tcfg.max_tokens, cfg.seed, 0)[:batches]
        epoch = data.pairs.for_epoch(cfg.seed, 0) if hasattr(data.pairs, "for_epoch") else data.pairs
        self.batches = [epoch.__getitems__(rows).to(t.device) for rows in order]  # as epoch 1 trains on them
        opt = t.opt
        self.initial = copy.deepcopy(
            (t.model.state_dict(), opt.optimizer.state_dict(), opt.scheduler.state_dict())
        )
        self.warmup_s: list[float] = []
        self.losses: list[float] = []  # per target token, of every step run
        self.pairs_per_s: list[float] = []  # --loader: sentence pairs per second of each round

    def restart(self) -> None:
        """Back to the initial weights, optimiser state, learning rate and dropout masks."""
        t = self.trainer
        model, optimizer, scheduler = copy.deepcopy(self.initial)
        t.model.load_state_dict(model)
        t.opt.optimizer.load_state_dict(optimizer)
        t.opt.scheduler.load_state_dict(scheduler)
        torch.manual_seed(t.cfg.seed)
        t.model.train()

    def steps(self, batches) -> int:
        """Run ``train_step`` on each batch; returns the target tokens seen."""
        t = self.trainer
        tokens = 0
        for batch in batches:
            result = train_step(t.objective, batch, t.opt, t.device, t.precision)
            self.losses.append(result.loss)
            tokens += result.tokens
        return tokens


class BF16Weights(Setting):
    """A prototype, measured against autocast: the model's weights in bf16 and no autocast,
    fp32 master copies of them in a fused Adam (the gradients cast up, the weights cast down
    after each update), the defaults' loss, clipping and learning-rate schedule (a linear
    decay stays at its peak here: no budget is counted while measuring)."""

    def __init__(self, model: str, overrides: str, work: Path, batches: int):
        super().__init__(model, f"{overrides} trainer.precision=fp32".strip(), work, batches)
        self.name = "bf16 weights, fp32 master copies (prototype, --bf16-weights)"
        t, o = self.trainer, self.trainer.cfg.optim
        self.params = list(t.model.parameters())
        self.start = [p.detach().clone() for p in self.params]
        self.masters = [p.detach().clone() for p in self.params]
        t.model.to(torch.bfloat16)
        t.precision = "bf16 weights"
        self.adam = torch.optim.Adam(self.masters, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=True)
        self.schedule = Schedule(o.warmup_steps, o.decay)

    def restart(self) -> None:
        with torch.no_grad():
            for start, master, param in zip(self.start, self.masters, self.params, strict=True):
                master.copy_(start)
                param.copy_(start)
        self.adam.state.clear()
        self.updates = 0
        torch.manual_seed(self.trainer.cfg.seed)
        self.trainer.model.train()

    def steps(self, batches) -> int:
        t, o = self.trainer, self.trainer.cfg.optim
        tokens = 0
        for batch in batches:
            keep = batch.tgt_out != PAD_ID  # (B, T)
            logits = t.objective(batch.src, batch.src_lengths, batch.tgt_in, keep)  # (N, V) bf16
            loss, _ = label_smoothed_cross_entropy(
                logits, batch.tgt_out[keep], o.label_smoothing, overwrite_logits=True
            )
            n = int(keep.sum())
            (loss / n).backward()
            for master, param in zip(self.masters, self.params, strict=True):
                master.grad, param.grad = param.grad.float(), None
            torch.nn.utils.clip_grad_norm_(self.masters, o.clip_norm)
            for group in self.adam.param_groups:
                group["lr"] = o.lr * self.schedule(self.updates)  # as LambdaLR: factor(0) first
            self.updates += 1
            self.adam.step()
            self.adam.zero_grad(set_to_none=True)
            with torch.no_grad():
                for master, param in zip(self.masters, self.params, strict=True):
                    param.copy_(master)
            self.losses.append(loss.item() / n)
            tokens += n
        return tokens


def timed(setting: Setting, warmup: int) -> float:
    """Target tokens per second of one round (its first ``warmup`` steps timed apart)."""
    setting.restart()
    start = time.perf_counter()
    setting.steps(setting.batches[:warmup])
    setting.warmup_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    tokens = setting.steps(setting.batches[warmup:])
    return tokens / (time.perf_counter() - start)


def timed_loader(setting: Setting, warmup: int, steps: int) -> float:
    """``timed`` with the batches of the trainer's DataLoader (``epoch_batches``), loaded and
    moved to the device while the steps run; also notes the round's sentence pairs per second."""
    setting.restart()
    t = setting.trainer
    loaded = (batch.to(t.device) for batch in t.epoch_batches())  # a new loader and workers each round
    start = time.perf_counter()
    setting.steps(islice(loaded, warmup))
    setting.warmup_s.append(time.perf_counter() - start)
    pairs = 0

    def counted(batches):
        nonlocal pairs
        for batch in batches:
            pairs += len(batch.src)
            yield batch

    start = time.perf_counter()
    tokens = setting.steps(counted(islice(loaded, steps)))
    seconds = time.perf_counter() - start
    loaded.close()  # ends the loader's workers
    setting.pairs_per_s.append(pairs / seconds)
    return tokens / seconds


def flops_per_token(setting: Setting) -> float | None:
    """Floating-point operations of one training step per target token: the matrix
    products of the forward and backward passes as torch's FlopCounterMode counts
    them, on the first batch (None where the setting cannot be counted, e.g. compiled)."""
    from torch.utils.flop_counter import FlopCounterMode

    setting.restart()
    try:
        with FlopCounterMode(display=False) as counter:
            tokens = setting.steps(setting.batches[:1])
    except Exception:  # noqa: BLE001 - a figure left out, not a failed benchmark
        return None
    return counter.get_total_flops() / tokens


def profile(setting: Setting, warmup: int, rows: int) -> None:
    """Print the operators with the most self CPU time per step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    setting.restart()
    setting.steps(setting.batches[:warmup])
    measured = setting.batches[warmup:]
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        setting.steps(measured)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\n### {setting.name}: self CPU time per step, {len(measured)} steps\n")
    print("| operator | ms per step | share | calls per step |")
    print("|---|---:|---:|---:|")
    for e in events[:rows]:
        ms = e.self_cpu_time_total / 1000 / len(measured)
        share = e.self_cpu_time_total / total
        print(f"| {e.key} | {ms:.1f} | {share:.1%} | {e.count / len(measured):.0f} |")
    print(f"| all operators | {total / 1000 / len(measured):.1f} | 100% | |")


def utilisation(setting: Setting, tokens_per_s: float, peak_tflops: float | None) -> str:
    """Two table cells: model TFLOP/s and, given the peak, its share of the peak."""
    flops = flops_per_token(setting)
    if flops is None:
        return "n/a | n/a"
    tflops = flops * tokens_per_s / 1e12
    return f"{tflops:.3f} | " + (f"{tflops / peak_tflops:.1%}" if peak_tflops else "n/a")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="transformer", help="a file in configs/model/")
    parser.add_argument("--setting", action="append", help="overrides, space-separated ('': defaults)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="steps before the timed ones, each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print each setting's top operators")
    parser.add_argument("--rows", type=int, default=20, help="operators in each profile")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="the hardware's peak for the precision measured, for model FLOPs utilisation",
    )
    parser.add_argument(
        "--bf16-weights", action="store_true", help="also a prototype: bf16 weights, fp32 masters"
    )
    parser.add_argument(
        "--loader", action="store_true", help="time the trainer's DataLoader (epoch_batches) with the step"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seq2seq-bench-train-"))
    names = args.setting if args.setting is not None else ["", EAGER_FP32]
    settings = [Setting(args.model, s, work, args.warmup + args.steps) for s in names]
    if args.bf16_weights:
        settings.insert(0, BF16Weights(args.model, "", work, args.warmup + args.steps))
    tokens = statistics.mean(b.num_tgt_tokens for b in settings[0].batches)
    print(
        f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"+model={args.model}, Multi30k batches of about {tokens:.0f} target tokens; "
        f"{args.steps} timed steps after {args.warmup}, {args.rounds} rounds"
        + (", batches from the trainer's DataLoader" if args.loader else "")
    )
    rates: dict[str, list[float]] = {s.name: [] for s in settings}
    for _ in range(args.rounds):
        for s in settings:
            rate = timed_loader(s, args.warmup, args.steps) if args.loader else timed(s, args.warmup)
            rates[s.name].append(rate)
    base = statistics.median(rates[settings[-1].name])
    per_round = args.warmup + args.steps  # every round runs the same batches from the same weights
    print(
        "| setting | precision | target tokens/s (median) | per round | vs last row | warm-up s "
        "| mean loss of a round | model TFLOP/s | MFU |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for s in settings:
        median = statistics.median(rates[s.name])
        rounds = " / ".join(f"{r:,.0f}" for r in rates[s.name])
        print(
            f"| `{s.name}` | {s.trainer.precision} | {median:,.0f} | {rounds} | {median / base:.2f}× "
            f"| {max(s.warmup_s):.1f} | {statistics.mean(s.losses[-per_round:]):.4f} "
            f"| {utilisation(s, median, args.peak_tflops)} |"
        )
    if args.loader:
        base = statistics.median(settings[-1].pairs_per_s)
        print("\n| setting | sentence pairs/s (median) | per round | vs last row |\n|---|---:|---|---:|")
        for s in settings:
            median = statistics.median(s.pairs_per_s)
            rounds = " / ".join(f"{r:,.0f}" for r in s.pairs_per_s)
            print(f"| `{s.name}` | {median:,.0f} | {rounds} | {median / base:.2f}× |")
    if args.profile:
        for s in settings:
            profile(s, args.warmup, args.rows)


if __name__ == "__main__":
    main()
