"""``python -m seq2seq.translate checkpoint=PATH``: translate stdin or a file.

Writes exactly one line per input line, in order. From stdin, every line is
answered as soon as it arrives (lines that arrive together are translated as
one batch), so the command works both interactively and in a pipe.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from seq2seq.cli.files import check_output_file, open_output
from seq2seq.cli.loading import make_translator
from seq2seq.cli.runner import run
from seq2seq.data.reading import Lines
from seq2seq.errors import UserError
from seq2seq.inference.translator import clean_source, one_line

log = logging.getLogger("seq2seq.translate")


def stdin_chunks():
    """Yield lists of the complete lines that have arrived on stdin, as they arrive."""
    fd, pending = sys.stdin.fileno(), b""
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        if lines:
            yield lines
    if pending:
        yield [pending]


def file_chunks(path: str, size: int = 2000):
    """Yield lists of up to ``size`` lines (as bytes) of the file at ``path``, plain or .gz,
    read in blocks."""
    lines = Lines(Path(path), "input")
    try:
        while chunk := lines.take(size):
            yield chunk
    finally:
        lines.close()


def translate(cfg) -> None:
    """Translate ``cfg.input`` (or stdin) line by line into ``cfg.output`` (or stdout)."""
    check_output_file(cfg.output, "output", {"input": cfg.input})
    check_output_file(cfg.nbest_output, "nbest_output", {"input": cfg.input, "output": cfg.output})
    if cfg.input and not Path(cfg.input).is_file():
        raise UserError(f"input={cfg.input}: no such file")
    translator, _ = make_translator(cfg)
    attention_dir = Path(cfg.attention_dir) if cfg.attention_dir else None
    if attention_dir:
        if translator.model is None:
            raise UserError("attention_dir=: CTranslate2 draws no attention heatmaps; use engine=torch")
        try:
            attention_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"attention_dir={attention_dir}: cannot be created ({e.strerror})") from None
    chunks = file_chunks(cfg.input) if cfg.input else stdin_chunks()
    out = open_output(cfg.output, "output") if cfg.output else sys.stdout
    nbest = open_output(cfg.nbest_output, "nbest_output") if cfg.nbest_output else None
    line_no = 0
    try:
        for chunk in chunks:
            # Invalid bytes become U+FFFD; control characters other than TAB become spaces.
            texts = [b.decode("utf-8", errors="replace") for b in chunk]
            texts = [clean_source(t) for t in texts]
            results = translator.hypotheses(texts, first_line=line_no + 1)
            for i, hyps in enumerate(results):
                out.write(one_line(translator.tokenizer.decode_tgt(hyps[0].tokens)) + "\n")
                if nbest:
                    for h in hyps:
                        text = one_line(translator.tokenizer.decode_tgt(h.tokens))
                        nbest.write(f"{line_no + i + 1}\t{h.score:.4f}\t{text}\n")
            out.flush()
            if attention_dir:
                save_heatmaps(translator, texts, results, attention_dir, line_no)
            line_no += len(chunk)
    except BrokenPipeError:
        sys.stderr.close()
    finally:
        if out is not sys.stdout:
            out.close()
        if nbest:
            nbest.close()


def save_heatmaps(translator, texts, results, attention_dir: Path, first_line: int) -> None:
    """Save ``<line>.png`` for every non-empty input line (``first_line`` lines came before)."""
    # matplotlib and torch load only when attention_dir= asks for heatmaps (an export has none).
    import matplotlib.pyplot as plt

    from seq2seq.inference.heatmaps import attention_figures

    rows = [i for i, t in enumerate(texts) if t]
    if not rows:
        return
    src_ids = translator.encode([texts[i] for i in rows], warn=False)  # warned while translating
    out_ids = [results[i][0].tokens for i in rows]
    figures = attention_figures(translator.model, translator.tokenizer, src_ids, out_ids, translator.device)
    for i, fig in zip(rows, figures, strict=False):  # no figures for a model without attention weights
        fig.savefig(attention_dir / f"{first_line + i + 1}.png", dpi=100)
        plt.close(fig)


def main() -> None:
    """``python -m seq2seq.translate``: see the module's docstring."""
    run("translate", translate)


if __name__ == "__main__":
    main()
