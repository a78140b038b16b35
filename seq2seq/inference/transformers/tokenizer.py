"""The tokenizer of a transformers export: our SentencePiece model(s) as a ``MarianTokenizer``.

``MarianTokenizer`` runs SentencePiece itself (``source.spm``, ``target.spm``) and turns pieces
into ids through ``vocab.json`` (and ``target_vocab.json`` with two vocabularies,
``separate_vocabs``); written from our pieces in id order, these give the model's own ids. It
appends EOS to every input, as ``Tokenizer.encode_src`` does; the decoder starts from BOS
(``decoder_start_token_id``). ``split_special_tokens`` makes text such as ``</s>`` plain text,
as SentencePiece treats it. Marian's tokenizer reads one thing of its own: an input that starts
with ``>>xx<<`` loses that prefix (a language code in Marian's multilingual models).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID

SOURCE_SPM, TARGET_SPM = "source.spm", "target.spm"
VOCAB, TARGET_VOCAB = "vocab.json", "target_vocab.json"


def vocabulary(pieces: list[str]) -> dict[str, int]:
    """{piece: id} of a SentencePiece vocabulary listed in id order."""
    return {piece: i for i, piece in enumerate(pieces)}


def write_tokenizer(tokenizer: Tokenizer, folder: Path, max_positions: int | None) -> None:
    """Write ``tokenizer`` into ``folder`` as a ``MarianTokenizer`` (its files, then the
    ``tokenizer_config.json`` that ``save_pretrained`` writes for them)."""
    from transformers import MarianTokenizer  # optional and slow to import: only here

    (folder / SOURCE_SPM).write_bytes(tokenizer.models["src"])  # a checkpoint carries them (format 3)
    (folder / TARGET_SPM).write_bytes(tokenizer.models["tgt"])
    src = tokenizer.src_pieces(range(tokenizer.src_vocab_size))
    tgt = tokenizer.tgt_pieces(range(tokenizer.tgt_vocab_size))
    (folder / VOCAB).write_text(json.dumps(vocabulary(src), ensure_ascii=False, indent=1) + "\n")
    files = {"source_spm": str(folder / SOURCE_SPM), "target_spm": str(folder / TARGET_SPM)}
    files["vocab"] = str(folder / VOCAB)
    if not tokenizer.joint:
        (folder / TARGET_VOCAB).write_text(json.dumps(vocabulary(tgt), ensure_ascii=False, indent=1) + "\n")
        files["target_vocab_file"] = str(folder / TARGET_VOCAB)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses": it is never used
        marian = MarianTokenizer(
            **files,
            separate_vocabs=not tokenizer.joint,
            unk_token=tgt[UNK_ID],
            eos_token=tgt[EOS_ID],
            pad_token=tgt[PAD_ID],
            bos_token=tgt[BOS_ID],
            model_max_length=max_positions or 1_000_000,
            split_special_tokens=True,
        )
        marian.save_pretrained(str(folder))
