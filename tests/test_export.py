"""Export to CTranslate2 and decoding with it: parity with seq2seq's own search, the
command lines, and the refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("ctranslate2", reason="the optional CTranslate2 engine is not installed (.[serve])")

from seq2seq.checkpoints.loading import load_model
from seq2seq.config import compose  # noqa: E402
from seq2seq.decoding.common import max_output_length  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402
from seq2seq.evaluate import evaluate  # noqa: E402
from seq2seq.export import export  # noqa: E402
from seq2seq.inference.ctranslate2.engine import (
    WORKER_BATCH,
    CTranslate2Translator,
    open_ct2_translator,
    worker_batch,
)
from seq2seq.inference.ctranslate2.vocab_map import candidates, cooccurrences, training_pairs
from seq2seq.inference.torch_engine import TorchTranslator
from seq2seq.translate import translate  # noqa: E402

from .conftest import ROOT, assert_one_error, head, run_bench_decode, run_cli, tiny_overrides  # noqa: E402

SOURCES = [
    "Ein Mann fährt Fahrrad.",
    "Zwei Hunde spielen im Schnee neben einem großen roten Haus.",
    "",
    "Eine Frau liest ein Buch.",
    "Kinder.",
]


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory, trained_transformer):
    """Tiny trained runs: a pre-norm Transformer (joint vocabulary), a post-norm one with
    separate source and target vocabularies, and a GRU. {name: run directory}."""
    work = tmp_path_factory.mktemp("export")
    gru = [*tiny_overrides(tiny_corpus, "gru_bahdanau"), "trainer.max_steps=1", "trainer.samples=0"]
    run_cli("train", *gru, "hydra.run.dir=gru", cwd=work)
    return {
        "pre_norm": trained_transformer("pre_norm"),
        "post_norm": trained_transformer(
            "post_norm_two_vocabularies", "model.pre_norm=false", "data.tokenizer.joint=false"
        ),
        "gru": work / "gru",
    }


def exported(run, quantization="float32"):
    folder = run / f"export_{quantization}"
    if not folder.exists():
        run_cli(
            "export", f"checkpoint={run / 'checkpoints' / 'best.pt'}", f"output={folder}",
            f"quantization={quantization}", cwd=run,
        )  # fmt: skip
    return folder


def decoding(*overrides):
    return compose("translate", ["checkpoint=unused", "decoding.max_len_b=20", *overrides]).decoding


def ended_early(hyps, limit: int) -> bool:
    """Every hypothesis ended with EOS before the length limit (where the engines differ:
    seq2seq forces EOS as the last token, CTranslate2 ends on whatever token came)."""
    return all(len(h.tokens) + 1 < limit for h in hyps)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pre_norm", "post_norm"])
def test_float32_export_decodes_token_for_token_like_seq2seq(runs, tiny_corpus, name):
    model, tokenizer, _ = load_model(runs[name] / "checkpoints" / "best.pt")
    folder = exported(runs[name])
    sources = [*head(tiny_corpus["train.de"], 8), *SOURCES]  # training sentences: most end early
    source_ids = tokenizer.encode_src(sources)
    searches = {
        "greedy": ["decoding=greedy"],
        "beam": ["decoding.nbest=3"],  # the defaults: power length penalty, patience 2
        "beam, alpha 0": ["decoding.nbest=2", "decoding.alpha=0", "decoding.patience=0"],
        "beam, no repeats": ["decoding.beam_size=3", "decoding.alpha=0.6", "decoding.no_repeat_ngram_size=2"],
    }
    for search, overrides in searches.items():
        cfg = decoding(*overrides)
        limits = [
            max_output_length(len(r), cfg.max_len_a, cfg.max_len_b, model.max_positions) for r in source_ids
        ]
        ours = TorchTranslator(model, tokenizer, cfg, "cpu").hypotheses(sources)
        theirs = CTranslate2Translator(folder, cfg).hypotheses(sources)
        early = [
            i for i, (hyps, limit) in enumerate(zip(ours, limits, strict=True)) if ended_early(hyps, limit)
        ]
        assert len(early) >= len(sources) // 2, search
        if search == "greedy":  # up to the limit greedy is the same search, so every sentence agrees
            early = range(len(sources))
        for i in early:
            assert theirs[i][0].tokens == ours[i][0].tokens, (search, sources[i])
            if not ended_early(ours[i], limits[i]):
                continue
            assert theirs[i][0].score == pytest.approx(ours[i][0].score, abs=1e-3)
            # Below the best, CTranslate2 keeps the hypotheses finished when it stops, while
            # seq2seq searches on until no open one can enter the n-best: it finds each of
            # theirs, so ours are the same or score higher.
            for mine, other in zip(ours[i][1:], theirs[i][1:], strict=True):
                if mine.tokens != other.tokens:
                    assert mine.score > other.score, (search, sources[i])
                else:
                    assert mine.score == pytest.approx(other.score, abs=1e-3)


@pytest.mark.slow
def test_export_folder_holds_the_model_tokenizer_and_metadata(runs):
    for name, files in (("pre_norm", ["spm.model"]), ("post_norm", ["src.model", "tgt.model"])):
        folder = exported(runs[name])
        assert (folder / "model.bin").is_file() and (folder / "config.json").is_file()
        assert sorted(p.name for p in (folder / "tokenizer").iterdir()) == files
        meta = json.loads((folder / "seq2seq.json").read_text())
        assert meta["quantization"] == "float32" and meta["config"]["model"]["pre_norm"] == (
            name == "pre_norm"
        )
        vocabularies = sorted(p.name for p in folder.glob("*_vocabulary.json"))
        expected = ["shared_vocabulary.json"] if name == "pre_norm" else [
            "source_vocabulary.json", "target_vocabulary.json"
        ]  # fmt: skip
        assert vocabularies == expected
    assert not list(runs["pre_norm"].glob(".export*"))  # no partial folder left behind


@pytest.mark.slow
def test_int8_export_is_smaller_and_translates(runs, tmp_path):
    f32, int8 = exported(runs["pre_norm"]), exported(runs["pre_norm"], "int8")
    assert (int8 / "model.bin").stat().st_size < 0.6 * (f32 / "model.bin").stat().st_size
    proc = run_cli("translate", f"checkpoint={int8}", cwd=tmp_path, stdin="\n".join(SOURCES) + "\n")
    lines = proc.stdout.split("\n")[:-1]
    assert len(lines) == len(SOURCES) and lines[2] == ""  # one line out per line in


@pytest.mark.slow
def test_cpu_workers_share_every_batch_and_decode_as_one(runs, tiny_corpus):
    folder = exported(runs["pre_norm"])
    ct2 = open_ct2_translator(folder, num_threads=3)
    assert ct2.num_translators == 3  # one single-threaded worker per thread
    assert [worker_batch(ct2, n) for n in (1, 7, 500)] == [1, 3, WORKER_BATCH]
    sources = [*head(tiny_corpus["train.de"], 20), *SOURCES]
    cfg = decoding("decoding.nbest=2")
    one = CTranslate2Translator(folder, cfg, "cpu", num_threads=1).hypotheses(sources)
    three = CTranslate2Translator(folder, cfg, "cpu", num_threads=3).hypotheses(sources)
    assert [[h.tokens for h in hyps] for hyps in three] == [[h.tokens for h in hyps] for hyps in one]


@pytest.mark.slow
def test_bench_ct2_workers_times_every_setting(runs, tiny_corpus, tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_ct2_workers.py"
    src = tmp_path / "src.de"
    src.write_text("\n".join([*head(tiny_corpus["train.de"], 10), *SOURCES]) + "\n")
    args = [str(exported(runs["pre_norm"])), f"--src={src}", "--rounds=2", "--call=6"]
    settings = ["--setting", "2x1:4", "--setting", "1x2:0"]
    out = subprocess.run([sys.executable, str(script), *args, *settings], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [
        line.split(" | ")
        for line in out.stdout.splitlines()
        if line.startswith("| 2 ×") or line.startswith("| 1 ×")
    ]
    assert [r[:2] for r in rows] == [["| 2 × 1", "4"], ["| 1 × 2", "no split"]]
    for row in rows:  # two rounds, each a positive rate
        assert all(float(x) > 0 for x in row[2].rstrip(" |").split(" / ")) and row[2].count("/") == 1


@pytest.mark.slow
def test_translate_and_evaluate_run_an_export_like_a_checkpoint(runs, tmp_path):
    run = runs["pre_norm"]
    folder, best = exported(run), run / "checkpoints" / "best.pt"
    source = tmp_path / "in.de"
    source.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    outputs = {}
    for label, args in (
        ("torch", [f"checkpoint={best}"]),
        ("export", [f"checkpoint={folder}"]),
        ("converted", [f"checkpoint={best}", "engine=ctranslate2"]),
    ):
        out, nbest = tmp_path / f"{label}.en", tmp_path / f"{label}.nbest"
        run_cli(
            "translate", *args, f"input={source}", f"output={out}", "decoding.nbest=2",
            f"nbest_output={nbest}", "decoding.batch_size=2", cwd=tmp_path,
        )  # fmt: skip
        outputs[label] = (
            out.read_text(encoding="utf-8"),
            [r.split("\t")[2] for r in nbest.read_text().splitlines()],
        )
    assert outputs["export"] == outputs["converted"]  # the same engine, the same model
    for text, nbest in outputs.values():
        assert len(text.splitlines()) == len(SOURCES) and text.splitlines()[2] == ""
        assert len(nbest) == 2 * len(SOURCES) - 1  # the empty line has one (empty) hypothesis
    # Token-for-token parity with the torch engine is the test above; a tiny model's
    # outputs that run to the length limit end differently in the two engines.
    torch_lines, export_lines = outputs["torch"][0].splitlines(), outputs["export"][0].splitlines()
    assert sum(a == b for a, b in zip(torch_lines, export_lines, strict=True)) >= len(SOURCES) // 2

    proc = run_cli("evaluate", f"checkpoint={folder}", f"output={tmp_path}", cwd=tmp_path)
    assert "BLEU =" in proc.stdout
    metrics = json.loads((tmp_path / "export_float32.test.de.metrics.json").read_text())
    run_cli("evaluate", f"checkpoint={best}", "engine=ctranslate2", f"output={tmp_path}", cwd=tmp_path)
    assert metrics["bleu"] == json.loads((tmp_path / "best.test.de.metrics.json").read_text())["bleu"]


@pytest.mark.slow
def test_an_export_translates_without_importing_torch(runs, tmp_path):
    """The export path loads CTranslate2, SentencePiece and the config, not torch (about 2 s
    of every command's start-up)."""
    folder = exported(runs["pre_norm"])
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['translate', 'checkpoint={folder}']\n"
        "runpy.run_module('seq2seq.translate', run_name='__main__')\n"
        "print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], input="\n".join(SOURCES) + "\n", capture_output=True, text=True,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(SOURCES)
    assert "torch loaded: False" in proc.stderr


@pytest.mark.slow
def test_export_again_replaces_an_earlier_export(runs, tmp_path):
    best = runs["pre_norm"] / "checkpoints" / "best.pt"
    folder = tmp_path / "ct2"
    run_cli("export", f"checkpoint={best}", f"output={folder}", cwd=tmp_path)
    run_cli("export", f"checkpoint={best}", f"output={folder}", "quantization=int16", cwd=tmp_path)
    assert json.loads((folder / "seq2seq.json").read_text())["quantization"] == "int16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2"]


def refused(command: str, args: list[str], *fragments: str) -> None:
    """``command`` with ``args``, composed and run in-process, stops with a UserError naming
    ``fragments`` (the command line turns it into one ``error:`` line and exit 2)."""
    body = {"export": export, "translate": translate, "evaluate": evaluate}[command]
    with pytest.raises(UserError) as caught:
        body(compose(command, args))
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


@pytest.mark.slow
def test_export_refuses_bad_inputs(runs, tmp_path):
    best = runs["pre_norm"] / "checkpoints" / "best.pt"
    gru = runs["gru"] / "checkpoints" / "best.pt"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    cases = [
        ([f"checkpoint={gru}", f"output={tmp_path / 'g'}"], ["RecurrentEncoderDecoder", "Transformers only"]),
        ([f"checkpoint={best},{best}", f"output={tmp_path / 'e'}"], ["one checkpoint", "average"]),
        (
            [f"checkpoint={tmp_path / 'missing.pt'}", f"output={tmp_path / 'm'}"],
            ["missing.pt", "no such checkpoint"],
        ),
        ([f"checkpoint={best}", f"output={taken}"], ["not an export", "new folder"]),
        ([f"checkpoint={best}", f"output={tmp_path / 'no' / 'dir'}"], ["does not exist"]),
        (
            [f"checkpoint={best}", f"output={tmp_path / 'q'}", "quantization=int4"],
            ["quantization=int4", "int8"],
        ),
    ]
    for args, fragments in cases:
        refused("export", args, *fragments)
    proc = run_cli("export", f"checkpoint={gru}", f"output={tmp_path / 'g'}", cwd=tmp_path, check=False)
    assert_one_error(proc, "Transformers only")
    assert_one_error(run_cli("export", f"checkpoint={best}", cwd=tmp_path, check=False), "output is required")
    assert (taken / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.slow
def test_options_ctranslate2_cannot_honour_are_refused(runs, tmp_path):
    folder, best = exported(runs["pre_norm"]), runs["pre_norm"] / "checkpoints" / "best.pt"
    cases = [
        (["decoding.length_penalty=gnmt"], ["decoding.length_penalty=gnmt", "engine=torch"]),
        (["decoding.patience=0"], ["decoding.patience=0", "engine=torch"]),
        (["decoding.alpha=0"], ["decoding.patience=2.0", "patience=0"]),
        ([f"attention_dir={tmp_path / 'maps'}"], ["attention_dir", "engine=torch"]),
        (["engine=torch"], ["CTranslate2 export", "engine=ctranslate2"]),
    ]
    for args, fragments in cases:
        refused("translate", [f"checkpoint={folder}", f"input={best}", *args], *fragments)
    refused("translate", [f"checkpoint={best},{best}", "engine=ctranslate2"], "one model", "engine=torch")
    refused(
        "evaluate",
        [f"checkpoint={runs['gru'] / 'checkpoints' / 'best.pt'}", "engine=ctranslate2"],
        "Transformers only",
    )
    proc = run_cli(
        "translate",
        f"checkpoint={folder}",
        "decoding.length_penalty=gnmt",
        cwd=tmp_path,
        stdin="x\n",
        check=False,
    )
    assert_one_error(proc, "decoding.length_penalty=gnmt")
    assert not (tmp_path / "maps").exists()


def test_vocabulary_map_ranks_translations_above_frequent_pieces():
    # piece 4 always comes with 10; 11 is frequent everywhere; 3 (EOS) and 1 (unknown) are special
    src = [[4, 5, 3], [4, 6, 3], [7, 5, 3], [7, 6, 3]]
    tgt = [[10, 11, 1], [10, 11, 1], [12, 11, 1], [12, 11, 13, 1]]
    common, rules = candidates(src, tgt, src_size=8, tgt_size=14, per_piece=1, common=1)
    assert common == [11]  # not 1, which every sentence holds too
    assert rules[4] == [10] and rules[7] == [12]
    assert 3 not in rules and all(t >= 4 for targets in rules.values() for t in targets)
    _, rules = candidates(src, tgt, src_size=8, tgt_size=14, per_piece=3, common=0)
    assert rules[4] == [10, 11]  # only what was seen with it, best first
    src_count, tgt_count, pair_src, pair_tgt, pair_count = cooccurrences(src, tgt, 8, 14, chunk=3)
    assert src_count[4] == 2 and tgt_count[11] == 4
    pairs = zip(pair_src.tolist(), pair_tgt.tolist(), pair_count.tolist(), strict=True)
    counts = {(a, b): n for a, b, n in pairs}
    assert counts[5, 11] == 2 and (4, 12) not in counts
    assert counts[7, 12] == 2 and counts[6, 11] == 2  # sentences in both chunks of 3, added up
    assert candidates([[3]], [[1]], 8, 14) == ([], {})  # nothing but specials: an empty map


@pytest.mark.slow
def test_export_with_a_vocabulary_map_keeps_outputs_to_its_candidates(runs, tiny_corpus, tmp_path):
    run = runs["pre_norm"]
    best = run / "checkpoints" / "best.pt"
    _, tokenizer, _ = load_model(best)
    sources = [*head(tiny_corpus["train.de"], 6), *SOURCES]
    full, small = tmp_path / "full", tmp_path / "small"
    everything = f"vmap_common={tokenizer.tgt_vocab_size}"  # every piece seen in training
    run_cli("export", f"checkpoint={best}", f"output={full}", "vmap=true", everything, cwd=tmp_path)
    proc = run_cli(
        "export", f"checkpoint={best}", f"output={small}", "vmap=true", "vmap_common=5", "vmap_per_piece=2",
        cwd=tmp_path,
    )  # fmt: skip
    assert "learnt from 300 training pairs" in proc.stdout
    lines = (small / "vmap.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("\t") and len(lines[0].split()) == 5
    vocabulary = set(tokenizer.tgt_pieces(range(tokenizer.tgt_vocab_size)))
    rules = {}
    for line in lines[1:]:
        key, _, targets = line.partition("\t")
        assert key and 1 <= len(targets.split()) <= 2 and set(targets.split()) <= vocabulary
        rules[key] = set(targets.split())
    # Greedy search with every piece of the training targets a candidate: the same argmax at
    # every step. (Beam scores differ: CTranslate2 normalises over the candidates only.)
    greedy = decoding("decoding=greedy")
    plain = CTranslate2Translator(exported(run), greedy).hypotheses(sources)
    assert CTranslate2Translator(full, greedy).use_vmap
    assert not CTranslate2Translator(exported(run), greedy).use_vmap
    unchanged = CTranslate2Translator(full, greedy).hypotheses(sources)
    assert [h[0].tokens for h in unchanged] == [h[0].tokens for h in plain]
    mapped = CTranslate2Translator(small, decoding(), num_threads=1)
    for sentence in sources[:6]:  # one at a time: the candidates are those of its own pieces
        pieces = tokenizer.src.encode(sentence, out_type=str)
        allowed = set(lines[0].split()).union(*(rules.get(p, set()) for p in pieces))
        output = tokenizer.tgt_pieces(mapped.hypotheses([sentence])[0][0].tokens)
        assert set(output) <= allowed | {"<s>", "</s>", "<unk>"}, sentence


@pytest.mark.slow
def test_export_with_a_vocabulary_map_needs_the_training_data(runs, tmp_path):
    checkpoints = runs["pre_norm"] / "checkpoints"
    moved = checkpoints / "trained_elsewhere.pt"  # beside best.pt: the same run's tokenizer
    checkpoint = torch.load(checkpoints / "best.pt", weights_only=True)
    checkpoint["config"]["data"]["train"]["src"] = str(tmp_path / "gone.de.gz")
    torch.save(checkpoint, moved)
    try:
        args = [f"checkpoint={moved}", f"output={tmp_path / 'v'}", "vmap=true"]
        refused("export", args, "data.train.src", "gone.de.gz", "vmap=false")
    finally:
        moved.unlink()
    assert list(tmp_path.iterdir()) == []  # no partial export left


@pytest.mark.slow
def test_bench_decode_measures_an_export_with_a_vocabulary_map(runs, tiny_corpus, tmp_path):
    best = runs["pre_norm"] / "checkpoints" / "best.pt"
    engines = "--engines=torch,ct2_int8,ct2_int8_vmap"
    printed = run_bench_decode(best, tiny_corpus, tmp_path, engines, "--modes=beam")
    rows = [line for line in printed.splitlines() if "ct2_int8" in line and line.startswith("|")]
    assert len(rows) == 2 and any("ct2_int8_vmap" in row for row in rows), printed
    script = ROOT / "scripts" / "bench_decode.py"
    spec = importlib.util.spec_from_file_location("bench_decode", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    specs = [{"engine": "ct2_int8"}, {"engine": "ct2_int8_vmap"}]
    bench.make_exports(specs, tmp_path, best)
    assert [Path(s["export"]).name for s in specs] == ["int8", "int8_vmap"]
    assert (tmp_path / "int8_vmap" / "vmap.txt").is_file() and not (tmp_path / "int8" / "vmap.txt").exists()


def test_vocabulary_map_reads_line_aligned_training_pairs(tmp_path):
    src, tgt = tmp_path / "train.de", tmp_path / "train.en"
    src.write_text("a\nb\nc\n")
    tgt.write_text("x\ny\n")
    config = {"data": {"train": {"src": str(src), "tgt": str(tgt)}}}
    with pytest.raises(UserError, match="has 3 lines but .* has 2; source and target files must be"):
        training_pairs(config, 0)
    tgt.write_text("x\ny\nz\n")
    assert training_pairs(config, 2) == (["a", "b"], ["x", "y"])
    tgt.write_bytes(b"x\n\xff\nz\n")  # not UTF-8 on line 2
    with pytest.raises(UserError, match=r"train\.en:2: invalid UTF-8"):
        training_pairs(config, 0)
