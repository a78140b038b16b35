"""The training loop: data, model, optimiser, then steps until a budget runs out.

Read ``train`` from top to bottom: it prepares everything, resumes from
``checkpoints/last.pt`` when the run directory has one, then loops over
epochs of token batches, validating and saving every ``trainer.eval_every``
steps.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import sacrebleu
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from seq2seq import __version__
from seq2seq.checkpoint import FORMAT, build_model, load_checkpoint, save_checkpoint, tokenizer_reference
from seq2seq.data.batching import collate, token_batches
from seq2seq.data.corpus import read_parallel
from seq2seq.data.tokenizer import build_tokenizer
from seq2seq.errors import UserError
from seq2seq.loss import label_smoothed_cross_entropy
from seq2seq.special import PAD_ID
from seq2seq.translator import Translator, autocast

log = logging.getLogger("seq2seq.train")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already done
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
    hyps = translator(src_lines)
    bleu = sacrebleu.corpus_bleu(hyps, [tgt_lines]).score
    model.train()
    loss = nll_sum / max(tokens, 1)
    return loss, math.exp(min(loss, 50)), bleu, hyps


def train(cfg: DictConfig, run_dir: Path) -> Progress:
    """Train the model of ``cfg`` in ``run_dir``; returns the final progress."""
    tcfg, ocfg = cfg.trainer, cfg.optim
    if tcfg.num_threads > 0:
        torch.set_num_threads(tcfg.num_threads)
    device = pick_device(tcfg.device)
    precision = pick_precision(tcfg.precision, device)
    torch.manual_seed(cfg.seed)

    # Data and tokenizer.
    src_lines, tgt_lines = read_parallel(cfg.data.train.src, cfg.data.train.tgt)
    if cfg.data.train_lines > 0:
        src_lines, tgt_lines = src_lines[: cfg.data.train_lines], tgt_lines[: cfg.data.train_lines]
    valid_src, valid_tgt = read_parallel(cfg.data.valid.src, cfg.data.valid.tgt)
    tok_cfg = cfg.data.tokenizer
    tokenizer = build_tokenizer(
        cfg.data.train.src,
        cfg.data.train.tgt,
        src_lines,
        tgt_lines,
        tok_cfg.vocab_size,
        tok_cfg.joint,
        tok_cfg.model_type,
        tok_cfg.character_coverage,
        tok_cfg.cache_dir,
        run_dir / "tokenizer",
    )
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
    optimizer = torch.optim.Adam(
        model.parameters(), lr=ocfg.lr, betas=tuple(ocfg.betas), eps=ocfg.eps, weight_decay=ocfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt(ocfg.warmup_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    translator = Translator(model, tokenizer, cfg.decoding, device, precision)
    translator.cfg = OmegaConf.merge(cfg.decoding, {"max_tokens": tcfg.valid_max_tokens})
    progress = Progress()
    config = OmegaConf.to_container(cfg, resolve=True)

    ckpt_dir = run_dir / "checkpoints"
    if (ckpt_dir / "last.pt").exists():
        ckpt = load_checkpoint(ckpt_dir / "last.pt")
        if ckpt["config"]["model"] != config["model"]:
            raise UserError(
                f"{ckpt_dir / 'last.pt'} holds another model config; train into a new hydra.run.dir"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        progress = Progress(**ckpt["progress"])
        log.info(
            "resuming from %s at step %d (epoch %d)", ckpt_dir / "last.pt", progress.step, progress.epoch + 1
        )

    def save(name: str) -> None:
        payload = {
            "format": FORMAT,
            "version": __version__,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "progress": asdict(progress),
            "rng": {"torch": torch.get_rng_state()},
            "config": config,
            "tokenizer": tokenizer_reference(tokenizer, run_dir),
        }
        save_checkpoint(payload, ckpt_dir / name)

    writer = SummaryWriter(str(run_dir / "tensorboard"))
    batches_per_epoch = len(
        token_batches([len(s) for s in train_src], [len(t) for t in train_tgt], tcfg.max_tokens, cfg.seed, 0)
    )
    total = tcfg.max_steps or tcfg.max_epochs * batches_per_epoch
    bar = tqdm(
        total=total,
        initial=progress.step,
        file=sys.stderr,
        disable=not (tcfg.progress and sys.stderr.isatty()),
        dynamic_ncols=True,
        unit="step",
    )
    start, window_tokens, window_start = time.time() - progress.elapsed, 0, time.time()
    stop_reason = None
    model.train()

    while stop_reason is None:
        if progress.epoch >= tcfg.max_epochs:
            stop_reason = f"trainer.max_epochs={tcfg.max_epochs}"
            break
        src_lens, tgt_lens = [len(s) for s in train_src], [len(t) for t in train_tgt]
        epoch_batches = token_batches(src_lens, tgt_lens, tcfg.max_tokens, cfg.seed, progress.epoch)
        for rows in epoch_batches[progress.batch_in_epoch :]:
            batch = collate([train_src[i] for i in rows], [train_tgt[i] for i in rows], rows).to(device)
            keep = batch.tgt_out != PAD_ID  # (B, T)
            with autocast(device, precision):
                features = model.features(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, D)
                logits = model.project(features[keep])  # (N, V): padding skips the output layer
            loss_sum, _ = label_smoothed_cross_entropy(logits, batch.tgt_out[keep], ocfg.label_smoothing)
            tokens = int(keep.sum())
            loss = loss_sum / tokens
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), ocfg.clip_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            progress.step += 1
            progress.batch_in_epoch += 1
            progress.elapsed = time.time() - start
            window_tokens += tokens
            bar.update(1)

            if progress.step % tcfg.log_every == 0:
                speed = window_tokens / (time.time() - window_start)
                lr = scheduler.get_last_lr()[0]
                writer.add_scalar("train/loss", loss.item(), progress.step)
                writer.add_scalar("train/lr", lr, progress.step)
                writer.add_scalar("train/tokens_per_s", speed, progress.step)
                writer.add_scalar("train/grad_norm", float(grad_norm), progress.step)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{speed:.0f}", epoch=progress.epoch + 1)
                log.info(
                    "step %d epoch %d loss %.4f lr %.2e grad_norm %.2f target tokens/s %.0f",
                    progress.step,
                    progress.epoch + 1,
                    loss.item(),
                    lr,
                    float(grad_norm),
                    speed,
                )
                window_tokens, window_start = 0, time.time()

            if tcfg.max_steps and progress.step >= tcfg.max_steps:
                stop_reason = f"trainer.max_steps={tcfg.max_steps}"
            elif tcfg.max_time and progress.elapsed >= tcfg.max_time:
                stop_reason = f"trainer.max_time={tcfg.max_time:g}s"
            if progress.step % tcfg.eval_every == 0 or stop_reason:
                if evaluate_and_save(
                    model, translator, valid, cfg, device, precision, progress, writer, save
                ):
                    stop_reason = stop_reason or f"no better validation BLEU in {tcfg.patience} validations"
                window_start = time.time()
            if stop_reason:
                break
        else:
            progress.epoch += 1
            progress.batch_in_epoch = 0
    if progress.step % tcfg.eval_every != 0 and not (ckpt_dir / "last.pt").exists():
        evaluate_and_save(model, translator, valid, cfg, device, precision, progress, writer, save)
    bar.close()
    writer.close()
    log.info(
        "stopped: %s; step %d, %.0f s; best validation BLEU %.2f; checkpoints in %s",
        stop_reason,
        progress.step,
        progress.elapsed,
        progress.best_bleu,
        ckpt_dir,
    )
    return progress


def evaluate_and_save(model, translator, valid, cfg, device, precision, progress, writer, save) -> bool:
    """Validate, log, save last.pt (and best.pt on a new best BLEU). Returns True to stop early."""
    loss, ppl, bleu, hyps = validate(model, translator, valid, cfg, device, precision)
    step = progress.step
    writer.add_scalar("valid/loss", loss, step)
    writer.add_scalar("valid/ppl", ppl, step)
    writer.add_scalar("valid/bleu", bleu, step)
    for i in range(min(cfg.trainer.samples, len(hyps))):
        writer.add_text(f"samples/{i}", f"src: {valid[2][i]}  \nref: {valid[3][i]}  \nhyp: {hyps[i]}", step)
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
    save("last.pt")
    if improved:
        save("best.pt")
    return cfg.trainer.patience > 0 and progress.bad_evals >= cfg.trainer.patience
