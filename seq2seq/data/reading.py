"""Reading parallel text: plain or gzip files, UTF-8, one sentence per line.

``Lines`` streams a file in blocks and ``decode_lines`` checks and decodes them: corpus
preparation reads chunk by chunk (``pair_chunks``), ``read_lines`` a whole file, with the
same errors for a missing, unreadable or non-UTF-8 file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import NoReturn

from seq2seq.errors import UserError

CHUNK = 20_000  # lines read and decoded at a time (and pairs a preparation worker encodes)


def read_lines(path: str | Path, key: str = "the data.* paths") -> list[str]:
    """Read a text file (plain or ``.gz``) into a list of sentences.

    Surrounding whitespace is trimmed; whitespace inside a sentence (a TAB too)
    is kept as text. Raises ``UserError`` naming the file (and the line, for
    bad UTF-8) when the file cannot be read; ``key`` is the setting that named it.
    """
    path = Path(path)
    lines = Lines(path, key)
    out: list[str] = []
    try:
        while chunk := lines.take(CHUNK):
            out += decode_lines(chunk, path, len(out) + 1)
    finally:
        lines.close()
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


class Lines:
    """Lines of a plain or gzip text file, read in blocks and handed out in chunks.

    ``position`` is how far into the file (in bytes on disk) reading has come.
    """

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        if not path.is_file():
            raise UserError(f"{path}: no such file; check {key}")
        try:
            self.raw = open(path, "rb")
        except OSError as e:
            self._unreadable(e)
        self.stream = gzip.GzipFile(fileobj=self.raw) if path.suffix == ".gz" else self.raw
        self.pending = b""
        self.buffer: list[bytes] = []
        self.done = False

    def _unreadable(self, e: Exception) -> NoReturn:
        raise UserError(f"{self.path}: cannot be read ({e}); is it a valid text or .gz file?") from None

    @property
    def position(self) -> int:
        return self.raw.tell()

    def _fill(self) -> None:
        try:
            block = self.stream.read(1 << 22)
        except (OSError, EOFError, zlib.error) as e:
            self._unreadable(e)
        if not block:
            self.done = True
            if self.pending:
                self.buffer.append(self.pending)
                self.pending = b""
            return
        lines = (self.pending + block).split(b"\n")
        self.pending = lines.pop()
        self.buffer.extend(lines)

    def take(self, n: int) -> list[bytes]:
        """The next ``n`` lines (fewer at the end of the file)."""
        while len(self.buffer) < n and not self.done:
            self._fill()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def count_rest(self) -> int:
        """Read to the end, counting lines instead of keeping them."""
        total = len(self.buffer)
        self.buffer = []
        while not self.done:
            self._fill()
            total += len(self.buffer)
            self.buffer = []
        return total

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def pair_chunks(src_path: Path, tgt_path: Path, limit: int = 0, size: int = CHUNK, progress=None):
    """Yield (first line number, source lines, target lines) of up to ``size`` pairs, as
    bytes, until both files end (or ``limit`` pairs, when > 0). Raises ``UserError`` when
    the two files have different numbers of lines, naming both counts."""
    src, tgt = Lines(src_path, "data.train.src"), Lines(tgt_path, "data.train.tgt")
    total = src_path.stat().st_size + tgt_path.stat().st_size
    line = 1
    try:
        while True:
            n = size if not limit else min(size, limit - line + 1)
            if n <= 0:
                return
            a, b = src.take(n), tgt.take(n)
            if len(a) != len(b):
                count_a, count_b = line - 1 + len(a) + src.count_rest(), line - 1 + len(b) + tgt.count_rest()
                raise UserError(
                    f"{src_path} has {count_a} lines but {tgt_path} has {count_b}; "
                    "source and target files must be line-aligned"
                )
            if not a:
                return
            yield line, a, b
            line += len(a)
            if progress is not None:
                progress(src.position + tgt.position, total)
    finally:
        src.close()
        tgt.close()


def decode_lines(lines: list[bytes], path: Path, first_line: int) -> list[str]:
    """UTF-8 text of ``lines``, surrounding whitespace trimmed; a ``UserError`` names the
    file and line of the first line that is not UTF-8."""
    if not lines:
        return []
    try:
        text = b"\n".join(lines).decode("utf-8")
    except UnicodeDecodeError:
        for i, raw in enumerate(lines):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(
                    f"{path}:{first_line + i}: invalid UTF-8 at byte {e.start}; convert the file to UTF-8"
                ) from None
        raise
    return [line.strip() for line in text.split("\n")]
