"""Reading parallel text: plain or gzip files, UTF-8, one sentence per line."""

from __future__ import annotations

import gzip
from pathlib import Path

from seq2seq.errors import UserError


def read_lines(path: str | Path, key: str = "the data.* paths") -> list[str]:
    """Read a text file (plain or ``.gz``) into a list of sentences.

    Surrounding whitespace is trimmed; whitespace inside a sentence (a TAB too)
    is kept as text. Raises ``UserError`` naming the file (and the line, for
    bad UTF-8) when the file cannot be read; ``key`` is the setting that named it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check {key}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot be read ({e}); is it a valid text or .gz file?") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(
                f"{path}:{number}: invalid UTF-8 at byte {e.start}; convert the file to UTF-8"
            ) from None
        out.append(text.strip())
    return out


def read_parallel(
    src_path: str | Path, tgt_path: str | Path, key: str = "data.*"
) -> tuple[list[str], list[str]]:
    """Read two line-aligned files; both must have the same number of lines. ``key``
    is the setting that named them (``data.train`` gives data.train.src and .tgt)."""
    src, tgt = read_lines(src_path, f"{key}.src"), read_lines(tgt_path, f"{key}.tgt")
    if len(src) != len(tgt):
        raise UserError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            "source and target files must be line-aligned"
        )
    if not src:
        raise UserError(f"{src_path}: the corpus is empty; give files with at least one sentence pair")
    return src, tgt
