"""One optimiser update: the training objective, what an update needs, and the step itself.

``train_step`` is the whole of an update on one batch, on one process or on many
(``seq2seq/training/distributed.py``): forward, loss, backward, clipping, the optimiser
and schedule steps, with non-finite losses and gradients skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.device import autocast
from seq2seq.special import PAD_ID
from seq2seq.training import distributed
from seq2seq.training.loss import label_smoothed_cross_entropy


class Objective(nn.Module):
    """The training forward pass: logits of the target positions that are not padding.

    DistributedDataParallel synchronises the gradients of what its wrapped module's
    ``forward`` computes, so training calls this module, not the model's methods.
    """

    def __init__(self, model, rows_multiple: int = 1):
        super().__init__()
        self.model = model
        self.rows_multiple = rows_multiple  # see seq2seq.device.output_rows_multiple

    def forward(self, src, src_lengths, tgt_in, keep):
        """src (B, S), src_lengths (B,), tgt_in (B, T), keep (B, T) -> logits (N, V), N = keep.sum()."""
        features = self.model.features(src, src_lengths, tgt_in)  # (B, T, D)
        kept = features[keep]  # (N, D): padding positions skip the output layer
        n = kept.size(0)
        if self.rows_multiple > 1:  # (N', D), N' the next multiple: few shapes for the output layer
            kept = F.pad(kept, (0, 0, 0, -n % self.rows_multiple))
        return self.model.project(kept)[:n]  # (N, V)


@dataclass
class Optimization:
    """Everything one update needs besides the model and the batch."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    label_smoothing: float
    clip_norm: float  # 0: no clipping


@dataclass
class StepResult:
    loss: float  # per target token over every process's batch; NaN when the update was skipped
    grad_norm: float
    tokens: int  # target tokens of every process's batch
    stop: bool  # some process was asked to stop (SIGINT/SIGTERM)


def train_step(objective, batch, opt: Optimization, device, precision: str, stop: bool = False) -> StepResult:
    """One optimiser step. The loss, the token count and the stop requests of every
    process are summed in one all-reduce. The update is skipped when the loss or the
    gradients are not finite."""
    keep = batch.tgt_out != PAD_ID  # (B, T)
    with autocast(device, precision):
        logits = objective(batch.src, batch.src_lengths, batch.tgt_in, keep)  # (N, V)
    loss_sum, _ = label_smoothed_cross_entropy(
        logits, batch.tgt_out[keep], opt.label_smoothing, overwrite_logits=True
    )  # the logits are not used after the loss
    total, tokens, stops = distributed.all_sum([loss_sum.item(), float(keep.sum()), float(stop)], device)
    loss, stop = total / tokens, stops > 0
    opt.optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(loss):  # the same on every process, so all of them skip
        return StepResult(loss, float("nan"), int(tokens), stop)
    # Gradient of the mean over all processes' tokens; DistributedDataParallel then
    # averages the processes' gradients, hence the world size in the divisor.
    opt.scaler.scale(loss_sum / (tokens / distributed.world_size())).backward()
    opt.scaler.unscale_(opt.optimizer)
    parameters = list(objective.parameters())
    if opt.clip_norm > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, opt.clip_norm)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    if not opt.scaler.is_enabled() and not torch.isfinite(grad_norm):
        opt.optimizer.zero_grad(set_to_none=True)  # fp16's scaler skips such steps itself
        return StepResult(float("nan"), float(grad_norm), int(tokens), stop)
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    return StepResult(loss, float(grad_norm), int(tokens), stop)
