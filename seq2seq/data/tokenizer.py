"""SentencePiece tokenization, trained on the training split and cached.

One joint vocabulary is the default (``data.tokenizer.joint=true``: the source
and target share ``spm.model``); with ``joint=false`` the source and target get
``src.model`` and ``tgt.model``. Special ids come from ``seq2seq.special``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import sentencepiece as spm

from seq2seq.errors import UserError
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Tokenizer:
    """Source and target SentencePiece models (the same object when joint)."""

    def __init__(self, src_model: str | Path, tgt_model: str | Path):
        self.src_path, self.tgt_path = Path(src_model), Path(tgt_model)
        self.src = self._load(self.src_path)
        self.tgt = self.src if self.src_path == self.tgt_path else self._load(self.tgt_path)

    @staticmethod
    def _load(path: Path) -> spm.SentencePieceProcessor:
        if not path.is_file():
            raise UserError(
                f"{path}: tokenizer model not found; it belongs in the run directory's tokenizer/"
            )
        try:
            return spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError):
            raise UserError(f"{path}: not a SentencePiece model; retrain or restore the tokenizer") from None

    @property
    def joint(self) -> bool:
        return self.src is self.tgt

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, sentences: list[str]) -> list[list[int]]:
        """Source ids: pieces followed by EOS."""
        return [ids + [EOS_ID] for ids in self.src.encode(sentences)]

    def encode_tgt(self, sentences: list[str]) -> list[list[int]]:
        """Target ids: pieces only (the data adds BOS to ``tgt_in`` and EOS to ``tgt_out``)."""
        return self.tgt.encode(sentences)

    def decode_tgt(self, ids: list[int]) -> str:
        """Detokenised target text; special ids are dropped."""
        return self.tgt.decode([i for i in ids if i > EOS_ID])

    def src_pieces(self, ids: list[int]) -> list[str]:
        return [self.src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]


def _train_spm(sentences: list[str], vocab_size: int, model_type: str, coverage: float, out: Path) -> None:
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            byte_fallback=True,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        reason = str(e).split("] ")[-1].strip()  # SentencePiece's message, without its source location
        raise UserError(f"SentencePiece training failed: {reason} (set data.tokenizer.vocab_size)") from None
    out.write_bytes(buffer.getvalue())


def cache_path(
    src_lines: list[str],
    tgt_lines: list[str],
    vocab_size: int,
    joint: bool,
    model_type: str,
    character_coverage: float,
    cache_dir: str,
) -> Path:
    """Cache folder of the tokenizer trained on these sentences with these
    settings; its name hashes both."""
    key = hashlib.sha256()
    for lines in (src_lines, tgt_lines):
        key.update("\n".join(lines).encode())
        key.update(b"\0")
    settings = {"vocab": vocab_size, "joint": joint, "type": model_type, "coverage": character_coverage}
    key.update(json.dumps(settings, sort_keys=True).encode())
    return Path(cache_dir).expanduser() / key.hexdigest()[:16]


def build_tokenizer(
    src_lines: list[str],
    tgt_lines: list[str],
    vocab_size: int,
    joint: bool,
    model_type: str,
    character_coverage: float,
    cache_dir: str,
    out_dir: Path,
) -> Tokenizer:
    """Train SentencePiece on the training split, or reuse a cached model.

    The cache key is made of the training sentences and the settings, so
    a second run with the same data and settings skips training. The models
    are copied to ``out_dir`` (the run directory's ``tokenizer/``).
    """
    cache = cache_path(src_lines, tgt_lines, vocab_size, joint, model_type, character_coverage, cache_dir)
    names = model_names(joint)
    if all((cache / n).is_file() for n in names):
        log.info("tokenizer: reusing %s", cache)
    else:
        log.info("tokenizer: training SentencePiece (%s, vocab %d, joint=%s)", model_type, vocab_size, joint)
        tmp = cache.with_name(cache.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        if joint:
            _train_spm(src_lines + tgt_lines, vocab_size, model_type, character_coverage, tmp / "spm.model")
        else:
            _train_spm(src_lines, vocab_size, model_type, character_coverage, tmp / "src.model")
            _train_spm(tgt_lines, vocab_size, model_type, character_coverage, tmp / "tgt.model")
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(cache / n, out_dir / n)
    return open_tokenizer(out_dir, joint)


def model_names(joint: bool) -> list[str]:
    """The SentencePiece model files of a tokenizer folder: one shared, or source and target."""
    return ["spm.model"] if joint else ["src.model", "tgt.model"]


def open_tokenizer(folder: Path, joint: bool) -> Tokenizer:
    """The tokenizer that ``build_tokenizer`` wrote into ``folder``."""
    names = model_names(joint)
    return Tokenizer(folder / names[0], folder / names[-1])
