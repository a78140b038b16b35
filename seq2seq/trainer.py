"""The training loop: data, model, optimiser, then steps until a budget runs out.

Read ``train`` from top to bottom: it prepares everything, resumes from
``checkpoints/last.pt`` when the run directory has one, then loops over
epochs of token batches, validating every ``trainer.eval_every`` steps and
saving every ``trainer.save_every`` steps.

Resuming is exact: a checkpoint holds the model, optimiser, schedule, gradient
scaler, random state and the position in the epoch's batch order (which is a
function of the seed and the epoch), so the steps after a resume are the steps
an uninterrupted run would have taken.

Under torchrun every process runs this loop on its share of the batches
(``seq2seq/distributed.py``); only the main process validates, logs and saves.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import sacrebleu
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from seq2seq import __version__, distributed
from seq2seq.checkpoint import (
    FORMAT,
    build_model,
    load_checkpoint,
    save_training_checkpoint,
    tokenizer_reference,
)
from seq2seq.data.batching import collate, token_batches
from seq2seq.data.corpus import read_parallel
from seq2seq.data.tokenizer import build_tokenizer, open_tokenizer
from seq2seq.errors import UserError
from seq2seq.loss import label_smoothed_cross_entropy
from seq2seq.plots import attention_figures
from seq2seq.special import PAD_ID
from seq2seq.translator import Translator, autocast

log = logging.getLogger("seq2seq.train")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch's order already done (by all processes)
    best_bleu: float = -1.0
    bad_evals: int = 0  # validations in a row without a better BLEU
    elapsed: float = 0.0  # seconds of training so far, across resumes


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name}: no CUDA device is available; use trainer.device=cpu")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CUDA (fp16 where bf16 is missing), fp32 on CPU,
    where bf16 autocast measured slower than fp32 (``scripts/bench_train.py``)."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if name not in ("fp32", "bf16", "fp16"):
        raise UserError(f"trainer.precision={name}: choose fp32, bf16, fp16 or auto")
    if name == "fp16" and device.type != "cuda":
        raise UserError("trainer.precision=fp16 needs CUDA; on CPU use bf16 or fp32")
    return name


def inverse_sqrt(warmup: int):
    """Learning-rate factor: linear warmup to 1, then decay with 1/sqrt(step)."""
    warmup = max(1, warmup)
    return lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


def encode_pairs(tokenizer, src_lines, tgt_lines, max_len: int):
    """Ids of every pair that fits ``max_len`` on both sides, and how many were left out."""
    src, tgt = tokenizer.encode_src(src_lines), tokenizer.encode_tgt(tgt_lines)
    keep = [i for i in range(len(src)) if len(src[i]) <= max_len and len(tgt[i]) + 1 <= max_len]
    return [src[i] for i in keep], [tgt[i] for i in keep], len(src) - len(keep)


def previous_run(ckpt_dir: Path, config: dict) -> dict | None:
    """The run directory's ``last.pt``, checked to belong to the same model and data
    (other optimiser settings are allowed and logged)."""
    path = ckpt_dir / "last.pt"
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    for group in ("model", "data"):
        if ckpt["config"][group] != config[group]:
            raise UserError(
                f"{path} was trained with other {group}.* settings; train into a new hydra.run.dir "
                f"or use the same settings to resume"
            )
    changed = sorted(k for k in config["optim"] if ckpt["config"]["optim"].get(k) != config["optim"][k])
    if changed:  # allowed, but said: the schedule continues from the saved state
        keys = ", ".join(changed)
        log.warning("resuming with other optim settings than %s was trained with: %s", path, keys)
    return ckpt


class Objective(nn.Module):
    """The training forward pass: logits of the target positions that are not padding.

    DistributedDataParallel synchronises the gradients of what its wrapped module's
    ``forward`` computes, so training calls this module, not the model's methods.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, src, src_lengths, tgt_in, keep):
        """src (B, S), src_lengths (B,), tgt_in (B, T), keep (B, T) -> logits (N, V), N = keep.sum()."""
        features = self.model.features(src, src_lengths, tgt_in)  # (B, T, D)
        return self.model.project(features[keep])  # (N, V): padding skips the output layer


def train_step(objective, batch, optimizer, scheduler, scaler, cfg, device, precision):
    """One optimiser step. Returns (loss per target token, gradient norm, target tokens),
    loss and tokens taken over every process's batch. The update is skipped, and the
    loss returned as NaN, when the loss or the gradients are not finite."""
    keep = batch.tgt_out != PAD_ID  # (B, T)
    with autocast(device, precision):
        logits = objective(batch.src, batch.src_lengths, batch.tgt_in, keep)
    loss_sum, _ = label_smoothed_cross_entropy(logits, batch.tgt_out[keep], cfg.optim.label_smoothing)
    total, tokens = distributed.all_sum([loss_sum.item(), float(keep.sum())], device)  # all processes
    loss = total / tokens
    optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(loss):  # the same on every process, so all of them skip
        return loss, float("nan"), int(tokens)
    # Gradient of the mean over all processes' tokens; DistributedDataParallel then
    # averages the processes' gradients, hence the world size in the divisor.
    scaler.scale(loss_sum / (tokens / distributed.world_size())).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.optim.clip_norm)
    if not scaler.is_enabled() and not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)  # fp16's scaler skips such steps itself
        return float("nan"), float(grad_norm), int(tokens)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss, float(grad_norm), int(tokens)


@torch.no_grad()
def validate(model, translator, valid, cfg, device, precision):
    """Validation loss, perplexity and greedy BLEU. Returns (loss, ppl, bleu, hypotheses)."""
    model.eval()
    src_ids, tgt_ids, src_lines, tgt_lines = valid
    nll_sum, tokens = 0.0, 0
    lengths = [len(s) for s in src_ids]
    for rows in token_batches(lengths, [len(t) for t in tgt_ids], cfg.trainer.valid_max_tokens):
        batch = collate([src_ids[i] for i in rows], [tgt_ids[i] for i in rows], rows).to(device)
        with autocast(device, precision):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        _, nll = label_smoothed_cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), 0.0)
        nll_sum, tokens = nll_sum + float(nll), tokens + batch.num_tgt_tokens
    hyps = translator.hypotheses(src_lines)
    texts = [translator.tokenizer.decode_tgt(h[0].tokens) for h in hyps]
    bleu = sacrebleu.corpus_bleu(texts, [tgt_lines]).score
    model.train()
    loss = nll_sum / max(tokens, 1)
    return loss, math.exp(min(loss, 50)), bleu, hyps


def train(cfg: DictConfig, run_dir: Path) -> Progress:
    """Train the model of ``cfg`` in ``run_dir``; returns the final progress."""
    tcfg, ocfg = cfg.trainer, cfg.optim
    if tcfg.num_threads > 0:
        torch.set_num_threads(tcfg.num_threads)
    device = distributed.local_device(pick_device(tcfg.device))
    precision = pick_precision(tcfg.precision, device)
    torch.manual_seed(cfg.seed)  # the same initial weights on every process
    main, world, rank = distributed.is_main(), distributed.world_size(), distributed.rank()
    config = OmegaConf.to_container(cfg, resolve=True)
    ckpt_dir = run_dir / "checkpoints"
    resume = previous_run(ckpt_dir, config)  # before anything in run_dir is overwritten
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    # Data and tokenizer.
    src_lines, tgt_lines = read_parallel(cfg.data.train.src, cfg.data.train.tgt)
    if cfg.data.train_lines > 0:
        src_lines, tgt_lines = src_lines[: cfg.data.train_lines], tgt_lines[: cfg.data.train_lines]
    valid_src, valid_tgt = read_parallel(cfg.data.valid.src, cfg.data.valid.tgt)
    tok = cfg.data.tokenizer
    settings = (tok.vocab_size, tok.joint, tok.model_type, tok.character_coverage, tok.cache_dir)
    if main:
        tokenizer = build_tokenizer(src_lines, tgt_lines, *settings, run_dir / "tokenizer")
    distributed.barrier()  # the others read the main process's tokenizer from the run directory
    if not main:
        tokenizer = open_tokenizer(run_dir / "tokenizer", tok.joint)
    train_src, train_tgt, dropped = encode_pairs(tokenizer, src_lines, tgt_lines, cfg.data.max_len)
    log.info(
        "train: %d pairs kept, %d longer than data.max_len=%d left out",
        len(train_src),
        dropped,
        cfg.data.max_len,
    )
    valid = (tokenizer.encode_src(valid_src), tokenizer.encode_tgt(valid_tgt), valid_src, valid_tgt)

    # Model, optimiser, schedule.
    model = build_model(cfg.model, tokenizer).to(device)
    log.info(
        "model: %s, %.2fM parameters, device %s, precision %s",
        type(model).__name__,
        sum(p.numel() for p in model.parameters()) / 1e6,
        device,
        precision,
    )
    objective = Objective(model)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        objective = DistributedDataParallel(objective, device_ids=ids)
        torch.manual_seed(cfg.seed + rank)  # the same weights, but each process its own dropout
    optimizer = torch.optim.Adam(
        model.parameters(), lr=ocfg.lr, betas=tuple(ocfg.betas), eps=ocfg.eps, weight_decay=ocfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt(ocfg.warmup_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    translator = Translator(
        model,
        tokenizer,
        OmegaConf.merge(cfg.decoding, {"max_tokens": tcfg.valid_max_tokens}),
        device,
        precision,
    )
    progress = Progress()
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        progress = Progress(**resume["progress"])
        states = resume["rng"].get("processes", [resume["rng"]])  # one per process of the saved run
        if len(states) == world:
            torch.set_rng_state(states[rank]["torch"])
            if device.type == "cuda" and states[rank].get("cuda") is not None:
                torch.cuda.set_rng_state(states[rank]["cuda"], device)
        else:
            path = ckpt_dir / "last.pt"
            log.warning(
                "%s was saved by %d processes, not %d: random state reseeded", path, len(states), world
            )
            torch.manual_seed(cfg.seed + rank + progress.step)
        log.info(
            "resuming from %s at step %d (epoch %d)", ckpt_dir / "last.pt", progress.step, progress.epoch + 1
        )

    def save(best: bool) -> None:
        """Write a checkpoint (main process); every process hands over its random state."""
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        states = distributed.gather(rng)
        if not main:  # (its progress.best_bleu and bad_evals are stale: only the main process's count)
            return
        payload = {
            "format": FORMAT,
            "version": __version__,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "progress": asdict(progress),
            # The top-level keys are process 0's, as a single process saves them.
            "rng": {**rng, "processes": states} if world > 1 else rng,
            "config": config,
            "tokenizer": tokenizer_reference(tokenizer, run_dir),
        }
        save_training_checkpoint(payload, ckpt_dir, best, tcfg.keep_last)

    src_lens, tgt_lens = [len(s) for s in train_src], [len(t) for t in train_tgt]

    def batches_of(epoch: int) -> list[list[int]]:
        """This process's share of the epoch's batches not done yet: every world-th one from
        ``progress.batch_in_epoch``, as many on each process."""
        batches = token_batches(src_lens, tgt_lens, tcfg.max_tokens, cfg.seed, epoch)
        start = progress.batch_in_epoch
        end = start + (len(batches) - start) // world * world
        return batches[start + rank : end : world]

    in_epoch = len(token_batches(src_lens, tgt_lens, tcfg.max_tokens, cfg.seed))  # the same every epoch
    if in_epoch < world:
        raise UserError(
            f"the training data makes {in_epoch} batches, fewer than the {world} processes; "
            f"lower trainer.max_tokens or start fewer processes"
        )
    if world > 1:
        log.info("%d processes, %d steps per epoch", world, in_epoch // world)
    total = tcfg.max_steps or tcfg.max_epochs * (in_epoch // world)
    writer = SummaryWriter(str(run_dir / "tensorboard")) if main else None
    metrics = open(run_dir / "metrics.jsonl", "a") if main else None
    bar = tqdm(
        total=total,
        initial=progress.step,
        file=sys.stderr,
        unit="step",
        dynamic_ncols=True,
        disable=not (main and tcfg.progress and sys.stderr.isatty()),
    )
    start, window_tokens, window_start = time.time() - progress.elapsed, 0, time.time()
    bad_steps, stop_reason = 0, None
    model.train()

    while stop_reason is None and progress.epoch < tcfg.max_epochs:
        mine = batches_of(progress.epoch)
        if not mine:  # resumed past the epoch's last round of batches (fewer processes before)
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
            continue
        for rows in mine:
            batch = collate([train_src[i] for i in rows], [train_tgt[i] for i in rows], rows).to(device)
            loss, grad_norm, tokens = train_step(
                objective, batch, optimizer, scheduler, scaler, cfg, device, precision
            )
            progress.step += 1
            progress.batch_in_epoch += world
            progress.elapsed = time.time() - start
            window_tokens += tokens
            bar.update(1)
            if math.isfinite(loss):
                bad_steps = 0
            else:
                bad_steps += 1
                log.warning(
                    "step %d: loss is %s, update skipped (%d in a row)", progress.step, loss, bad_steps
                )
                if bad_steps >= tcfg.max_bad_steps:
                    raise UserError(
                        f"training diverged: {bad_steps} non-finite losses in a row at step {progress.step}; "
                        f"lower optim.lr or use trainer.precision=fp32 (the last good checkpoint is kept in "
                        f"{ckpt_dir})"
                    )
            if main:
                finite = loss if math.isfinite(loss) else None
                metrics.write(json.dumps({"step": progress.step, "loss": finite, "tokens": tokens}) + "\n")

            if main and progress.step % tcfg.log_every == 0:
                speed = window_tokens / (time.time() - window_start)
                lr = scheduler.get_last_lr()[0]
                for name, value in (
                    ("loss", loss),
                    ("lr", lr),
                    ("tokens_per_s", speed),
                    ("grad_norm", grad_norm),
                ):
                    writer.add_scalar(f"train/{name}", value, progress.step)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:.0f}", epoch=progress.epoch + 1)
                log.info(
                    "step %d epoch %d loss %.4f lr %.2e grad_norm %.2f target tokens/s %.0f",
                    progress.step,
                    progress.epoch + 1,
                    loss,
                    lr,
                    grad_norm,
                    speed,
                )
                window_tokens, window_start = 0, time.time()

            if tcfg.max_steps and progress.step >= tcfg.max_steps:
                stop_reason = f"trainer.max_steps={tcfg.max_steps}"
            elif tcfg.max_time and distributed.from_main(progress.elapsed) >= tcfg.max_time:  # one clock
                stop_reason = f"trainer.max_time={tcfg.max_time:g}s"
            if progress.batch_in_epoch + world > in_epoch:  # fewer batches left than processes
                progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
                if progress.epoch >= tcfg.max_epochs:
                    stop_reason = stop_reason or f"trainer.max_epochs={tcfg.max_epochs}"
            if progress.step % tcfg.eval_every == 0 or stop_reason:
                improved, stop_early = False, False
                if main:
                    metrics.flush()
                    improved, stop_early = evaluate(
                        model, translator, valid, cfg, device, precision, progress, writer
                    )
                improved, stop_early = distributed.from_main((improved, stop_early))
                save(best=improved)
                if stop_early:
                    stop_reason = stop_reason or f"no better validation BLEU in {tcfg.patience} validations"
                window_start = time.time()
            elif tcfg.save_every and progress.step % tcfg.save_every == 0:
                if main:
                    metrics.flush()
                save(best=False)
            if stop_reason:
                break
    stop_reason = stop_reason or f"trainer.max_epochs={tcfg.max_epochs}"
    bar.close()
    if main:
        writer.close()
        metrics.close()
    log.info(
        "stopped: %s; step %d, %.0f s; best validation BLEU %.2f; checkpoints in %s",
        stop_reason,
        progress.step,
        progress.elapsed,
        progress.best_bleu,
        ckpt_dir,
    )
    return progress


def evaluate(model, translator, valid, cfg, device, precision, progress, writer) -> tuple[bool, bool]:
    """Validate and log. Returns (a new best BLEU, time to stop early)."""
    loss, ppl, bleu, hyps = validate(model, translator, valid, cfg, device, precision)
    step = progress.step
    writer.add_scalar("valid/loss", loss, step)
    writer.add_scalar("valid/ppl", ppl, step)
    writer.add_scalar("valid/bleu", bleu, step)
    shown = list(range(min(cfg.trainer.samples, len(hyps))))
    if shown:
        for i in shown:
            text = translator.tokenizer.decode_tgt(hyps[i][0].tokens)
            writer.add_text(f"samples/{i}", f"src: {valid[2][i]}  \nref: {valid[3][i]}  \nhyp: {text}", step)
        model.eval()
        figures = attention_figures(
            model,
            translator.tokenizer,
            [valid[0][i] for i in shown],
            [hyps[i][0].tokens for i in shown],
            device,
        )
        model.train()
        for i, fig in zip(shown, figures, strict=True):
            writer.add_figure(f"attention/{i}", fig, step)
            plt.close(fig)
    improved = bleu > progress.best_bleu
    if improved:
        progress.best_bleu, progress.bad_evals = bleu, 0
    else:
        progress.bad_evals += 1
    log.info(
        "validation at step %d: loss %.4f ppl %.2f BLEU %.2f%s",
        step,
        loss,
        ppl,
        bleu,
        " (best)" if improved else f" (best {progress.best_bleu:.2f})",
    )
    return improved, cfg.trainer.patience > 0 and progress.bad_evals >= cfg.trainer.patience
