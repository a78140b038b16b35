"""What subword sampling costs the data path: padding and encoding, without training.

For the first ``--batches`` batches of epoch 0 (the batches a run makes from the deterministic
lengths, ``seq2seq/data/batching.py``), collates each twice, as a run without sampling and as
one with ``data.tokenizer.sampling`` does, and prints per side the tokens, the padded tokens
(what the model computes on) and their ratio; then the pairs per second of the sampling
encoder on one thread. Run it on a prepared folder that keeps its text (``text/``): the one a
sampling run's ``train.log`` names, or one made by
``python -m seq2seq.prepare data.tokenizer.sampling=true``.

    python scripts/bench_sampling.py --folder PREPARED [--max-tokens 2048] [--batches 200] \\
        [--alpha 0.1] [--nbest-size 64] [--model-type unigram] [--max-len 128] [--seed 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from seq2seq.data.batching import token_batches
from seq2seq.data.sampling import SampledPairs
from seq2seq.device import cpu_name
from seq2seq.special import PAD_ID


def counts(dataset, batches) -> dict[str, int]:
    """Tokens and padded tokens of the source and of ``tgt_out`` over ``batches``."""
    total = dict.fromkeys(("src", "src padded", "tgt", "tgt padded"), 0)
    for rows in batches:
        batch = dataset.__getitems__(rows.tolist())
        for side, ids in (("src", batch.src), ("tgt", batch.tgt_out)):  # (B, S), (B, T)
            total[side] += int((ids != PAD_ID).sum())
            total[f"{side} padded"] += ids.numel()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", required=True, help="a prepared folder with text/")
    parser.add_argument("--max-tokens", type=int, default=2048, help="trainer.max_tokens")
    parser.add_argument("--batches", type=int, default=200, help="batches of epoch 0 measured")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--nbest-size", type=int, default=64)
    parser.add_argument("--model-type", default="unigram", help="the folder's tokenizer: unigram or bpe")
    parser.add_argument("--max-len", type=int, default=128, help="data.max_len")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = SampledPairs(args.folder, args.model_type, args.alpha, args.nbest_size, args.max_len)
    batches = token_batches(pairs.lengths("src"), pairs.lengths("tgt"), args.max_tokens, args.seed, 0)
    batches = batches[: args.batches]
    print(f"{cpu_name()}, torch {torch.__version__}, one thread; {args.folder}")
    plain = counts(pairs, batches)
    start = time.perf_counter()
    sampled = counts(pairs.for_epoch(args.seed, 0), batches)
    seconds = time.perf_counter() - start
    n = sum(len(rows) for rows in batches)
    print(f"{len(batches)} batches of at most {args.max_tokens} tokens, {n} pairs; alpha {args.alpha}")
    print("| segmentation | source tokens | padded | target tokens | padded | padded / tokens |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, c in (("deterministic", plain), ("sampled", sampled)):
        ratio = (c["src padded"] + c["tgt padded"]) / (c["src"] + c["tgt"])
        print(f"| {name} | {c['src']} | {c['src padded']} | {c['tgt']} | {c['tgt padded']} | {ratio:.3f} |")
    grow = (sampled["src"] + sampled["tgt"]) / (plain["src"] + plain["tgt"])
    padded = (sampled["src padded"] + sampled["tgt padded"]) / (plain["src padded"] + plain["tgt padded"])
    print(f"sampled / deterministic: tokens {grow:.3f}, padded tokens {padded:.3f}")
    print(f"sampling and collating: {n / seconds:.0f} pairs/s on one thread")


if __name__ == "__main__":
    main()
