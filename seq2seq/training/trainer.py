"""The training recipe: set up data, model and optimiser, resume, then loop.

``Trainer.run`` reads top to bottom: a run directory whose ``last.pt`` already
met its budget is left alone; otherwise ``setup`` builds the device, the data,
the model and the optimisation (each ``setup_*`` step returns what it builds and
``setup`` keeps it), ``resume`` continues from a checkpoint, and ``fit`` steps
through epochs of token batches, validating every ``trainer.eval_every`` steps
and saving every ``trainer.save_every`` steps, until ``stop`` says why it ends.

A fine-tune (``trainer.init_from``, ``seq2seq/training/parent.py``) starts a new run
directory from a parent checkpoint: its data are prepared with the parent's tokenizer,
its model is loaded with the parent's weights, and everything else starts afresh. Before
the first step it validates those weights and saves them as step 0, so the parent's
score on this run's validation split is the best to beat; later starts resume from the
run's own ``last.pt``.

Resuming is exact: a checkpoint holds the model, optimiser, schedule, gradient
scaler, random state and the position in the epoch's batch order (which is a
function of the seed and the epoch), so the steps after a resume are the steps
an uninterrupted run would have taken.

Under torchrun every process runs this loop on its share of the batches
(``seq2seq/training/distributed.py``); only the main process validates, logs and saves.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from seq2seq.checkpoints.checkpointer import Checkpointer, Saved
from seq2seq.checkpoints.loading import load_weights, model_for_tokenizer
from seq2seq.data.collate import Batch
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.device import output_rows_multiple, pick_device, pick_precision, set_threads
from seq2seq.errors import UserError
from seq2seq.inference.torch_engine import TorchTranslator
from seq2seq.training import distributed
from seq2seq.training.budget import Progress, Stop, budget_fraction, budget_spent, completed
from seq2seq.training.data import TrainingData, data_key, training_data
from seq2seq.training.log import TrainingLog
from seq2seq.training.parent import Parent, check_parent, describe_start, kept_tokenizer, load_parent
from seq2seq.training.schedule import Schedule
from seq2seq.training.signals import Interrupted, StopSignals
from seq2seq.training.step import Objective, Optimization, StepResult, train_step
from seq2seq.training.validation import ValidSet, validate_all

log = logging.getLogger("seq2seq.train")


class Trainer:
    """One training run of ``cfg`` in ``run_dir``; ``run()`` does it all.

    ``__init__`` sets the run's settings and state, ``setup()`` and ``fit()`` what the
    annotations below list.
    """

    # Built by setup():
    device: torch.device
    precision: str
    data: TrainingData
    model: nn.Module  # the model being trained
    objective: nn.Module  # what a step calls: an Objective, maybe compiled, maybe DistributedDataParallel
    translator: TorchTranslator  # validation's
    valid: list[ValidSet]  # one, or one per direction of data.corpora
    schedule: Schedule  # the learning-rate factor; given the budget's fraction spent before each step
    opt: Optimization
    # Built by fit():
    report: TrainingLog  # the log lines, metrics.jsonl, validations.jsonl, TensorBoard, the progress bar
    clock: float  # time.time() minus the loop's seconds of earlier runs of this directory

    def __init__(self, cfg: DictConfig, run_dir: Path, resume_command: str = ""):
        self.cfg, self.tcfg, self.run_dir = cfg, cfg.trainer, run_dir
        self.resume_command = resume_command  # said when a signal stops the run
        self.main, self.world = distributed.is_main(), distributed.world_size()
        config = OmegaConf.to_container(cfg, resolve=True)
        self.checkpointer = Checkpointer(run_dir, config, self.tcfg.keep_last)
        self.progress = Progress()
        self.stops = StopSignals(can_abort=self.main)  # the signals received
        self.stop: Stop | None = None  # why training ends, once that is decided
        self.started, self.first_step, self.bad_steps = time.time(), None, 0
        self.data_key = None  # corpus_key of the training files (main process only)
        self.parent: Parent | None = None  # a fine-tune's parent, when it starts (not when it resumes)
        self.kept_tokenizer: Tokenizer | None = None  # the tokenizer a fine-tune's data are prepared with

    def run(self) -> Progress:
        """Train until a budget is spent or a signal asks to stop; returns the final progress."""
        with self.stops:
            saved = self.checkpointer.previous()  # before anything in run_dir is overwritten
            self.find_parent(saved)
            # hashes the training files
            self.data_key = data_key(self.cfg.data, self.kept_tokenizer) if self.main else None
            if saved is not None and self.main:
                self.checkpointer.check_data(saved, self.data_key[0])
            if done := completed(saved, self.tcfg):
                log.info("%s; nothing but .hydra/ and train.log was written", done)
                self.progress = Progress(**saved.progress)
                return self.progress
            with self.stops.abortable():
                self.setup()
                if saved is not None:
                    self.resume(saved)
            return self.fit()

    def find_parent(self, saved: Saved | None) -> None:
        """A fine-tune's parent (``trainer.init_from``) in a new run directory, checked against
        the settings; or, resuming, the parent record and tokenizer its ``last.pt`` holds."""
        if saved is None and self.tcfg.init_from:
            self.parent = load_parent(self.tcfg.init_from)
            check_parent(self.cfg, self.parent)
            self.kept_tokenizer, self.checkpointer.parent = self.parent.tokenizer, self.parent.record
        elif saved is not None:
            self.kept_tokenizer, self.checkpointer.parent = kept_tokenizer(saved), saved.payload.get("parent")

    def setup(self) -> None:
        """Everything before the first step: the run directory's config, then the device and
        precision, the data, the model, its objective and translator, the validation set and
        the optimisation, kept in the attributes listed on the class."""
        if self.data_key is None and self.main:
            self.data_key = data_key(self.cfg.data, self.kept_tokenizer)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg))
        self.device, self.precision = self.setup_device()
        self.data = self.setup_data()
        self.model, self.objective, self.translator = self.setup_model(self.data.tokenizer)
        self.valid = [
            ValidSet.encode(
                self.data.tokenizer, v.src, v.tgt, self.model.max_positions, v.direction, v.tgt_lang
            )
            for v in self.data.valid
        ]
        self.schedule, self.opt = self.setup_optimizer(self.model, self.data.batches_per_epoch)

    # ----- setup -----------------------------------------------------------------------------

    def setup_device(self) -> tuple[torch.device, str]:
        """This process's device and the precision used on it; sets the threads and the seed."""
        set_threads(self.tcfg.num_threads)
        device = distributed.local_device(pick_device(self.tcfg.device))
        precision = pick_precision(self.tcfg.precision, device)
        torch.manual_seed(self.cfg.seed)  # the same initial weights on every process
        return device, precision

    def setup_data(self) -> TrainingData:
        """The prepared training pairs, the run's tokenizer and the validation lines
        (``training/data.py``)."""
        return training_data(
            self.cfg.data,
            self.tcfg.max_tokens,
            self.cfg.seed,
            self.run_dir,
            self.data_key,
            self.kept_tokenizer,
        )

    def setup_model(self, tokenizer: Tokenizer) -> tuple[nn.Module, nn.Module, TorchTranslator]:
        """The model on the device, the objective that training steps call, and the
        translator that validation uses."""
        model = model_for_tokenizer(self.cfg.model, tokenizer)
        if self.parent is not None:
            load_weights(model, self.parent.weights, self.parent.path)
            log.info("%s", describe_start(self.parent))
        model = model.to(self.device)
        log.info(
            "model: %s, %.2fM parameters, device %s, precision %s",
            type(model).__name__,
            sum(p.numel() for p in model.parameters()) / 1e6,
            self.device,
            self.precision,
        )
        objective = Objective(model, output_rows_multiple(self.device, self.precision))
        if self.tcfg.compile:
            # Batch sizes and lengths vary: one graph with symbolic shapes, not one per shape.
            objective = torch.compile(objective, dynamic=True)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
            torch.manual_seed(self.cfg.seed + distributed.rank())  # the same weights, each its own dropout
        translator = TorchTranslator(model, tokenizer, self.cfg.decoding, self.device, self.precision)
        return model, objective, translator

    def setup_optimizer(self, model: nn.Module, batches_per_epoch: int) -> tuple[Schedule, Optimization]:
        """Adam, its learning-rate schedule (and the ``LambdaLR`` that applies it), the
        gradient scaler of fp16, and the loss and clipping settings."""
        o, t = self.cfg.optim, self.tcfg
        optimizer = torch.optim.Adam(
            model.parameters(),
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
            weight_decay=o.weight_decay,
            fused=o.fused,
        )
        schedule = Schedule(o.warmup_steps, o.decay)
        steps = [n for n in (t.max_steps, t.max_epochs * (batches_per_epoch // self.world)) if n]
        if o.decay == "linear" and steps and min(steps) <= o.warmup_steps:
            log.warning(
                "optim.warmup_steps=%d: the budget ends within the warmup, after %d steps, so the "
                "learning rate never decays; lower optim.warmup_steps",
                o.warmup_steps,
                min(steps),
            )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        return schedule, Optimization(optimizer, scheduler, scaler, o.label_smoothing, o.clip_norm)

    def resume(self, saved: Saved) -> None:
        """Continue from a checkpoint of this run directory, random state included."""
        opt = self.opt
        self.checkpointer.restore(
            saved, model=self.model, optimizer=opt.optimizer, scheduler=opt.scheduler, scaler=opt.scaler
        )
        self.progress = Progress(**saved.progress)
        self.next_epoch_if_done()  # saved by fewer processes than now, near the end of an epoch
        if not distributed.restore_rng(saved.rng, self.device):
            log.warning(
                "%s was saved by %d processes, not %d: random state reseeded",
                saved.path,
                len(saved.rng),
                self.world,
            )
            torch.manual_seed(self.cfg.seed + distributed.rank() + self.progress.step)
        parent = saved.payload.get("parent")
        log.info(
            "resuming from %s at step %d (epoch %d)%s",
            saved.path,
            self.progress.step,
            self.progress.epoch + 1,
            f", a fine-tune of {parent['path']}" if parent else "",
        )

    # ----- the loop ----------------------------------------------------------------------------

    def fit(self) -> Progress:
        """Step until a budget is spent, the run diverges, or a signal asks to stop; then one
        line says why training stopped."""
        p, t = self.progress, self.tcfg
        total = t.max_steps or (t.max_epochs * (self.data.batches_per_epoch // self.world)) or None
        self.report = TrainingLog(self.run_dir, t.log_every, total, p.step, enabled=self.main, bar=t.progress)
        self.clock = time.time() - p.elapsed  # the loop's time goes on from the saved run's
        self.catch_up()
        self.model.train()
        try:
            self.loop()
        except Interrupted as second:  # a second signal: stop at once, keep the last checkpoint
            self.stop = Stop.second_signal(str(second))
        self.report.close()
        log.info(
            "stopped: %s at step %d; %.0f s in the training loop (all runs of this directory), "
            "%.0f s since this command started; best validation BLEU %.2f; checkpoints in %s",
            self.stop.text,
            p.step,
            p.elapsed,
            time.time() - self.started,
            p.best_bleu,
            self.checkpointer.dir,
        )
        return p

    def catch_up(self) -> None:
        """Before the first step: read the budgets; at a fine-tune's start, validate and save
        the parent's weights as step 0; after a resume, run the validation that was due when
        the saved run stopped, or save a budget met already (resumed by more processes than
        saved it, at the end of the last epoch)."""
        p = self.progress
        self.stop = self.budget()
        if self.parent is not None and p.step == 0:
            self.validate_and_save()
        elif p.step and p.validated_step != p.step and (self.stop or p.step % self.tcfg.eval_every == 0):
            self.validate_and_save()
        elif self.stop:
            self.save(best=False)

    def loop(self) -> None:
        """Epochs of steps, validations and saves, until ``self.stop`` says why to end."""
        p, t = self.progress, self.tcfg
        while self.stop is None:
            began = time.perf_counter()  # a step's time includes loading its batch
            for batch in self.epoch_batches():
                result = self.step(batch, began)
                if result.stop or (self.world == 1 and self.stops.received):
                    self.save_on_signal()
                    break
                self.stop = self.budget()
                if p.step % t.eval_every == 0 or self.stop:
                    self.validate_and_save()  # may stop: trainer.patience, or a signal meanwhile
                elif t.save_every and p.step % t.save_every == 0:
                    self.save(best=False)
                if self.stop:
                    break
                began = time.perf_counter()  # not the validation's or the save's time

    def step(self, batch: Batch, began: float) -> StepResult:
        """One update on ``batch`` (a signal waits until it is done), then the bookkeeping:
        progress, the report, divergence, the epoch's end. ``began``: the perf_counter()
        time at which this step's time starts."""
        p = self.progress
        self.schedule.spent = budget_fraction(p, self.tcfg, self.epoch_length())  # for a linear decay
        stop = bool(self.stops.received)
        result = train_step(
            self.objective, batch.to(self.device), self.opt, self.device, self.precision, stop
        )
        p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + self.world
        p.elapsed = self.elapsed()
        if self.first_step is None:
            self.first_step = time.time() - self.started
            log.info("first step %.1f s after the start of this command", self.first_step)
        seconds, lr = time.perf_counter() - began, self.opt.scheduler.get_last_lr()[0]
        self.report.step(p.step, p.epoch, result.loss, result.tokens, seconds, lr, result.grad_norm)
        self.bad_steps = 0 if math.isfinite(result.loss) else self.bad_steps + 1
        if self.bad_steps:
            self.diverging()
        self.next_epoch_if_done()
        return result

    def epoch_batches(self) -> DataLoader:
        """This process's batches of the current epoch that are not done yet (``training/data.py``)."""
        p, t = self.progress, self.tcfg
        pin = self.device.type == "cuda"
        return self.data.loader(t.max_tokens, self.cfg.seed, p.epoch, p.batch_in_epoch, t.num_workers, pin)

    def next_epoch_if_done(self) -> None:
        """Start the next epoch when fewer of this one's batches are left than processes."""
        p = self.progress
        if p.batch_in_epoch + self.world > self.epoch_length():
            p.epoch, p.batch_in_epoch = p.epoch + 1, 0

    def epoch_length(self) -> int:
        """Batches of all processes in the current epoch (a mixture's epochs differ a little)."""
        return self.data.batches_in(self.tcfg.max_tokens, self.cfg.seed, self.progress.epoch)

    def elapsed(self) -> float:
        """Seconds in the training loop, all runs of this directory; under ``trainer.max_time``
        the main process's count on every process, so that all of them stop at the same step."""
        seconds = time.time() - self.clock
        return distributed.from_main(seconds) if self.tcfg.max_time else seconds

    def budget(self) -> Stop | None:
        """The budget (or ``trainer.patience``) the progress has reached, if any."""
        key = budget_spent(self.progress, self.tcfg)
        return Stop.budget(key) if key else None

    def diverging(self) -> None:
        """Warn about a skipped update; stop after ``trainer.max_bad_steps`` in a row."""
        step, bad = self.progress.step, self.bad_steps
        log.warning("step %d: loss is not finite, update skipped (%d in a row)", step, bad)
        if bad >= self.tcfg.max_bad_steps:
            raise UserError(
                f"training diverged: {bad} non-finite losses in a row at step {step}; lower optim.lr "
                f"or use trainer.precision=fp32 (the last good checkpoint is kept in {self.checkpointer.dir})"
            )

    def validate_and_save(self) -> None:
        """Validate (main process), save, and read the budgets again (``trainer.patience``);
        a signal during validation abandons it and saves without it (``save_on_signal``)."""
        p = self.progress
        improved, aborted = self.validate_main() if self.main else (False, False)
        # Every process takes the main process's outcome, so that all of them stop alike.
        improved, aborted, p.best_bleu, p.bad_evals, p.validated_step = distributed.from_main(
            (improved, aborted, p.best_bleu, p.bad_evals, p.validated_step)
        )
        if aborted:
            self.save_on_signal()
            return
        if p.step == 0:  # a fine-tune's start: the validation's time counts, so a budget can end it at once
            p.elapsed = self.elapsed()
        self.save(best=improved)
        self.stop = self.budget()

    def validate_main(self) -> tuple[bool, bool]:
        """Validate and report it (main process); returns whether the BLEU is the best so
        far and whether a signal abandoned the validation."""
        p, model, valid, device = self.progress, self.model, self.valid, self.device
        self.report.flush()
        try:
            with self.stops.abortable():
                result = validate_all(
                    model, self.translator, valid, self.cfg.decoding.max_tokens, device, self.precision
                )
                self.report.samples(
                    p.step, result, valid[0], model, self.data.tokenizer, device, self.tcfg.samples
                )
        except Interrupted:
            return False, True
        improved = result.bleu > p.best_bleu
        p.best_bleu, p.bad_evals = (result.bleu, 0) if improved else (p.best_bleu, p.bad_evals + 1)
        p.validated_step = p.step
        self.report.validation(p.step, result, p.best_bleu, improved, p.elapsed)
        return improved, False

    def save_on_signal(self) -> None:
        """Save after SIGINT/SIGTERM, say how to resume, and stop."""
        self.save(best=False)
        p, name = self.progress, self.stops.name or "a signal"
        log.info(
            "stopped by %s at step %d (epoch %d); saved %s; to resume: %s",
            name,
            p.step,
            p.epoch + 1,
            self.checkpointer.last,
            self.resume_command or "train again into this run directory",
        )
        self.stop = Stop.signal(name)

    def save(self, best: bool) -> None:
        """Write a checkpoint (main process), whatever signals arrive meanwhile; every
        process hands over its random state."""
        with self.stops.shielded():
            rng = distributed.rng_states(self.device)
            if not self.main:
                return
            self.report.flush()
            opt = self.opt
            self.checkpointer.save(
                data={"key": self.data.pairs.meta["key"], "pairs": len(self.data.pairs)},
                model=self.model,
                optimizer=opt.optimizer,
                scheduler=opt.scheduler,
                scaler=opt.scaler,
                progress=asdict(self.progress),
                rng=rng,
                tokenizer=self.data.tokenizer,
                best=best,
            )


def train(cfg: DictConfig, run_dir: Path, resume_command: str = "") -> Trainer:
    """Train the model of ``cfg`` in ``run_dir``; returns the trainer (its ``progress``,
    and in ``stops.received`` the signal that stopped it, if one did)."""
    trainer = Trainer(cfg, run_dir, resume_command)
    trainer.run()
    return trainer
