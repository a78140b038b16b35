"""A vocabulary map: the target pieces each source piece is likely to bring.

CTranslate2 can score only a part of the target vocabulary (``use_vmap``): for every
batch, the union of the candidates of its source pieces, plus the common pieces that are
always candidates. At the Transformer preset's size the output layer holds about 40% of a
decoder step's multiply-adds (256 x 8,000, against about 0.9M in each of 3 layers), so a map
of a few thousand candidates decodes faster; a piece that is not a candidate cannot be
produced, so the map trades a little BLEU for speed (docs/BENCHMARKS.md measures both).

The map is learnt from a parallel corpus by counting, for every source piece ``s`` and
target piece ``t``, the sentence pairs that hold both. Each source piece keeps its
``per_piece`` targets of highest Dice coefficient, ``2 c(s, t) / (c(s) + c(t))``, which
favours real translations over pieces that are merely frequent; the ``common`` most
frequent target pieces are candidates for every sentence.

File format (CTranslate2's ``vmap.txt``): one line per source piece,
``piece<TAB>target target ...``; the line with an empty key lists the common pieces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seq2seq.data.reading import decode_lines, pair_chunks
from seq2seq.errors import UserError
from seq2seq.inference.ctranslate2.format import VMAP_FILE
from seq2seq.special import SPECIAL_IDS


def cooccurrences(
    src: list[list[int]], tgt: list[list[int]], src_size: int, tgt_size: int, chunk: int = 20_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sentence counts of pieces and of pairs of pieces.

    Args:
        src, tgt: line-aligned sentences as piece ids.
        src_size, tgt_size: the vocabulary sizes.
    Returns:
        ``src_count`` (src_size,), ``tgt_count`` (tgt_size,): sentences holding each piece;
        ``pair_src``, ``pair_tgt``, ``pair_count`` (P,): every pair seen, and in how many
        sentence pairs.
    """
    src_count = np.zeros(src_size, dtype=np.int64)
    tgt_count = np.zeros(tgt_size, dtype=np.int64)
    chunk_keys, chunk_counts = [], []  # each chunk's distinct pairs, merged once at the end
    for start in range(0, len(src), chunk):
        parts = []
        for s, t in zip(src[start : start + chunk], tgt[start : start + chunk], strict=True):
            s_set, t_set = np.unique(np.asarray(s, dtype=np.int64)), np.unique(np.asarray(t, dtype=np.int64))
            src_count[s_set] += 1
            tgt_count[t_set] += 1
            parts.append((s_set[:, None] * tgt_size + t_set[None, :]).ravel())  # (|S| * |T|,)
        if parts:
            found, n = np.unique(np.concatenate(parts), return_counts=True)
            chunk_keys.append(found)
            chunk_counts.append(n)
    if not chunk_keys:
        keys = counts = np.empty(0, dtype=np.int64)
    else:
        keys, inverse = np.unique(np.concatenate(chunk_keys), return_inverse=True)
        counts = np.zeros(len(keys), dtype=np.int64)
        np.add.at(counts, inverse, np.concatenate(chunk_counts))
    return src_count, tgt_count, keys // tgt_size, keys % tgt_size, counts


def candidates(
    src: list[list[int]],
    tgt: list[list[int]],
    src_size: int,
    tgt_size: int,
    per_piece: int = 50,
    common: int = 500,
) -> tuple[list[int], dict[int, list[int]]]:
    """The common target pieces, and each source piece's ``per_piece`` best targets.

    Special pieces are left out: CTranslate2 adds BOS, EOS and unknown itself, and padding is
    never an output.
    Returns ``(common_ids, {source id: [target ids, best first]})``.
    """
    src_count, tgt_count, pair_src, pair_tgt, pair_count = cooccurrences(src, tgt, src_size, tgt_size)
    special = np.asarray(sorted(SPECIAL_IDS))
    keep = ~np.isin(pair_src, special) & ~np.isin(pair_tgt, special)
    pair_src, pair_tgt, pair_count = pair_src[keep], pair_tgt[keep], pair_count[keep]
    frequent = np.argsort(-tgt_count, kind="stable")
    frequent = frequent[~np.isin(frequent, special) & (tgt_count[frequent] > 0)][:common].tolist()
    if len(pair_src) == 0:
        return frequent, {}
    dice = 2 * pair_count / (src_count[pair_src] + tgt_count[pair_tgt])
    order = np.lexsort((pair_tgt, -dice, pair_src))  # by source, then best first
    pair_src, pair_tgt = pair_src[order], pair_tgt[order]
    starts = np.flatnonzero(np.r_[True, pair_src[1:] != pair_src[:-1]])
    ends = np.r_[starts[1:], len(pair_src)]
    rules = {
        int(pair_src[a]): pair_tgt[a : min(b, a + per_piece)].tolist()
        for a, b in zip(starts, ends, strict=True)
    }
    return frequent, rules


def vmap_lines(common: list[int], rules: dict[int, list[int]], src_pieces, tgt_pieces) -> list[str]:
    """CTranslate2's ``vmap.txt`` lines; ``src_pieces``/``tgt_pieces`` turn ids into pieces."""
    lines = ["\t" + " ".join(tgt_pieces(common))]
    for s in sorted(rules):
        lines.append(src_pieces([s])[0] + "\t" + " ".join(tgt_pieces(rules[s])))
    return lines


def training_pairs(config: dict, max_lines: int) -> tuple[list[str], list[str]]:
    """The first ``max_lines`` (0: all) training pairs named in a run's ``config``, streamed and
    checked as a corpus is prepared (``pair_chunks``: line-aligned files, UTF-8)."""
    if config["data"].get("corpora"):
        raise UserError(
            "vmap=true: the checkpoint was trained on data.corpora (several corpora), from which no "
            "vocabulary map is learnt; use vmap=false"
        )
    train = {side: Path(config["data"]["train"][side]) for side in ("src", "tgt")}
    for side, path in train.items():
        if not path.is_file():
            raise UserError(
                f"data.train.{side}={path}: no such file; vmap=true reads the checkpoint's training "
                "data: export where they are, or vmap=false"
            )
    src, tgt = [], []
    for first, src_chunk, tgt_chunk in pair_chunks(train["src"], train["tgt"], limit=max_lines):
        src += decode_lines(src_chunk, train["src"], first)
        tgt += decode_lines(tgt_chunk, train["tgt"], first)
    return src, tgt


def write_vmap(
    tokenizer, pairs: tuple[list[str], list[str]], folder: Path, per_piece: int, common: int
) -> None:
    """Learn a map from ``pairs`` (source and target sentences) and write ``folder/vmap.txt``."""
    src, tgt = tokenizer.encode_src(pairs[0]), tokenizer.encode_tgt(pairs[1])
    common_ids, rules = candidates(
        src, tgt, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, per_piece, common
    )
    lines = vmap_lines(common_ids, rules, tokenizer.src_pieces, tokenizer.tgt_pieces)
    (folder / VMAP_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
