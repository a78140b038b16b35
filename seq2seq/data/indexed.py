"""Prepared training pairs: token ids in flat memory-mapped files, read without loading them.

A prepared folder (one per corpus and settings, see ``seq2seq/data/preparation.py``) holds:

    meta.json         what it holds: format, pairs, dtype, vocabulary sizes, the settings and
                      the sha256 of the files it was made from, counts of what was left out
    spm.model         the SentencePiece model (src.model and tgt.model when not joint)
    src.bin, tgt.bin  the token ids of every kept pair, back to back, in ``dtype``: the smallest
                      unsigned type that holds the vocabulary (uint16 up to 65,536 pieces, else
                      uint32). Sources end in EOS; targets have neither BOS nor EOS.
    src.off.npy, tgt.off.npy   int64 (N + 1,): pair i's ids are bin[off[i] : off[i + 1]]
    src.len.npy, tgt.len.npy   (N,) the lengths, in ``dtype``, for batching
    text/             only where a run samples subword segmentations (``data.tokenizer.sampling``):
                      the stripped training lines of the kept pairs, which the ids are the
                      deterministic encoding of. ``text/src.bin`` and ``text/tgt.bin`` hold their
                      UTF-8 bytes back to back, ``text/src.off.npy`` and ``text/tgt.off.npy``
                      int64 (N + 1,) byte offsets, as for the ids. A folder prepared without it
                      gets it added (``seq2seq/data/preparation.py``); the ids do not change.

The ``.bin`` files are raw arrays opened with ``numpy.memmap``; the ``.npy`` files are
opened with ``numpy.load(mmap_mode="r")``. Nothing is read until it is used, and processes
that open the same folder share its pages.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from seq2seq.data.collate import Batch, collate

FORMAT = 1  # of a prepared folder; part of its cache key
TEXT = "text"  # the folder of the training text, inside a prepared folder


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds ids 0 .. vocab_size - 1."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class IndexedWriter:
    """Appends pairs of id arrays (and, with ``text``, their lines) to the files of a prepared
    folder, then writes the index."""

    def __init__(self, folder: Path, dtype: np.dtype, text: bool = False):
        self.folder, self.dtype = folder, dtype
        self.files = {side: open(folder / f"{side}.bin", "wb") for side in ("src", "tgt")}
        self.lengths: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
        self.text: dict[str, tuple] | None = None
        if text:
            (folder / TEXT).mkdir()
            self.text = {side: (open(folder / TEXT / f"{side}.bin", "wb"), []) for side in ("src", "tgt")}

    def add(self, side: str, ids: np.ndarray, lengths: np.ndarray) -> None:
        """``ids``: the flat ids of consecutive pairs' ``side``; ``lengths``: one per pair."""
        self.files[side].write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self.lengths[side].append(np.asarray(lengths, dtype=self.dtype))

    def add_text(self, side: str, text: bytes, lengths: np.ndarray) -> None:
        """``text``: the UTF-8 lines of the same pairs back to back; ``lengths``: bytes per pair."""
        f, all_lengths = self.text[side]
        f.write(text)
        all_lengths.append(np.asarray(lengths, dtype=np.int64))

    def close(self) -> int:
        """Write the index; returns the number of pairs."""
        count = 0
        for side, f in self.files.items():
            f.close()
            lengths = np.concatenate(self.lengths[side]) if self.lengths[side] else np.zeros(0, self.dtype)
            np.save(self.folder / f"{side}.len.npy", lengths)
            np.save(self.folder / f"{side}.off.npy", offsets_of(lengths))
            count = len(lengths)
        for side, (f, lengths) in (self.text or {}).items():
            f.close()
            np.save(self.folder / TEXT / f"{side}.off.npy", offsets_of(np.concatenate(lengths or [[]])))
        return count


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """(N + 1,) int64 offsets of items of these (N,) lengths stored back to back."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def map_sides(folder: Path, dtype: np.dtype) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each side's flat ``<side>.bin`` of ``dtype`` items, memory-mapped, and its
    ``<side>.off.npy`` offsets: {"src": (items, offsets), "tgt": ...}."""
    return {
        side: (
            np.memmap(folder / f"{side}.bin", dtype=dtype, mode="r")
            if (folder / f"{side}.bin").stat().st_size  # numpy cannot map an empty file
            else np.zeros(0, dtype),
            np.load(folder / f"{side}.off.npy", mmap_mode="r"),
        )
        for side in ("src", "tgt")
    }


class IndexedPairs(torch.utils.data.Dataset):
    """The pairs of a prepared folder. ``pairs[i]`` is (source ids, target ids), numpy arrays.

    The memory maps are opened on first use in each process, so the dataset can be sent
    to DataLoader workers without copying any ids.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.dtype = np.dtype(self.meta["dtype"])
        self._maps: dict | None = None
        self._text: dict | None = None

    def _open(self) -> dict:
        if self._maps is None:
            self._maps = map_sides(self.folder, self.dtype)
        return self._maps

    def __getstate__(self):
        return {**self.__dict__, "_maps": None, "_text": None}  # workers map the files themselves

    def __len__(self) -> int:
        return self.meta["pairs"]

    def lengths(self, side: str) -> np.ndarray:
        """(N,) lengths of one side (memory-mapped)."""
        return np.load(self.folder / f"{side}.len.npy", mmap_mode="r")

    def ids(self, side: str, i: int) -> np.ndarray:
        ids, off = self._open()[side]
        return ids[off[i] : off[i + 1]]

    def has_text(self) -> bool:
        """Whether the folder keeps the training text (``text/``)."""
        return (self.folder / TEXT / "tgt.off.npy").is_file()

    def text(self, side: str, i: int) -> str:
        """The line that pair ``i``'s ``side`` ids encode (a folder with ``text/``)."""
        if self._text is None:
            self._text = map_sides(self.folder / TEXT, np.dtype(np.uint8))
        data, off = self._text[side]
        return data[off[i] : off[i + 1]].tobytes().decode("utf-8")

    def for_epoch(self, seed: int, epoch: int, first_row: int = 0) -> torch.utils.data.Dataset:
        """The dataset that epoch ``epoch`` of a run seeded ``seed`` trains on: these pairs as
        they are (``seq2seq/data/sampling.py`` overrides it with sampled segmentations)."""
        return self

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.ids("src", i), self.ids("tgt", i)

    def __getitems__(self, rows) -> Batch:
        """A whole padded batch of the pairs ``rows`` (what the DataLoader asks for)."""
        return collate([self.ids("src", i) for i in rows], [self.ids("tgt", i) for i in rows])


def identity(batch):
    """The DataLoader's collate_fn: ``__getitems__`` already made the batch."""
    return batch
