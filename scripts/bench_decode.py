"""Decoding speed: every model preset, greedy and beam search, with and without the decoder cache.

Each model gets the same work: the same source batches (lengths of the Multi30k test split) and
exactly ``--output-tokens`` output tokens per sentence, followed by EOS. Systems run interleaved,
``--rounds`` times, each measurement in a fresh process; the table shows the median of the rounds.

    python scripts/bench_decode.py [--rounds 3] [--sentences 512] [--batch-size 64] [--threads N]
        [--backends transformer,gru_bahdanau,lstm_luong,marian] [--modes greedy,beam] [--cache on,off]
    python scripts/bench_decode.py --backends transformer,ct2_float32,ct2_int8 --cache on
    python scripts/bench_decode.py --checkpoint RUN_DIR/checkpoints/best.pt   # real translations
        [--engines torch,ct2_float32,ct2_int8,ct2_int8_vmap,transformers] [--test-ref REF]  # + BLEU

Method
    * Random-weight models are built from ``configs/model/<backend>.yaml`` with an 8,000-piece shared
      vocabulary. Source lengths are those of the first ``--sentences`` lines of the test split in
      pieces (EOS included) when the default Multi30k tokenizer is in the cache (or ``--tokenizer``
      names a SentencePiece model); otherwise they are drawn uniformly from 6..26 pieces (mean 16,
      like the test split). Token ids are random. Batches keep the test-split order (no sorting).
    * ``FixedLength`` forbids EOS for the first ``--output-tokens`` steps, and the search runs with
      ``max_len_a=0, max_len_b=output_tokens + 1``, so it must end right after them: every system
      runs ``output_tokens + 1`` decoder steps per sentence. The tokens are counted, not assumed.
    * Cache off is ``NoCache``: each step re-runs the whole teacher-forced pass (``features``) on the
      prefix and projects the last position, as JoeyNMT's Transformer and the PyTorch tutorials
      decode; unlike them it re-encodes the source at every step too, since the model interface has
      no "decode from a precomputed memory" call. Expect it below a no-cache decoder that encodes once.
    * Peak memory: each measurement runs in a fresh (spawned) process that builds the model and the
      inputs, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), decodes, and reports
      ``VmHWM - VmRSS`` at the reset: the most resident memory that decoding added. Where the mark
      cannot be reset, ``ru_maxrss`` of the fresh process minus its RSS before decoding is used.
    * ``marian`` (needs ``pip install transformers``): a randomly initialised Hugging Face
      ``MarianMTModel`` of the same size, ``generate(min_new_tokens=N, max_new_tokens=N + 1)`` with
      EOS forced last, i.e. the same N tokens plus EOS; cache on/off is ``use_cache``.
    * ``ct2_float32``, ``ct2_int8`` (need ``pip install -e ".[serve]"``): the Transformer preset's
      random model, the very weights the ``transformer`` rows use, exported with
      ``seq2seq/inference/ctranslate2/engine.py`` and run by CTranslate2 with the same batches,
      ``min_decoding_length = max_decoding_length = N + 1``: N + 1 decoder steps per sentence,
      like the others, of which N tokens are counted.
    * ``--checkpoint`` mode: the trained model translates ``--test-src`` through ``TorchTranslator``
      (``--engines torch``) or through ``CTranslate2Translator`` on its float32 or int8 export
      (``ct2_float32``, ``ct2_int8``; ``ct2_int8_vmap``: int8 with the vocabulary map of ``export
      vmap=true``, learnt from the checkpoint's training data), with the decoding presets' settings;
      ``transformers`` (needs ``pip install -e ".[hf]"``): the export of ``export format=transformers``
      loaded with ``AutoModelForSeq2SeqLM`` and decoded with ``generate()`` on the same batches, with
      the options its ``generation_config.json`` maps the decoding preset to (one length limit per
      batch, its longest sentence's; ``seq2seq/inference/transformers/engine.py``);
      the table adds sacreBLEU against ``--test-ref`` and the share of outputs identical to the
      torch engine's.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from seq2seq.config import CONFIG_DIR, model_preset
from seq2seq.data.collate import collate
from seq2seq.decoding.options import DecodingConfig
from seq2seq.device import cpu_name
from seq2seq.models.base import EncoderDecoder, State
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID

ROOT = Path(__file__).resolve().parent.parent
TEST_SRC = ROOT / "data" / "multi30k" / "test_2016_flickr.de.gz"
VOCAB = 8000
BACKENDS = ("transformer", "gru_bahdanau", "lstm_luong", "marian", "ct2_float32", "ct2_int8")
ENGINES = ("torch", "ct2_float32", "ct2_int8", "ct2_int8_vmap", "transformers")
TEST_REF = ROOT / "data" / "multi30k" / "test_2016_flickr.en.gz"
FALLBACK_LENGTHS = (6, 26)  # source pieces, EOS included, when no tokenizer is at hand


# ----- the two wrappers -----------------------------------------------------------------------


class Wrapper(EncoderDecoder):
    """A model around another one; the teacher-forced pass and the limits are the inner model's."""

    def __init__(self, model: EncoderDecoder):
        super().__init__()
        self.model = model

    def features(self, src, src_lengths, tgt_in):
        return self.model.features(src, src_lengths, tgt_in)

    def project(self, features):
        return self.model.project(features)

    @property
    def max_positions(self):
        return self.model.max_positions


class FixedLength(Wrapper):
    """Any model, made to emit exactly ``length`` tokens before EOS.

    ``step`` sets the EOS logit to -inf for the first ``length`` steps and leaves the logits alone
    after that; a search limited to ``length + 1`` tokens (``max_len_a=0, max_len_b=length + 1``)
    then ends every hypothesis with EOS right after ``length`` tokens, with a finite score.
    """

    def __init__(self, model: EncoderDecoder, length: int):
        super().__init__(model)
        self.length = length

    def encode(self, src, src_lengths) -> State:
        return self.model.encode(src, src_lengths)

    def init_state(self, memory: State) -> State:
        return {"inner": self.model.init_state(memory), "emitted": 0}

    def step(self, tgt, state):
        logits, inner = self.model.step(tgt, state["inner"])  # (B, V) a new tensor, ours to change
        if state["emitted"] < self.length:
            logits[:, EOS_ID] = -math.inf
        return logits, {"inner": inner, "emitted": state["emitted"] + 1}

    def reorder_state(self, state: State, index) -> State:
        return {"inner": self.model.reorder_state(state["inner"], index), "emitted": state["emitted"]}


class NoCache(Wrapper):
    """Any model, decoded without a cache: every step re-runs the whole teacher-forced pass.

    The state is the source and the prefix fed so far (BOS first), batch-first, so the inherited
    ``reorder_state`` works. ``encode`` does no work: the interface has no call that decodes
    from a precomputed memory, so each step's ``features`` call re-encodes the source too (the
    tutorials' no-cache decoders encode once and re-run only the decoder). Only the last position
    goes through the output layer.
    """

    def encode(self, src, src_lengths) -> State:
        return {"src": src, "src_lengths": src_lengths}

    def init_state(self, memory: State) -> State:
        src = memory["src"]
        return {**memory, "prefix": src.new_empty(src.size(0), 0)}

    def step(self, tgt, state):
        prefix = torch.cat([state["prefix"], tgt[:, None]], dim=1)  # (B, t + 1)
        h = self.model.features(state["src"], state["src_lengths"], prefix)  # (B, t + 1, D)
        return self.model.project(h[:, -1]), {**state, "prefix": prefix}


# ----- inputs -----------------------------------------------------------------------------------


def default_tokenizer() -> Path | None:
    """The SentencePiece model of the Multi30k corpus that ``python -m seq2seq.train`` prepares
    by default, if it has been prepared."""
    from seq2seq.config import compose
    from seq2seq.data.preparation import cache_folder, corpus_key

    data = compose("train", []).data
    path = cache_folder(data, corpus_key(data)[0]) / "spm.model"
    return path if path.is_file() else None


def source_lengths(n: int, tokenizer: Path | None, gen: torch.Generator) -> tuple[list[int], str]:
    """Lengths (EOS included) of ``n`` source sentences, and a line saying where they come from."""
    if tokenizer is not None:
        import sentencepiece as spm

        from seq2seq.data.reading import read_lines

        sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
        lengths = [len(ids) + 1 for ids in sp.encode(read_lines(TEST_SRC))]
        lengths = [lengths[i % len(lengths)] for i in range(n)]
        return lengths, f"source lengths: the test split's, in pieces of {tokenizer}"
    low, high = FALLBACK_LENGTHS
    lengths = torch.randint(low, high + 1, (n,), generator=gen).tolist()
    return lengths, f"source lengths: uniform {low}..{high} pieces (no tokenizer found)"


def make_batches(lengths: list[int], batch_size: int, seed: int = 0) -> list[tuple]:
    """Random source ids with the given lengths (last one EOS), as (src (B, S), src_lengths (B,))."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.randint(EOS_ID + 1, VOCAB, (n - 1,), generator=gen).tolist() + [EOS_ID] for n in lengths]
    batches = [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    return [(b.src, b.src_lengths) for b in batches]


# ----- systems ----------------------------------------------------------------------------------


def decoding_config(mode: str, beam_size: int, output_tokens: int | None):
    """The toolkit's greedy or beam decoding config; with ``output_tokens``, the fixed-length limits."""
    preset = OmegaConf.load(CONFIG_DIR / "decoding" / ("greedy.yaml" if mode == "greedy" else "beam.yaml"))
    cfg = OmegaConf.merge(OmegaConf.structured(DecodingConfig), preset)  # the preset over the defaults
    if mode == "beam":
        cfg.beam_size = beam_size
    if output_tokens is not None:
        cfg.max_len_a, cfg.max_len_b = 0, output_tokens + 1
    return cfg


def build_preset(backend: str) -> EncoderDecoder:
    """A randomly initialised model of ``configs/model/<backend>.yaml`` (eval mode)."""
    from hydra.utils import instantiate

    cfg = model_preset(backend)
    return instantiate(cfg, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, shared_vocab=True).eval()


def build_marian():
    """A randomly initialised MarianMTModel the size of the Transformer preset; nothing is downloaded."""
    from transformers import MarianConfig, MarianMTModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model = model_preset("transformer")
    config = MarianConfig(
        vocab_size=VOCAB,
        d_model=model.d_model,
        encoder_layers=model.encoder_layers,
        decoder_layers=model.decoder_layers,
        encoder_attention_heads=model.heads,
        decoder_attention_heads=model.heads,
        encoder_ffn_dim=model.ffn_dim,
        decoder_ffn_dim=model.ffn_dim,
        activation_function="relu",
        max_position_embeddings=model.max_positions,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=EOS_ID,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
    )
    return MarianMTModel(config).eval()


def marian_decoder(spec: dict):
    """A function (src, src_lengths) -> output token count, for Hugging Face generate()."""
    model, n = build_marian(), spec["output_tokens"]
    beams = spec["beam_size"] if spec["mode"] == "beam" else 1

    def decode(src, src_lengths):
        out = model.generate(
            input_ids=src,
            attention_mask=(src != PAD_ID).long(),
            num_beams=beams,
            do_sample=False,
            min_new_tokens=n,
            max_new_tokens=n + 1,
            use_cache=spec["cache"],
        )
        counts = [count_tokens([row]) for row in out[:, 1:].tolist()]  # without the decoder start token
        assert set(counts) == {n}, f"output lengths {set(counts)}"
        return sum(counts)

    return decode


def export_random_transformer(folder: Path, quantization: str) -> None:
    """Export the Transformer preset's random model (seed 0, as ``measure`` builds it) into ``folder``."""
    from seq2seq.inference.ctranslate2.convert import save_spec
    from seq2seq.inference.ctranslate2.spec import transformer_spec

    torch.manual_seed(0)
    model = build_preset("transformer")
    pieces = ["<pad>", "<unk>", "<s>", "</s>", *(f"t{i}" for i in range(EOS_ID + 1, VOCAB))]
    save_spec(transformer_spec(model, pieces, pieces), folder, quantization)


def ct2_decoder(spec: dict):
    """A function (src, src_lengths) -> output token count, for CTranslate2 on the export."""
    from seq2seq.inference.ctranslate2.engine import open_ct2_translator, translate_options, worker_batch

    ct2 = open_ct2_translator(spec["export"], num_threads=spec["threads"] or 0)
    n = spec["output_tokens"]
    # CTranslate2's own options for the preset, with N + 1 steps forced: no EOS before the last one
    options = translate_options(decoding_config(spec["mode"], spec["beam_size"], n), n + 2)
    options.update(min_decoding_length=n + 1, max_decoding_length=n + 1, return_scores=False)

    def decode(src, src_lengths):
        rows = zip(src.tolist(), src_lengths.tolist(), strict=True)
        pieces = [[f"t{t}" for t in row[: length - 1]] for row, length in rows]  # EOS: CTranslate2's
        results = ct2.translate_batch(pieces, max_batch_size=worker_batch(ct2, len(pieces)), **options)
        lengths = {len(r.hypotheses[0]) for r in results}
        assert lengths == {n + 1}, f"output lengths {lengths}"
        return n * len(results)

    return decode


def count_tokens(rows: list[list[int]]) -> int:
    """Output tokens in rows of ids: everything before EOS (or padding), special ids excluded."""
    total = 0
    for row in rows:
        for token in row:
            if token in (EOS_ID, PAD_ID):
                break
            total += 1
    return total


def preset_decoder(spec: dict):
    """A function (src, src_lengths) -> output token count, for a seq2seq preset."""
    from seq2seq.decoding import search

    model = build_preset(spec["backend"])
    model = FixedLength(model if spec["cache"] else NoCache(model), spec["output_tokens"])
    cfg = decoding_config(spec["mode"], spec["beam_size"], spec["output_tokens"])

    def decode(src, src_lengths):
        hyps = search(model, src, src_lengths, cfg)
        lengths = {len(h[0].tokens) for h in hyps}
        assert lengths == {spec["output_tokens"]}, f"output lengths {lengths}"
        return sum(len(h[0].tokens) for h in hyps)

    return decode


# ----- one measurement, in its own process --------------------------------------------------------


def proc_status(key: str) -> int:
    """A kB value (VmRSS, VmHWM) from /proc/self/status."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+)", f.read(), re.M).group(1))


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux 4.0+); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_kb() -> int:
    try:
        return proc_status("VmHWM")
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def current_rss_kb() -> int:
    try:
        return proc_status("VmRSS")
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@torch.no_grad()
def measure(spec: dict) -> dict:
    """Build the system of ``spec``, decode its batches, return seconds, sentences, tokens, memory."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    if spec["backend"] == "checkpoint":
        return measure_checkpoint(spec)
    batches = make_batches(spec["lengths"], spec["batch_size"])
    if spec["backend"].startswith("ct2_"):
        decode = ct2_decoder(spec)
    else:
        decode = marian_decoder(spec) if spec["backend"] == "marian" else preset_decoder(spec)
    reset_peak_rss()
    rss_before = current_rss_kb()
    decode(*batches[0])  # warm-up, inside the memory window, outside the timed one
    start = time.perf_counter()
    tokens = sum(decode(src, lengths) for src, lengths in batches)
    seconds = time.perf_counter() - start
    sentences = sum(len(lengths) for _, lengths in batches)
    return {
        "seconds": seconds,
        "sentences": sentences,
        "tokens": tokens,
        "memory_kb": peak_rss_kb() - rss_before,
    }


def measure_checkpoint(spec: dict) -> dict:
    """Translate the test split with a trained model, through ``TorchTranslator`` (engine torch),
    ``CTranslate2Translator`` on an export or ``TransformersTranslator`` on a transformers export
    (real output lengths)."""
    from seq2seq.data.reading import read_lines

    cfg = decoding_config(spec["mode"], spec["beam_size"], None)
    if spec["max_tokens"]:
        cfg.max_tokens = spec["max_tokens"]
    if spec["engine"] == "torch":
        from seq2seq.checkpoints.loading import load_model
        from seq2seq.inference.torch_engine import TorchTranslator

        model, tokenizer, _ = load_model(spec["checkpoint"])
        translator = TorchTranslator(model if spec["cache"] else NoCache(model), tokenizer, cfg, "cpu")
    elif spec["engine"] == "transformers":
        from seq2seq.inference.transformers.engine import TransformersTranslator

        translator = TransformersTranslator(Path(spec["export"]), cfg, "cpu")
    else:
        from seq2seq.inference.ctranslate2.engine import CTranslate2Translator

        translator = CTranslate2Translator(Path(spec["export"]), cfg, "cpu", "auto", spec["threads"] or 0)
    sentences = read_lines(spec["test_src"])
    sentences = sentences[: spec["sentences"]] if spec["sentences"] else sentences
    reset_peak_rss()
    rss_before = current_rss_kb()
    translator.hypotheses(sentences[: spec["batch_size"]])  # warm-up
    start = time.perf_counter()
    hyps = translator.hypotheses(sentences)
    seconds = time.perf_counter() - start
    tokens = sum(len(h[0].tokens) for h in hyps)
    return {
        "seconds": seconds,
        "sentences": len(hyps),
        "tokens": tokens,
        "memory_kb": peak_rss_kb() - rss_before,
        "texts": [translator.tokenizer.decode_tgt(h[0].tokens) for h in hyps],
    }


def run_isolated(spec: dict) -> dict:
    """``measure(spec)`` in a freshly spawned process, so memory and allocator state start clean."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (spec,))


# ----- report -----------------------------------------------------------------------------------


def hardware_line(threads: int | None) -> str:
    return (
        f"# {cpu_name()}; {os.cpu_count()} logical cores; torch {torch.__version__}; "
        f"{threads or torch.get_num_threads()} threads; Python {platform.python_version()}"
    )


def quality(spec: dict, results: dict, specs: list[dict]) -> str:
    """The ``BLEU | same as torch`` cells of a --checkpoint row: sacreBLEU of its first round's
    output against --test-ref, and the share of sentences identical to the torch engine's."""
    from sacrebleu.metrics import BLEU

    from seq2seq.data.reading import read_lines

    texts = results[spec["name"]][0]["texts"]
    refs = read_lines(spec["test_ref"])[: len(texts)]
    bleu = BLEU().corpus_score(texts, [refs]).score
    torch_row = next((s for s in specs if s["engine"] == "torch" and s["mode"] == spec["mode"]), None)
    if torch_row is None:
        return f" {bleu:.2f} | |"
    same = sum(a == b for a, b in zip(texts, results[torch_row["name"]][0]["texts"], strict=True))
    return f" {bleu:.2f} | {100 * same / len(texts):.1f}% |"


def print_table(specs: list[dict], results: dict, memory_note: str) -> None:
    checkpoint = specs[0]["backend"] == "checkpoint"
    extra = (" BLEU | same as torch |", "---:|---:|") if checkpoint else ("", "")
    print(f"| backend | search | cache | sentences/s | output tokens/s | peak memory growth, MiB |{extra[0]}")
    print(f"|---|---|---|---:|---:|---:|{extra[1]}")
    for spec in specs:
        runs = results[spec["name"]]
        sent = statistics.median(r["sentences"] / r["seconds"] for r in runs)
        tok = statistics.median(r["tokens"] / r["seconds"] for r in runs)
        mem = statistics.median(r["memory_kb"] for r in runs) / 1024
        search_name = "greedy" if spec["mode"] == "greedy" else f"beam {spec['beam_size']}"
        cache = "on" if spec["cache"] else "off"
        label = spec["backend"] if not checkpoint else f"checkpoint, {spec['engine']}"
        cells = quality(spec, results, specs) if checkpoint else ""
        print(f"| {label} | {search_name} | {cache} | {sent:,.1f} | {tok:,.0f} | {mem:,.0f} |{cells}")
    print(f"\n{memory_note}")


def parse_list(text: str, allowed) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise SystemExit(f"unknown value(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sentences",
        type=int,
        default=512,
        help="sentences decoded per measurement (--checkpoint mode: the first N lines, 0: all)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch (random-model mode)")
    parser.add_argument(
        "--output-tokens", type=int, default=20, help="output tokens per sentence, EOS not counted"
    )
    parser.add_argument("--beam-size", type=int, default=5, help="beam size of the 'beam' mode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated subset of %(default)s; 'marian' needs transformers (skipped if missing)",
    )
    parser.add_argument("--modes", default="greedy,beam", help="comma-separated subset of greedy,beam")
    parser.add_argument("--cache", default="on,off", help="comma-separated subset of on,off")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="SentencePiece model for the source lengths (default: the cached Multi30k one, if any)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="time a trained model's real translations of --test-src through Translator instead; "
        "batches then follow decoding.max_tokens, and --backends, --output-tokens, --batch-size "
        "(except for the warm-up) do not apply",
    )
    parser.add_argument("--test-src", type=Path, default=TEST_SRC, help="source file of --checkpoint mode")
    parser.add_argument("--test-ref", type=Path, default=TEST_REF, help="its references, for BLEU")
    parser.add_argument(
        "--engines",
        default="torch",
        help="--checkpoint mode: comma-separated subset of "
        + ",".join(ENGINES)
        + " (ct2: needs .[serve], transformers: .[hf])",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=0, help="--checkpoint mode: decoding.max_tokens (0: the config's)"
    )
    return parser.parse_args(argv)


def hf_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def ct2_available() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def make_exports(specs: list[dict], folder: Path, checkpoint: Path | None) -> None:
    """Write the CTranslate2 and transformers exports the specs need into ``folder``; note each
    one's path in its spec."""
    done = {}
    for spec in specs:
        kind = spec["engine"] if checkpoint is not None else spec["backend"]
        if kind == "transformers" and checkpoint is not None:
            if kind not in done:
                from seq2seq.checkpoints.loading import load_model
                from seq2seq.inference.transformers.convert import write_export as write_hf_export

                model, tokenizer, config = load_model(checkpoint)
                write_hf_export(model, tokenizer, config, folder / kind, checkpoint)
                done[kind] = str(folder / kind)
            spec["export"] = done[kind]
            continue
        if not kind.startswith("ct2_"):
            continue
        name = kind.removeprefix("ct2_")
        quantization = name.removesuffix("_vmap")
        if name not in done:
            out = folder / name
            if checkpoint is not None:
                from seq2seq.checkpoints.loading import load_model
                from seq2seq.config.schema import ExportConfig
                from seq2seq.inference.ctranslate2.convert import write_export
                from seq2seq.inference.ctranslate2.vocab_map import training_pairs, write_vmap

                model, tokenizer, config = load_model(checkpoint)
                write_export(model, tokenizer, config, out, quantization, checkpoint)
                if name.endswith("_vmap"):  # export's defaults: vmap=true and nothing else
                    e = ExportConfig
                    pairs = training_pairs(config, e.vmap_lines)
                    write_vmap(tokenizer, pairs, out, e.vmap_per_piece, e.vmap_common)
            else:
                export_random_transformer(out, quantization)
            done[name] = str(out)
        spec["export"] = done[name]


def make_specs(args) -> tuple[list[dict], list[str]]:
    """The systems to measure, and header lines describing the inputs."""
    modes = parse_list(args.modes, ("greedy", "beam"))
    caches = [c == "on" for c in parse_list(args.cache, ("on", "off"))]
    common = {"threads": args.threads, "beam_size": args.beam_size, "batch_size": args.batch_size}
    if args.checkpoint is not None:
        common.update(
            checkpoint=str(args.checkpoint),
            test_src=str(args.test_src),
            test_ref=str(args.test_ref),
            sentences=args.sentences,
            max_tokens=args.max_tokens,
        )
        backends, notes = ["checkpoint"], [f"# {args.checkpoint}: real translations of {args.test_src}"]
        engines = parse_list(args.engines, ENGINES)
        if not ct2_available() and any(e.startswith("ct2_") for e in engines):
            engines = [e for e in engines if not e.startswith("ct2_")]
            print("# ct2 engines skipped: ctranslate2 is not installed (pip install -e '.[serve]')")
        if "transformers" in engines and not hf_available():
            engines.remove("transformers")
            print("# transformers engine skipped: transformers is not installed (pip install -e '.[hf]')")
    else:
        engines = ["torch"]
        backends = parse_list(args.backends, BACKENDS)
        if "marian" in backends and not hf_available():
            backends.remove("marian")
            print("# marian skipped: transformers is not installed (pip install transformers)")
        if not ct2_available() and any(b.startswith("ct2_") for b in backends):
            backends = [b for b in backends if not b.startswith("ct2_")]
            print("# ct2 backends skipped: ctranslate2 is not installed (pip install -e '.[serve]')")
        tokenizer = args.tokenizer or default_tokenizer()
        lengths, where = source_lengths(args.sentences, tokenizer, torch.Generator().manual_seed(0))
        common.update(lengths=lengths, output_tokens=args.output_tokens)
        notes = [
            f"# {args.sentences} sentences, {args.batch_size} at a time, exactly {args.output_tokens} "
            f"output tokens each (+ EOS); {where}, mean {statistics.mean(lengths):.1f}"
        ]
    specs = [
        {
            **common,
            "backend": b,
            "engine": e,
            "mode": m,
            "cache": c,
            "name": f"{b}/{e}/{m}/cache {'on' if c else 'off'}",
        }
        for b in backends
        for e in engines
        for m in modes
        for c in caches
        # CTranslate2 always caches; generate() runs with its cache
        if c or not (b.startswith("ct2_") or e.startswith("ct2_") or e == "transformers")
    ]
    return specs, notes


def main(argv=None):
    args = parse_args(argv)
    print(hardware_line(args.threads))
    specs, notes = make_specs(args)
    print("\n".join(notes))
    memory_note = (
        "Peak memory growth: in a fresh process per measurement, VmHWM after decoding minus VmRSS "
        "before it, the peak mark reset just before (/proc/self/clear_refs)."
        if reset_peak_rss()
        else "Peak memory growth: ru_maxrss of a fresh process per measurement minus its RSS before decoding."
    )
    results = {spec["name"]: [] for spec in specs}
    scratch = tempfile.TemporaryDirectory(prefix="bench-decode-")
    make_exports(specs, Path(scratch.name), args.checkpoint)
    for r in range(args.rounds):
        for spec in specs:  # interleaved: drift during the run hits every system alike
            result = run_isolated(spec)
            results[spec["name"]].append(result)
            rate = result["sentences"] / result["seconds"]
            print(f"round {r + 1}/{args.rounds} {spec['name']}: {rate:.1f} sentences/s", file=sys.stderr)
    print_table(specs, results, memory_note)


if __name__ == "__main__":
    main()
