"""What a run trains and validates on: the training split prepared once (or found prepared)
and memory-mapped, the run directory's copy of its tokenizer, and the validation lines."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2seq.checkpoints.format import TOKENIZER
from seq2seq.data.batching import count_batches
from seq2seq.data.indexed import IndexedPairs
from seq2seq.data.preparation import open_prepared, prepare
from seq2seq.data.reading import read_parallel
from seq2seq.data.sampling import METHODS, SampledPairs
from seq2seq.data.tokenizer import Tokenizer, open_tokenizer
from seq2seq.errors import UserError
from seq2seq.training import distributed

log = logging.getLogger("seq2seq.train")


@dataclass
class TrainingData:
    """What a run trains and validates on."""

    pairs: IndexedPairs  # the prepared training pairs, memory-mapped (their for_epoch: an epoch's dataset)
    tokenizer: Tokenizer  # the run directory's copy, which checkpoints refer to
    lengths: tuple[np.ndarray, np.ndarray]  # (N,) source and (N,) target lengths of the pairs
    batches_per_epoch: int  # of all processes together; the same every epoch
    valid_lines: tuple[list[str], list[str]]  # the validation split's source and target lines


def training_data(data_cfg, max_tokens: int, run_dir: Path, key, tokenizer: Tokenizer | None) -> TrainingData:
    """Prepare ``data_cfg``'s training split (corpus key ``key``; with ``tokenizer``, a
    fine-tune's parent's, instead of training one), copy its tokenizer into ``run_dir`` and
    read the validation split. Under torchrun the main process prepares, the others wait.
    With ``data.tokenizer.sampling`` the pairs sample their segmentations every epoch
    (``seq2seq/data/sampling.py``)."""
    main, world = distributed.is_main(), distributed.world_size()
    folder = prepare(data_cfg, key=key, tokenizer=tokenizer) if main else None
    folder = Path(distributed.from_main(str(folder) if folder else None))
    pairs, prepared_tokenizer = open_prepared(folder)
    if data_cfg.tokenizer.sampling:
        tok = data_cfg.tokenizer
        pairs = SampledPairs(folder, tok.model_type, tok.alpha, tok.nbest_size, data_cfg.max_len)
    if main:
        prepared_tokenizer.copy_to(run_dir / TOKENIZER)
    distributed.barrier()  # the others read the main process's copy, which checkpoints refer to
    run_tokenizer = open_tokenizer(run_dir / TOKENIZER, data_cfg.tokenizer.joint)
    meta = pairs.meta
    log.info(
        "train: %d pairs kept, %d longer than data.max_len=%d left out (%s)",
        meta["pairs"],
        meta["longer_than_max_len"],
        data_cfg.max_len,
        folder,
    )
    if data_cfg.tokenizer.sampling:
        method = METHODS[data_cfg.tokenizer.model_type]
        log.info("train: %s with alpha %g, a new segmentation every epoch", method, data_cfg.tokenizer.alpha)
    lengths = (pairs.lengths("src"), pairs.lengths("tgt"))
    batches = count_batches(*lengths, max_tokens)
    if batches < world:
        raise UserError(
            f"the training data makes {batches} batches, fewer than the {world} "
            f"processes; lower trainer.max_tokens or start fewer processes"
        )
    if world > 1:
        log.info("%d processes, %d steps per epoch", world, batches // world)
    valid_lines = read_parallel(data_cfg.valid.src, data_cfg.valid.tgt, "data.valid")
    return TrainingData(pairs, run_tokenizer, lengths, batches, valid_lines)
