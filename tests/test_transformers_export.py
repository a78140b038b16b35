"""Export to Hugging Face transformers (``export format=transformers``): the stock class computes
our function (logits within 1e-4, greedy ``generate()`` token for token), the tokenizer gives our
ids, the folder loads offline, and the refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed (.[hf] or .[dev])")

from seq2seq.checkpoints.loading import load_model  # noqa: E402
from seq2seq.config import compose  # noqa: E402
from seq2seq.data.collate import collate  # noqa: E402
from seq2seq.decoding.common import max_output_length  # noqa: E402
from seq2seq.decoding.greedy import greedy_search  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402
from seq2seq.evaluate import evaluate  # noqa: E402
from seq2seq.export import export  # noqa: E402
from seq2seq.inference.transformers.architecture import (  # noqa: E402
    POST_NORM,
    PRE_NORM,
    halves,
    hf_config,
    hf_state_dict,
)
from seq2seq.inference.transformers.convert import generation_settings  # noqa: E402
from seq2seq.inference.transformers.engine import TransformersTranslator  # noqa: E402
from seq2seq.inference.transformers.format import META  # noqa: E402
from seq2seq.models import Transformer  # noqa: E402
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID  # noqa: E402
from seq2seq.translate import translate  # noqa: E402

from .conftest import assert_one_error, head, run_bench_decode, run_cli  # noqa: E402

OLD = Path(__file__).resolve().parent / "fixtures" / "format2"
SOURCES = [
    "Ein Mann fährt Fahrrad.",
    "Zwei Hunde spielen im Schnee neben einem großen roten Haus.",
    "Eine Frau liest ein Buch.",
    "Kinder.",
]
# Text that tokenizers like to treat specially: control pieces, bytes outside the vocabulary,
# a Marian language code in the middle, spaces.
ODD = ["Eine Frau </s> liest <s> ein <pad> Buch.", "ß ÿ 漢字 🙂 a >>de<< b", "  zwei   Leerzeichen  ", ""]


def build(pre_norm: bool, joint: bool, tied: bool, src_vocab: int = 50, tgt_vocab: int = 50) -> Transformer:
    """A random Transformer whose LayerNorms are not the identity, in eval mode."""
    torch.manual_seed(0)
    model = Transformer(
        src_vocab, tgt_vocab, shared_vocab=joint, d_model=32, heads=4, encoder_layers=2, decoder_layers=2,
        ffn_dim=64, pre_norm=pre_norm, tie_embeddings=tied,
    )  # fmt: skip
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def in_memory(model: Transformer):
    """The stock model of ``hf_config`` with ``hf_state_dict`` loaded (nothing written)."""
    name, kwargs = hf_config(model)
    config = (transformers.PegasusConfig if name == PRE_NORM else transformers.MarianConfig)(**kwargs)
    hf = getattr(transformers, name)(config)
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    assert not missing and not unexpected
    return hf.eval()


def padded_batch(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows])  # (B, T)


def assert_same_logits(model, hf, src: torch.Tensor, tgt_in: torch.Tensor, vocab: int) -> None:
    """Teacher-forced logits of the real target positions agree within 1e-4."""
    with torch.no_grad():
        ours = model.project(model.features(src, (src != PAD_ID).sum(1), tgt_in))  # (B, T, V)
        theirs = hf(
            input_ids=src,
            attention_mask=(src != PAD_ID).long(),
            decoder_input_ids=tgt_in,
            decoder_attention_mask=(tgt_in != PAD_ID).long(),
        ).logits  # (B, T, V') with V' >= V: Pegasus's padding ids are -inf
    real = tgt_in != PAD_ID
    real[:, 0] = True  # BOS
    assert theirs.shape[:2] == ours.shape[:2]
    assert torch.all(theirs[..., vocab:] == float("-inf"))
    assert (ours - theirs[..., :vocab])[real].abs().max().item() < 1e-4


LAYOUTS = [
    (pre_norm, joint, tied, sizes)
    for pre_norm in (True, False)
    for joint, sizes in ((True, (50, 50)), (False, (50, 60)), (False, (70, 60)))
    for tied in (True, False)
]


@pytest.mark.parametrize("pre_norm, joint, tied, sizes", LAYOUTS)
def test_every_layout_computes_our_logits_in_a_stock_class(pre_norm, joint, tied, sizes):
    model = build(pre_norm, joint, tied, *sizes)
    hf = in_memory(model)
    assert type(hf).__name__ == (PRE_NORM if pre_norm else POST_NORM)
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(EOS_ID + 1, sizes[0], (3, 9), generator=gen)
    src[:, -1], src[1, 5:], src[1, 4] = EOS_ID, PAD_ID, EOS_ID  # row 1 is shorter
    tgt = torch.randint(EOS_ID + 1, sizes[1], (3, 7), generator=gen)
    tgt[:, 0], tgt[2, 4:] = BOS_ID, PAD_ID
    assert_same_logits(model, hf, src, tgt, sizes[1])
    # one step at a time through transformers' cache, as generate() runs it: at most 8 tokens,
    # the 8th forced to EOS in both
    greedy = greedy_search(model, src, (src != PAD_ID).sum(1), max_len_a=0, max_len_b=8)
    out = hf.generate(
        input_ids=src, attention_mask=(src != PAD_ID).long(), num_beams=1, do_sample=False, max_new_tokens=8,
        decoder_start_token_id=BOS_ID, eos_token_id=EOS_ID, forced_eos_token_id=EOS_ID, pad_token_id=PAD_ID,
    )  # fmt: skip
    for row, hyps in zip(out[:, 1:].tolist(), greedy, strict=True):
        tokens = hyps[0].tokens
        assert row[: len(tokens) + 1] == [*tokens, EOS_ID]


def test_the_permutation_turns_our_positions_into_transformers_sinusoids():
    from transformers.models.pegasus.modeling_pegasus import PegasusSinusoidalPositionalEmbedding

    model = build(True, True, True)
    table = PegasusSinusoidalPositionalEmbedding(model.max_positions, model.d_model).create_weight()
    assert (model.positions[:, halves(model.d_model)] - table).abs().max().item() < 1e-5
    assert halves(6).tolist() == [0, 2, 4, 1, 3, 5]


def decoding(*overrides):
    return compose("export", ["checkpoint=x", "output=y", *overrides]).decoding


def test_generation_settings_carry_what_transformers_has():
    beam, dropped = generation_settings(dict(decoding()), 256)  # translate's default search
    assert beam["num_beams"] == 5 and beam["length_penalty"] == 1.0 and beam["early_stopping"] is False
    assert beam["decoder_start_token_id"] == BOS_ID and beam["eos_token_id"] == EOS_ID
    assert beam["forced_eos_token_id"] == EOS_ID and beam["pad_token_id"] == PAD_ID
    assert beam["max_length"] == 257  # the decoder start and at most max_positions tokens
    assert dropped == ["max_len_a=1.5", "max_len_b=10", "patience=2.0"]
    greedy, dropped = generation_settings(dict(decoding("decoding=greedy")), 256)
    assert greedy["num_beams"] == 1 and not greedy["do_sample"] and "length_penalty" not in greedy
    assert dropped == ["max_len_a=1.5", "max_len_b=10"]
    exact, dropped = generation_settings(
        dict(decoding("decoding.patience=0", "decoding.no_repeat_ngram_size=3", "decoding.alpha=0.6")), 256
    )
    assert exact["early_stopping"] == "never" and exact["no_repeat_ngram_size"] == 3
    assert exact["length_penalty"] == 0.6 and "patience=0.0" not in dropped
    assert generation_settings(dict(decoding("decoding.patience=1")), 256)[0]["early_stopping"] is True
    sample, dropped = generation_settings(
        dict(decoding("decoding=sample", "decoding.top_p=0.9", "decoding.seed=4")), 256
    )
    assert sample["do_sample"] and sample["top_p"] == 0.9 and "seed=4" in dropped
    gnmt = generation_settings(dict(decoding("decoding.length_penalty=gnmt")), 256)[1]
    assert "length_penalty=gnmt" in gnmt


def export_to(checkpoint: Path, folder: Path, *overrides: str) -> Path:
    export(
        compose("export", [f"checkpoint={checkpoint}", f"output={folder}", "format=transformers", *overrides])
    )
    return folder


def load(folder: Path):
    """Model and tokenizer as a user loads them; ``local_files_only``: nothing is downloaded."""
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(folder), local_files_only=True).eval()
    return model, transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def assert_export_is_exact(checkpoint: Path, folder: Path, sources: list[str], targets: list[str]) -> None:
    """The folder's tokenizer gives our ids, its model our logits and our greedy output."""
    model, tokenizer, _ = load_model(checkpoint)
    hf, tok = load(folder)
    assert type(hf).__name__ == (PRE_NORM if model.encoder[0].pre_norm else POST_NORM)
    assert type(tok).__name__ == "MarianTokenizer"
    texts = [*sources, *ODD]
    assert tok(texts)["input_ids"] == tokenizer.encode_src(texts)
    target_ids = tokenizer.encode_tgt(targets)
    assert tok(text_target=targets)["input_ids"] == [t + [EOS_ID] for t in target_ids]
    decoded = tok.batch_decode([t + [EOS_ID] for t in target_ids], skip_special_tokens=True)
    assert decoded == [tokenizer.decode_tgt(t) for t in target_ids]
    # teacher forced: a batch of sentences, padded on both sides
    src = padded_batch(tokenizer.encode_src(sources))
    tgt_in = padded_batch([[BOS_ID, *t] for t in target_ids])
    assert_same_logits(model, hf, src, tgt_in, tokenizer.tgt_vocab_size)
    # greedy generate() with our length limit, one sentence at a time: token for token
    cfg = decoding("decoding=greedy")
    for ids in tokenizer.encode_src(sources):
        limit = max_output_length(len(ids), cfg.max_len_a, cfg.max_len_b, model.max_positions)
        batch = collate([ids])
        ours = greedy_search(model, batch.src, batch.src_lengths, cfg.max_len_a, cfg.max_len_b)[0][0].tokens
        out = hf.generate(input_ids=batch.src, num_beams=1, do_sample=False, max_new_tokens=limit)[0].tolist()
        assert out[0] == BOS_ID and out[-1] == EOS_ID
        assert out[1:-1] == ours, tok.decode(ids)


def test_an_old_checkpoint_exports_exactly(tmp_path):
    """The Transformer of tests/fixtures/format2 (seq2seq 0.1.0, barely trained)."""
    checkpoint = OLD / "transformer" / "checkpoints" / "last.pt"
    folder = export_to(checkpoint, tmp_path / "hf")
    sources = (OLD / "corpus" / "test.de").read_text().splitlines()[:6]
    targets = (OLD / "corpus" / "train.en").read_text().splitlines()[:6]
    assert_export_is_exact(checkpoint, folder, sources, targets)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([
        "config.json", "generation_config.json", "model.safetensors", META, "source.spm", "target.spm",
        "tokenizer_config.json", "vocab.json",
    ])  # fmt: skip
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["num_beams"] == 5 and generation["decoder_start_token_id"] == BOS_ID
    meta = json.loads((folder / META).read_text())
    assert meta["architecture"] == PRE_NORM and meta["source"] == str(checkpoint.resolve())


def test_export_refuses_what_it_cannot_write(tmp_path, monkeypatch):
    transformer = OLD / "transformer" / "checkpoints" / "last.pt"
    gru = OLD / "gru" / "checkpoints" / "last.pt"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    cases = [
        (
            [f"checkpoint={gru}", f"output={tmp_path / 'g'}"],
            ["RecurrentEncoderDecoder", "no recurrent", "+model="],
        ),
        ([f"checkpoint={transformer}", f"output={taken}"], ["not an export", "new folder"]),
        (
            [f"checkpoint={transformer}", f"output={tmp_path / 'q'}", "quantization=int8"],
            ["ctranslate2 only"],
        ),
        (
            [f"checkpoint={transformer}", f"output={tmp_path / 'v'}", "vmap=true"],
            ["vmap=True", "ctranslate2"],
        ),
    ]
    for args, fragments in cases:
        with pytest.raises(UserError) as caught:
            export(compose("export", [*args, "format=transformers"]))
        for fragment in fragments:
            assert fragment in str(caught.value), (fragment, str(caught.value))
    with pytest.raises(UserError, match=r"decoding.beam_size=1: applies to format=transformers only"):
        export(
            compose("export", [f"checkpoint={transformer}", f"output={tmp_path / 'c'}", "decoding=greedy"])
        )
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"transformers is not installed: pip install 'seq2seq\[hf\]'"):
        export_to(transformer, tmp_path / "n")
    assert (taken / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-written


def test_an_export_is_replaced_and_refused_where_a_checkpoint_belongs(tmp_path):
    checkpoint = OLD / "transformer" / "checkpoints" / "last.pt"
    folder = export_to(checkpoint, tmp_path / "hf")
    export_to(checkpoint, folder, "decoding=greedy")  # an earlier export is replaced
    assert json.loads((folder / "generation_config.json").read_text())["num_beams"] == 1
    if importlib.util.find_spec("ctranslate2") is not None:  # by an export of either format
        export(compose("export", [f"checkpoint={checkpoint}", f"output={folder}"]))
        assert (folder / "model.bin").is_file() and not (folder / META).exists()
        export_to(checkpoint, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    refusal = "is a transformers export; load it with transformers"
    for engine in ("auto", "torch", "ctranslate2"):
        with pytest.raises(UserError, match=refusal):
            translate(compose("translate", [f"checkpoint={folder}", f"engine={engine}"]))
    with pytest.raises(UserError, match=refusal):
        evaluate(compose("evaluate", [f"checkpoint={folder}"]))
    with pytest.raises(UserError, match=refusal):
        export_to(folder, tmp_path / "again")


# ----- trained models --------------------------------------------------------------------------

PLANS = {  # name: (overrides, the class it becomes)
    "pre_norm": ([], PRE_NORM),  # one vocabulary, every matrix tied
    "pre_norm_two_vocabularies_untied": (
        ["data.tokenizer.joint=false", "model.tie_embeddings=false"],
        PRE_NORM,
    ),
    "post_norm_two_vocabularies": (["model.pre_norm=false", "data.tokenizer.joint=false"], POST_NORM),
    "post_norm_untied": (["model.pre_norm=false", "model.tie_embeddings=false"], POST_NORM),
}


@pytest.fixture(scope="module")
def runs(trained_transformer):
    """Tiny trained Transformers of every layout (``PLANS``): {name: run directory}."""
    return {name: trained_transformer(name, *overrides) for name, (overrides, _) in PLANS.items()}


def exported(run: Path, *overrides: str) -> Path:
    folder = run / ("hf" + "".join(f"_{o.split('=')[-1]}" for o in overrides))
    if not folder.exists():
        checkpoint = run / "checkpoints" / "best.pt"
        run_cli(
            "export",
            f"checkpoint={checkpoint}",
            f"output={folder}",
            "format=transformers",
            *overrides,
            cwd=run,
        )
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PLANS))
def test_a_trained_model_exports_exactly(runs, tiny_corpus, name):
    folder = exported(runs[name])
    assert json.loads((folder / META).read_text())["architecture"] == PLANS[name][1]
    sources = [*head(tiny_corpus["train.de"], 8), *SOURCES]
    targets = head(tiny_corpus["train.en"], 8)
    assert_export_is_exact(runs[name] / "checkpoints" / "best.pt", folder, sources, [*targets, *SOURCES])
    files = {p.name for p in folder.iterdir()}
    assert ("target_vocab.json" in files) == ("two_vocabularies" in name)


def generate_texts(folder: Path, sentences: list[str]) -> list[str]:
    """What a user of transformers gets: the tokenizer, ``generate()`` with the folder's
    generation defaults, and the decoded text (what ``pipeline("translation")`` does)."""
    hf, tok = load(folder)
    texts = []
    for sentence in sentences:
        out = hf.generate(**tok([sentence], return_tensors="pt"))
        texts.append(tok.batch_decode(out, skip_special_tokens=True)[0])
    return texts


def has_translation_pipeline() -> bool:
    """transformers 5 removed the "translation" pipeline (transformers.pipelines.REMOVED_TASKS)."""
    return "translation" not in getattr(transformers.pipelines, "REMOVED_TASKS", {})


@pytest.mark.slow
def test_transformers_translates_a_german_sentence_as_the_translate_command(runs, tiny_corpus, tmp_path):
    run = runs["pre_norm"]
    sentences = [head(tiny_corpus["train.de"], 3)[i].strip() for i in range(3)]
    source = tmp_path / "in.de"
    source.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    for search in ("greedy", "beam"):
        folder = exported(run, f"decoding={search}")
        out = tmp_path / f"{search}.en"
        run_cli("translate", f"checkpoint={run / 'checkpoints' / 'best.pt'}", f"decoding={search}",
                f"input={source}", f"output={out}", cwd=tmp_path)  # fmt: skip
        ours = out.read_text(encoding="utf-8").splitlines()
        assert generate_texts(folder, sentences) == ours, search
        if has_translation_pipeline():
            translator = transformers.pipeline("translation", model=str(folder))
            assert [r["translation_text"] for r in translator(sentences)] == ours, search


@pytest.mark.slow
def test_the_transformers_engine_decodes_like_generate(runs, tiny_corpus):
    run = runs["post_norm_two_vocabularies"]
    model, tokenizer, _ = load_model(run / "checkpoints" / "best.pt")
    cfg = compose("translate", ["checkpoint=x", "decoding=greedy"]).decoding
    from seq2seq.inference.torch_engine import TorchTranslator

    sources = [*head(tiny_corpus["train.de"], 6), *SOURCES]
    engine = TransformersTranslator(exported(run), cfg)
    ours = TorchTranslator(model, tokenizer, cfg, "cpu").hypotheses(sources)
    theirs = engine.hypotheses(sources)
    # generate() takes one length limit per batch, its longest sentence's: a sentence that ended
    # before its own limit ends alike
    limits = [
        max_output_length(len(ids), cfg.max_len_a, cfg.max_len_b, 256) for ids in engine.encode(sources)
    ]
    ended = [i for i, h in enumerate(ours) if len(h[0].tokens) + 1 < limits[i]]
    assert len(ended) >= 3  # (4 of the 10 with this tiny model)
    for i in ended:
        assert theirs[i][0].tokens == ours[i][0].tokens, sources[i]


@pytest.mark.slow
def test_a_missing_transformers_is_one_error_line(tmp_path):
    checkpoint = OLD / "transformer" / "checkpoints" / "last.pt"
    script = (
        "import runpy, sys\n"
        "sys.modules['transformers'] = None\n"  # as if it were not installed
        f"sys.argv = ['export', 'checkpoint={checkpoint}', 'output={tmp_path / 'hf'}',"
        " 'format=transformers']\n"
        "runpy.run_module('seq2seq.export', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert_one_error(proc, "transformers is not installed", "seq2seq[hf]")
    gru = OLD / "gru" / "checkpoints" / "last.pt"
    proc = run_cli(
        "export",
        f"checkpoint={gru}",
        f"output={tmp_path / 'g'}",
        "format=transformers",
        cwd=tmp_path,
        check=False,
    )
    assert_one_error(proc, "no recurrent encoder-decoder")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_translating_a_ctranslate2_export_imports_neither_torch_nor_transformers(tmp_path):
    pytest.importorskip("ctranslate2")
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['translate', 'checkpoint={OLD / 'transformer_ct2'}']\n"
        "runpy.run_module('seq2seq.translate', run_name='__main__')\n"
        "print('loaded:', 'torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], input="Ein Hund.\n", capture_output=True, text=True, cwd=tmp_path,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "loaded: False False" in proc.stderr


@pytest.mark.slow
def test_bench_decode_times_generate_beside_our_engine(runs, tiny_corpus, tmp_path):
    best = runs["pre_norm"] / "checkpoints" / "best.pt"
    printed = run_bench_decode(best, tiny_corpus, tmp_path, "--engines=torch,transformers", "--modes=greedy")
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith("| checkpoint")]
    assert [r[0] for r in rows] == ["| checkpoint, torch", "| checkpoint, transformers"], printed
