"""SentencePiece tokenization: the models of a run, and training them.

One joint vocabulary is the default (``data.tokenizer.joint=true``: the source
and target share ``spm.model``); with ``joint=false`` the source and target get
``src.model`` and ``tgt.model``. Special ids come from ``seq2seq.special``. The
models are trained when a corpus is prepared (``seq2seq/data/preparation.py``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from pathlib import Path

import sentencepiece as spm

from seq2seq.errors import UserError
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
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

    def copy_to(self, folder: Path) -> Tokenizer:
        """Copy the model files into ``folder`` (made if missing; a run directory's or an
        export's ``tokenizer/``) under their own names; returns the tokenizer of the copies."""
        folder.mkdir(parents=True, exist_ok=True)
        for path in {self.src_path, self.tgt_path}:
            shutil.copyfile(path, folder / path.name)
        return Tokenizer(folder / self.src_path.name, folder / self.tgt_path.name)


def tokenizer_reference(tokenizer: Tokenizer, run_dir: Path) -> dict:
    """What a checkpoint stores about its tokenizer: files relative to the run directory and hashes."""
    files = {
        role: str(p.relative_to(run_dir))
        for role, p in (("src", tokenizer.src_path), ("tgt", tokenizer.tgt_path))
    }
    return {"files": files, "sha256": {role: file_sha256(run_dir / f) for role, f in files.items()}}


def referenced_tokenizer(ref: dict, base: Path, owner: Path) -> Tokenizer:
    """The tokenizer of a ``tokenizer_reference`` whose files are relative to ``base``,
    checked against its hashes; errors name ``owner`` (a checkpoint, an export)."""
    files = {role: base / f for role, f in ref["files"].items()}
    for role, f in files.items():
        if not f.is_file():
            raise UserError(f"{f}: tokenizer of {owner} is missing; restore its tokenizer/ folder")
        if file_sha256(f) != ref["sha256"][role]:
            raise UserError(f"{f}: this is not the tokenizer {owner} was made with (hash differs)")
    return Tokenizer(files["src"], files["tgt"])


def train_sentencepiece(
    sentences: list[str], vocab_size: int, model_type: str, coverage: float, threads: int, out: Path
) -> None:
    """Train a SentencePiece model on ``sentences`` with the project's special ids and write it to ``out``."""
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
            input_sentence_size=0,  # the caller's sample is all it sees
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        reason = str(e).split("] ")[-1].strip()  # SentencePiece's message, without its source location
        raise UserError(f"SentencePiece training failed: {reason} (set data.tokenizer.vocab_size)") from None
    out.write_bytes(buffer.getvalue())


def model_names(joint: bool) -> list[str]:
    """The SentencePiece model files of a tokenizer folder: one shared, or source and target."""
    return ["spm.model"] if joint else ["src.model", "tgt.model"]


def open_tokenizer(folder: Path, joint: bool) -> Tokenizer:
    """The tokenizer whose models are in ``folder`` (a prepared corpus, a run's ``tokenizer/``)."""
    names = model_names(joint)
    return Tokenizer(folder / names[0], folder / names[-1])
