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
import re
from pathlib import Path

import sentencepiece as spm

from seq2seq.errors import UserError
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

TAG = re.compile(r"<2([A-Za-z][A-Za-z0-9_-]*)>")  # a target-language tag: <2en>


def target_tag(lang: str) -> str:
    """The piece that asks a multilingual model for target language ``lang``: ``<2lang>``."""
    return f"<2{lang}>"


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Tokenizer:
    """Source and target SentencePiece models (the same object when joint), read from files
    (``Tokenizer(src_file, tgt_file)``) or from the bytes a checkpoint carries (``from_bytes``).

    ``models`` holds each side's serialized model (``"src"``, ``"tgt"``: bytes, the same when
    joint) and ``names`` its file name (``spm.model``, or ``src.model`` and ``tgt.model``), so
    that either kind can be written out again (``copy_to``); ``src_path``/``tgt_path`` are the
    files it was read from (None for one read from bytes).
    """

    def __init__(self, src_model: str | Path, tgt_model: str | Path):
        self.src_path, self.tgt_path = Path(src_model), Path(tgt_model)
        paths = {"src": self.src_path, "tgt": self.tgt_path}
        models = {role: self._read(path) for role, path in paths.items()}
        self._setup(models, {role: path.name for role, path in paths.items()}, paths)

    @classmethod
    def from_bytes(
        cls, models: dict[str, bytes], names: dict[str, str], sha256: dict[str, str], owner
    ) -> Tokenizer:
        """The tokenizer of serialized models (``{"src": bytes, "tgt": bytes}``, joint when both
        ``names`` are one file), checked against their ``sha256``; errors name ``owner``."""
        for role, data in models.items():
            if hashlib.sha256(data).hexdigest() != sha256[role]:
                raise UserError(
                    f"{owner}: the tokenizer it carries ({names[role]}) does not match its hash; "
                    "the file is damaged, copy it again"
                )
        tokenizer = cls.__new__(cls)
        tokenizer.src_path = tokenizer.tgt_path = None
        tokenizer._setup(models, names, {role: f"{owner} ({name})" for role, name in names.items()})
        return tokenizer

    def _setup(self, models: dict[str, bytes], names: dict[str, str], where: dict) -> None:
        self.models, self.names = models, names
        self.src = self._load(models["src"], where["src"])
        self.tgt = self.src if names["src"] == names["tgt"] else self._load(models["tgt"], where["tgt"])

    @staticmethod
    def _read(path: Path) -> bytes:
        if not path.is_file():
            raise UserError(
                f"{path}: tokenizer model not found; it belongs in the run directory's tokenizer/"
            )
        return path.read_bytes()

    @staticmethod
    def _load(data: bytes, where) -> spm.SentencePieceProcessor:
        try:
            return spm.SentencePieceProcessor(model_proto=data)
        except (OSError, RuntimeError):
            raise UserError(f"{where}: not a SentencePiece model; retrain or restore the tokenizer") from None

    @property
    def sha256(self) -> dict[str, str]:
        """The sha256 of each side's model bytes: {"src": ..., "tgt": ...}."""
        return {role: hashlib.sha256(data).hexdigest() for role, data in self.models.items()}

    @property
    def joint(self) -> bool:
        return self.src is self.tgt

    @property
    def target_tags(self) -> dict[str, int]:
        """Target language -> the id of its ``<2xx>`` tag, a user-defined piece of the source
        model that a multilingual model's sources start with; {} for a bilingual model."""
        if not hasattr(self, "_tags"):
            self._tags = {}
            for i in range(self.src.get_piece_size()):
                match = TAG.fullmatch(self.src.id_to_piece(i))
                if match:
                    self._tags[match.group(1)] = i
        return self._tags

    def source_prefix(self, tgt_lang: str | None, key: str = "tgt_lang") -> list[int]:
        """The ids put before every source for ``tgt_lang``: its tag when the model has
        several target languages (then ``tgt_lang`` is required), else none (then it is
        refused); one ``UserError`` naming ``key`` otherwise."""
        tags = self.target_tags
        if not tags:
            if tgt_lang is None:
                return []
            raise UserError(
                f"{key}={tgt_lang}: this model translates into one language only; leave {key} out"
            )
        if tgt_lang is None:
            raise UserError(
                f"{key} is required: this model translates into {', '.join(sorted(tags))}; add {key}=LANG"
            )
        if tgt_lang not in tags:
            raise UserError(f"{key}={tgt_lang}: this model translates into {', '.join(sorted(tags))} only")
        return [tags[tgt_lang]]

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
        """Write the models into ``folder`` (made if missing; a run directory's or an export's
        ``tokenizer/``) under their own names; returns the tokenizer of the files written."""
        folder.mkdir(parents=True, exist_ok=True)
        for role in ("src", "tgt"):
            (folder / self.names[role]).write_bytes(self.models[role])
        return Tokenizer(folder / self.names["src"], folder / self.names["tgt"])


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
    sentences: list[str],
    vocab_size: int,
    model_type: str,
    coverage: float,
    threads: int,
    out: Path,
    symbols: list[str] | None = None,
) -> None:
    """Train a SentencePiece model on ``sentences`` with the project's special ids and write it to
    ``out``; ``symbols`` (target-language tags) become user-defined pieces, never split."""
    buffer = io.BytesIO()
    extra = {"user_defined_symbols": list(symbols)} if symbols else {}
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
            **extra,
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
