"""What training reports, and where: the log, ``metrics.jsonl`` (a row per step),
``validations.jsonl`` (a row per validation), TensorBoard and a progress bar.

Only the main process reports (``enabled``); the others get a ``TrainingLog`` that
writes nothing. Target tokens/s counts the time of the training steps alone, so
validation and saving never enter it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import matplotlib.pyplot as plt

from seq2seq.inference.heatmaps import attention_figures

log = logging.getLogger("seq2seq.train")


class TrainingLog:
    """What the trainer reports (its ``report``). Per step: a ``metrics.jsonl`` row. Every
    ``log_every`` steps: a log line and TensorBoard scalars. Every validation: a
    ``validations.jsonl`` row with its scores and the seconds of training so far, sample
    translations and heatmaps."""

    def __init__(
        self, run_dir: Path, log_every: int, total_steps: int | None, step: int, enabled: bool, bar: bool
    ):
        self.enabled, self.log_every = enabled, log_every
        self.window_tokens, self.window_seconds = 0, 0.0
        self.writer = self.metrics = self.validations = self.bar = None
        if not enabled:
            return
        # TensorBoard (about 0.4 s to import) loads only in the process that reports.
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.metrics = open(run_dir / "metrics.jsonl", "a", buffering=1)  # a line per step, as it happens
        self.validations = open(run_dir / "validations.jsonl", "a", buffering=1)
        show = bar and sys.stderr.isatty()
        self.bar = tqdm(
            total=total_steps,
            initial=step,
            file=sys.stderr,
            unit="step",
            dynamic_ncols=True,
            disable=not show,
        )

    def step(
        self, step: int, epoch: int, loss: float, tokens: int, seconds: float, lr: float, grad_norm: float
    ) -> None:
        """Record one training step of ``tokens`` target tokens that took ``seconds``."""
        if not self.enabled:
            return
        finite = loss if loss == loss and abs(loss) != float("inf") else None
        self.metrics.write(json.dumps({"step": step, "loss": finite, "tokens": tokens}) + "\n")
        self.window_tokens, self.window_seconds = self.window_tokens + tokens, self.window_seconds + seconds
        self.bar.update(1)
        if step % self.log_every:
            return
        speed = self.window_tokens / max(self.window_seconds, 1e-9)
        for name, value in (("loss", loss), ("lr", lr), ("tokens_per_s", speed), ("grad_norm", grad_norm)):
            self.writer.add_scalar(f"train/{name}", value, step)
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:.0f}", epoch=epoch + 1)
        log.info(
            "step %d epoch %d loss %.4f lr %.2e grad_norm %.2f target tokens/s %.0f",
            step,
            epoch + 1,
            loss,
            lr,
            grad_norm,
            speed,
        )
        self.window_tokens, self.window_seconds = 0, 0.0

    def validation(self, step: int, result, best_bleu: float, improved: bool, elapsed: float) -> None:
        """Log the scores of a ``Validation`` at ``step``, after ``elapsed`` seconds of training."""
        if not self.enabled:
            return
        row = {"step": step, "elapsed": round(elapsed, 1), "improved": improved}
        row |= {name: round(getattr(result, name), 4) for name in ("loss", "ppl", "bleu")}
        directions = result.directions or {}
        if directions:
            row["directions"] = {d: {k: round(v, 4) for k, v in s.items()} for d, s in directions.items()}
        self.validations.write(json.dumps(row) + "\n")
        for name in ("loss", "ppl", "bleu"):
            self.writer.add_scalar(f"valid/{name}", getattr(result, name), step)
            for direction, scores in directions.items():  # valid/bleu/de-en, ...
                self.writer.add_scalar(f"valid/{name}/{direction}", scores[name], step)
        each = "".join(f", {d} {s['bleu']:.2f}" for d, s in directions.items())
        log.info(
            "validation at step %d: loss %.4f ppl %.2f BLEU %.2f%s%s",
            step,
            result.loss,
            result.ppl,
            result.bleu,
            f" (mean of {len(directions)} directions{each})" if len(directions) > 1 else "",
            " (best)" if improved else f" (best {best_bleu:.2f})",
        )

    def samples(self, step: int, result, valid, model, tokenizer, device, count: int) -> None:
        """Write the first ``count`` validation translations, and their attention heatmaps
        when the model has ``attention`` weights, to TensorBoard."""
        shown = list(range(min(count, len(result.texts))))
        if not self.enabled or not shown:
            return
        for i in shown:
            text = f"src: {valid.src_lines[i]}  \nref: {valid.tgt_lines[i]}  \nhyp: {result.texts[i]}"
            self.writer.add_text(f"samples/{i}", text, step)
        src_ids = [valid.src_ids[i] for i in shown]
        out_ids = [result.hypotheses[i].tokens for i in shown]
        model.eval()
        try:
            figures = attention_figures(model, tokenizer, src_ids, out_ids, device)
        finally:
            model.train()
        for i, fig in zip(shown, figures, strict=False):
            self.writer.add_figure(f"attention/{i}", fig, step)
            plt.close(fig)

    def flush(self) -> None:
        if self.enabled:
            self.metrics.flush()

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.writer.close()
            self.metrics.close()
            self.validations.close()
