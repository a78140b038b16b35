"""``python -m seq2seq.evaluate checkpoint=PATH``: sacreBLEU scores of a checkpoint (or of an
ensemble, ``checkpoint=a.pt,b.pt``).

Translates the test split the model was trained with (or ``src=FILE
ref=FILE``), prints BLEU and chrF with their signatures, and writes the
hypotheses and a metrics JSON next to the checkpoint (or into ``output=DIR``). A line
(and the JSON's ``lineage``) says where the weights come from: the checkpoints a
fine-tune started from (``trainer.init_from``), nearest first.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from seq2seq.checkpoints.lineage import describe
from seq2seq.cli.files import checkpoint_paths
from seq2seq.cli.loading import lineages, make_translator
from seq2seq.cli.runner import run
from seq2seq.data.reading import read_lines
from seq2seq.errors import UserError

log = logging.getLogger("seq2seq.evaluate")


def score(hypotheses: list[str], references: list[str]) -> dict:
    """sacreBLEU BLEU and chrF of detokenised, cased text, with signatures."""
    bleu, chrf = BLEU(), CHRF()
    b, c = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(b.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "bleu_detail": str(b),
        "chrf": round(c.score, 2),
        "chrf_signature": str(chrf.get_signature()),
    }


def test_split(data: dict, tgt_lang: str | None) -> dict:
    """The test split a model was trained with: ``data.test``, or with ``data.corpora`` the
    ``test`` of the one corpus into ``tgt_lang`` that has one (else one line asking for
    ``src=``/``ref=``)."""
    corpora = data.get("corpora") or {}
    if not corpora:
        return data["test"]
    into = {name: e for name, e in corpora.items() if e.get("test") and tgt_lang in (None, e["tgt_lang"])}
    if len(into) != 1:
        which = f" into {tgt_lang}" if tgt_lang else ""
        named = f"several ({', '.join(into)})" if into else "none"
        raise UserError(
            f"give src=FILE and ref=FILE: of the model's training corpora, {named} has a test split{which}"
        )
    return next(iter(into.values()))["test"]


def evaluate(cfg) -> dict:
    """Translate and score the test split (or ``src=``/``ref=``); print and save the metrics."""
    if (cfg.src is None) != (cfg.ref is None):
        raise UserError("give both src=FILE and ref=FILE, or neither to use the test split")
    translator, train_cfg = make_translator(cfg)
    test = test_split(train_cfg["data"], cfg.tgt_lang) if cfg.src is None else {}
    src_path, ref_path = cfg.src or test["src"], cfg.ref or test["tgt"]
    src_key = "src=" if cfg.src else "src= (the checkpoint's data.test.src is not there)"
    ref_key = "ref=" if cfg.ref else "ref= (the checkpoint's data.test.tgt is not there)"
    sources, references = read_lines(src_path, src_key), read_lines(ref_path, ref_key)
    if len(sources) != len(references):
        raise UserError(f"{src_path} has {len(sources)} lines but {ref_path} has {len(references)}")
    start = time.time()
    hypotheses = translator(sources)
    seconds = time.time() - start
    metrics = score(hypotheses, references)
    metrics.update(
        checkpoint=str(cfg.checkpoint),
        src=str(src_path),
        ref=str(ref_path),
        tgt_lang=cfg.tgt_lang,
        sentences=len(sources),
        decoding=dict(cfg.decoding),
        seconds=round(seconds, 1),
        lineage=lineages(cfg.checkpoint),
    )
    checkpoints = [Path(p) for p in checkpoint_paths(cfg.checkpoint)]  # an ensemble: several
    out_dir = Path(cfg.output) if cfg.output else checkpoints[0].parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{'+'.join(p.stem for p in checkpoints)}.{Path(src_path).name.removesuffix('.gz')}"
    (out_dir / f"{stem}.hyp").write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    (out_dir / f"{stem}.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"BLEU = {metrics['bleu']:.2f}  {metrics['bleu_signature']}")
    print(f"chrF = {metrics['chrf']:.2f}  {metrics['chrf_signature']}")
    print(metrics["bleu_detail"])
    for path, chain in metrics["lineage"].items():
        print(describe(path, chain))
    log.info(
        "%d sentences in %.1f s; hypotheses and metrics in %s/%s.*", len(sources), seconds, out_dir, stem
    )
    return metrics


def main() -> None:
    """``python -m seq2seq.evaluate``: see the module's docstring."""
    run("evaluate", evaluate)


if __name__ == "__main__":
    main()
