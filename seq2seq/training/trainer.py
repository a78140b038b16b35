"""The training recipe: set up data, model and optimiser, resume, then loop.

``Trainer.run`` reads top to bottom: a run directory whose ``last.pt`` already
met its budget is left alone; otherwise ``setup_data`` (tokenizer, ids),
``setup_model``, ``setup_optimizer`` and ``resume`` prepare everything and
``fit`` steps through epochs of token batches, validating every
``trainer.eval_every`` steps and saving every ``trainer.save_every`` steps.

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
from dataclasses import asdict, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from seq2seq.checkpoints.checkpointer import Checkpointer, Saved
from seq2seq.checkpoints.format import TOKENIZER
from seq2seq.checkpoints.loading import model_for_tokenizer
from seq2seq.data.batching import count_batches, token_batches
from seq2seq.data.collate import Batch
from seq2seq.data.indexed import identity
from seq2seq.data.preparation import corpus_key, open_prepared, prepare
from seq2seq.data.reading import read_parallel
from seq2seq.data.tokenizer import open_tokenizer
from seq2seq.data.workers import ignore_ctrl_c
from seq2seq.device import output_rows_multiple, pick_device, pick_precision, set_threads
from seq2seq.errors import UserError
from seq2seq.inference.torch_engine import TorchTranslator
from seq2seq.training import distributed
from seq2seq.training.budget import Progress, budget_fraction, budget_spent, completed
from seq2seq.training.log import TrainingLog
from seq2seq.training.schedule import Schedule
from seq2seq.training.signals import Interrupted, StopSignals
from seq2seq.training.step import Objective, Optimization, StepResult, train_step
from seq2seq.training.validation import ValidSet, validate

log = logging.getLogger("seq2seq.train")


class Trainer:
    """One training run of ``cfg`` in ``run_dir``; ``run()`` does it all."""

    def __init__(self, cfg: DictConfig, run_dir: Path, resume_command: str = ""):
        self.cfg, self.tcfg, self.run_dir = cfg, cfg.trainer, run_dir
        self.resume_command = resume_command
        self.main, self.world = distributed.is_main(), distributed.world_size()
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.checkpointer = Checkpointer(run_dir, self.config, self.tcfg.keep_last)
        self.progress = Progress()
        self.stops = StopSignals(can_abort=self.main)
        self.started, self.bad_steps, self.first_step = time.time(), 0, None
        self.data_key = None  # corpus_key of the training files (main process only)

    def run(self) -> Progress:
        """Train until a budget is spent or a signal asks to stop; returns the final progress."""
        with self.stops:
            saved = self.checkpointer.previous()  # before anything in run_dir is overwritten
            self.data_key = corpus_key(self.cfg.data) if self.main else None  # hashes the training files
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

    def setup(self) -> None:
        """Everything before the first step: the run directory's config, the device,
        the data, the model and the optimiser."""
        if self.data_key is None and self.main:
            self.data_key = corpus_key(self.cfg.data)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg))
        self.setup_device()
        self.setup_data()
        self.setup_model()
        self.setup_optimizer()

    # ----- setup -----------------------------------------------------------------------------

    def setup_device(self) -> None:
        set_threads(self.tcfg.num_threads)
        self.device = distributed.local_device(pick_device(self.tcfg.device))
        self.precision = pick_precision(self.tcfg.precision, self.device)
        torch.manual_seed(self.cfg.seed)  # the same initial weights on every process

    def setup_data(self) -> None:
        """Prepare the training split once (or find it prepared) and map it; read the
        validation split. Under torchrun the main process prepares, the others wait."""
        data = self.cfg.data
        folder = prepare(data, key=self.data_key) if self.main else None
        folder = Path(distributed.from_main(str(folder) if folder else None))
        self.pairs, tokenizer = open_prepared(folder)
        if self.main:
            tokenizer.copy_to(self.run_dir / TOKENIZER)
        distributed.barrier()  # the others read the main process's copy, which checkpoints refer to
        self.tokenizer = open_tokenizer(self.run_dir / TOKENIZER, data.tokenizer.joint)
        meta = self.pairs.meta
        log.info(
            "train: %d pairs kept, %d longer than data.max_len=%d left out (%s)",
            meta["pairs"],
            meta["longer_than_max_len"],
            data.max_len,
            folder,
        )
        self.lengths = (self.pairs.lengths("src"), self.pairs.lengths("tgt"))
        self.batches_per_epoch = count_batches(*self.lengths, self.tcfg.max_tokens)  # the same every epoch
        if self.batches_per_epoch < self.world:
            raise UserError(
                f"the training data makes {self.batches_per_epoch} batches, fewer than the {self.world} "
                f"processes; lower trainer.max_tokens or start fewer processes"
            )
        if self.world > 1:
            log.info("%d processes, %d steps per epoch", self.world, self.batches_per_epoch // self.world)
        self.valid_lines = read_parallel(data.valid.src, data.valid.tgt, "data.valid")

    def setup_model(self) -> None:
        self.model = model_for_tokenizer(self.cfg.model, self.tokenizer).to(self.device)
        log.info(
            "model: %s, %.2fM parameters, device %s, precision %s",
            type(self.model).__name__,
            sum(p.numel() for p in self.model.parameters()) / 1e6,
            self.device,
            self.precision,
        )
        self.objective = Objective(self.model, output_rows_multiple(self.device, self.precision))
        if self.tcfg.compile:
            # Batch sizes and lengths vary: one graph with symbolic shapes, not one per shape.
            self.objective = torch.compile(self.objective, dynamic=True)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
            torch.manual_seed(self.cfg.seed + distributed.rank())  # the same weights, each its own dropout
        self.translator = TorchTranslator(
            self.model, self.tokenizer, self.cfg.decoding, self.device, self.precision
        )
        self.valid = ValidSet.encode(self.tokenizer, *self.valid_lines, self.model.max_positions)

    def setup_optimizer(self) -> None:
        o = self.cfg.optim
        optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
            weight_decay=o.weight_decay,
            fused=o.fused,
        )
        self.schedule = Schedule(o.warmup_steps, o.decay)
        t = self.tcfg
        steps = [n for n in (t.max_steps, t.max_epochs * (self.batches_per_epoch // self.world)) if n]
        if o.decay == "linear" and steps and min(steps) <= o.warmup_steps:
            log.warning(
                "optim.warmup_steps=%d: the budget ends within the warmup, after %d steps, so the "
                "learning rate never decays; lower optim.warmup_steps",
                o.warmup_steps,
                min(steps),
            )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.opt = Optimization(optimizer, scheduler, scaler, o.label_smoothing, o.clip_norm)

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
        log.info(
            "resuming from %s at step %d (epoch %d)", saved.path, self.progress.step, self.progress.epoch + 1
        )

    # ----- the loop ----------------------------------------------------------------------------

    def fit(self) -> Progress:
        """Step until a budget is spent, the run diverges, or a signal asks to stop."""
        p, t = self.progress, self.tcfg
        total = t.max_steps or (t.max_epochs * (self.batches_per_epoch // self.world)) or None
        self.log = TrainingLog(self.run_dir, t.log_every, total, p.step, enabled=self.main, bar=t.progress)
        self.clock = time.time() - p.elapsed  # the loop's time goes on from the saved run's
        stop = self.budget()
        if p.step and p.validated_step != p.step and (stop or p.step % t.eval_every == 0):
            stop = self.validate_and_save() or self.budget()  # due when the saved run was stopped
        elif stop:  # resumed by more processes than saved it, at the end of the last epoch
            self.save(best=False)
        self.model.train()
        try:
            stop = self.loop(stop)
        except Interrupted as second:  # a second signal: stop at once, keep the last checkpoint
            stop = f"stopped at once by a second {second}; the last save is kept"
        self.log.close()
        log.info(
            "stopped: %s at step %d; %.0f s in the training loop (all runs of this directory), "
            "%.0f s since this command started; best validation BLEU %.2f; checkpoints in %s",
            stop,
            p.step,
            p.elapsed,
            time.time() - self.started,
            p.best_bleu,
            self.checkpointer.dir,
        )
        return p

    def loop(self, stop: str | None) -> str:
        """Epochs of steps, validations and saves, until ``stop`` gives the reason to end."""
        p, t = self.progress, self.tcfg
        while stop is None:
            self.mark = time.perf_counter()
            for batch in self.epoch_batches():
                result = self.step(batch)
                if result.stop or (self.world == 1 and self.stops.received):
                    stop = self.save_on_signal()
                    break
                stop = self.budget()
                if p.step % t.eval_every == 0 or stop:
                    stop = self.validate_and_save() or self.budget()
                elif t.save_every and p.step % t.save_every == 0:
                    self.save(best=False)
                if stop:
                    break
                self.mark = time.perf_counter()  # the next step's time starts after validation or saving
        return stop

    def step(self, batch: Batch) -> StepResult:
        """One update on ``batch`` (a signal waits until it is done), then the bookkeeping:
        progress, the log, divergence, the epoch's end."""
        p = self.progress
        stop = bool(self.stops.received)
        result = train_step(
            self.objective, batch.to(self.device), self.opt, self.device, self.precision, stop
        )
        p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + self.world
        p.elapsed = time.time() - self.clock
        if self.first_step is None:
            self.first_step = time.time() - self.started
            log.info("first step %.1f s after the start of this command", self.first_step)
        now = time.perf_counter()
        lr, seconds, self.mark = self.opt.scheduler.get_last_lr()[0], now - self.mark, now  # loading included
        self.log.step(p.step, p.epoch, result.loss, result.tokens, seconds, lr, result.grad_norm)
        self.bad_steps = 0 if math.isfinite(result.loss) else self.bad_steps + 1
        if self.bad_steps:
            self.diverging()
        self.next_epoch_if_done()
        return result

    def epoch_batches(self) -> DataLoader:
        """This process's batches of the current epoch that are not done yet, collated
        ahead of the step by ``trainer.num_workers`` processes (pinned for CUDA)."""
        order = token_batches(*self.lengths, self.tcfg.max_tokens, self.cfg.seed, self.progress.epoch)
        return DataLoader(
            self.pairs,
            batch_sampler=distributed.shard(order, self.progress.batch_in_epoch),
            collate_fn=identity,
            num_workers=self.tcfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # its seed draw must not touch the global random state
            worker_init_fn=ignore_ctrl_c,
        )

    def next_epoch_if_done(self) -> None:
        """Start the next epoch when fewer of this one's batches are left than processes."""
        p = self.progress
        if p.batch_in_epoch + self.world > self.batches_per_epoch:
            p.epoch, p.batch_in_epoch = p.epoch + 1, 0

    def budget(self) -> str | None:
        """The budget spent, if any, by the main process's clock, which also tells the
        schedule how much of it is spent (every process alike)."""
        p = self.progress
        if self.tcfg.max_time:
            p = replace(p, elapsed=distributed.from_main(p.elapsed))
        self.schedule.spent = budget_fraction(p, self.tcfg, self.batches_per_epoch)
        return budget_spent(p, self.tcfg)

    def diverging(self) -> None:
        """Warn about a skipped update; stop after ``trainer.max_bad_steps`` in a row."""
        step, bad = self.progress.step, self.bad_steps
        log.warning("step %d: loss is not finite, update skipped (%d in a row)", step, bad)
        if bad >= self.tcfg.max_bad_steps:
            raise UserError(
                f"training diverged: {bad} non-finite losses in a row at step {step}; lower optim.lr "
                f"or use trainer.precision=fp32 (the last good checkpoint is kept in {self.checkpointer.dir})"
            )

    def validate_and_save(self) -> str | None:
        """Validate (main process) and save; a signal during validation abandons it and
        saves without it. Returns the reason to stop, if a signal gave one."""
        p, improved, aborted = self.progress, False, False
        if self.main:
            self.log.flush()
            try:
                with self.stops.abortable():
                    max_tokens = self.cfg.decoding.max_tokens
                    result = validate(
                        self.model, self.translator, self.valid, max_tokens, self.device, self.precision
                    )
                    self.log.samples(
                        p.step, result, self.valid, self.model, self.tokenizer, self.device, self.tcfg.samples
                    )
            except Interrupted:
                aborted = True
            else:
                improved = result.bleu > p.best_bleu
                p.best_bleu, p.bad_evals = (result.bleu, 0) if improved else (p.best_bleu, p.bad_evals + 1)
                p.validated_step = p.step
                self.log.validation(p.step, result, p.best_bleu, improved, p.elapsed)
        # Every process takes the main process's outcome, so that all of them stop alike.
        improved, aborted, p.best_bleu, p.bad_evals, p.validated_step = distributed.from_main(
            (improved, aborted, p.best_bleu, p.bad_evals, p.validated_step)
        )
        if aborted:
            return self.save_on_signal()
        self.save(best=improved)
        return None

    def save_on_signal(self) -> str:
        """Save after SIGINT/SIGTERM and say how to resume."""
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
        return f"stopped by {name}"

    def save(self, best: bool) -> None:
        """Write a checkpoint (main process), whatever signals arrive meanwhile; every
        process hands over its random state."""
        with self.stops.shielded():
            rng = distributed.rng_states(self.device)
            if not self.main:
                return
            self.log.flush()
            opt = self.opt
            self.checkpointer.save(
                data={"key": self.pairs.meta["key"], "pairs": len(self.pairs)},
                model=self.model,
                optimizer=opt.optimizer,
                scheduler=opt.scheduler,
                scaler=opt.scaler,
                progress=asdict(self.progress),
                rng=rng,
                tokenizer=self.tokenizer,
                best=best,
            )


def train(cfg: DictConfig, run_dir: Path, resume_command: str = "") -> Trainer:
    """Train the model of ``cfg`` in ``run_dir``; returns the trainer (its ``progress``,
    and in ``stops.received`` the signal that stopped it, if one did)."""
    trainer = Trainer(cfg, run_dir, resume_command)
    trainer.run()
    return trainer
