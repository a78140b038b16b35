"""Training speed: seq2seq's Transformer against a plain torch.nn.Transformer.

Both models get the same size (d_model 256, 3+3 layers, 4 heads, ffn 1024,
8k tied vocabulary) and the same batches (about 4k target tokens), and run
interleaved so that drift on a shared machine hits both alike. Prints target
tokens per second for fp32 and bf16 autocast.

    python scripts/bench_train.py [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.device import autocast
from seq2seq.loss import label_smoothed_cross_entropy
from seq2seq.models import Transformer
from seq2seq.special import PAD_ID

V, D, LAYERS, HEADS, FFN = 8000, 256, 3, 4, 1024


class PlainTransformer(nn.Module):
    """torch.nn.Transformer with embeddings, sinusoidal positions and a tied output layer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, D, padding_idx=PAD_ID)
        self.core = nn.Transformer(
            D, HEADS, LAYERS, LAYERS, FFN, dropout=0.1, batch_first=True, norm_first=True
        )
        pos = torch.arange(512).unsqueeze(1) * torch.exp(torch.arange(0, D, 2) * (-math.log(1e4) / D))
        self.register_buffer("pe", torch.cat([pos.sin(), pos.cos()], dim=1))

    def forward(self, src, tgt_in):
        def emb(x):
            return self.embed(x) * math.sqrt(D) + self.pe[: x.size(1)]

        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), dtype=torch.bool)
        h = self.core(
            emb(src),
            emb(tgt_in),
            tgt_mask=causal,
            src_key_padding_mask=src == PAD_ID,
            tgt_key_padding_mask=tgt_in == PAD_ID,
            memory_key_padding_mask=src == PAD_ID,
        )
        return F.linear(h, self.embed.weight)  # (B, T, V)


def make_batch(batch_size: int, length: int, gen: torch.Generator):
    """Random ids with lengths between length/2 and length, padded: (src, lengths, tgt_in, tgt_out)."""
    lengths = torch.randint(length // 2, length + 1, (batch_size,), generator=gen)
    src = torch.randint(4, V, (batch_size, length), generator=gen)
    tgt = torch.randint(4, V, (batch_size, length), generator=gen)
    pad = torch.arange(length) >= lengths.unsqueeze(1)  # (B, L)
    src, tgt = src.masked_fill(pad, PAD_ID), tgt.masked_fill(pad, PAD_ID)
    return src, lengths, tgt, tgt  # the targets' content does not matter for speed


def step_ours(model, opt, batch):
    src, lengths, tgt_in, tgt_out = batch
    keep = tgt_out != PAD_ID
    logits = model.project(model.features(src, lengths, tgt_in)[keep])  # (N, V)
    loss, _ = label_smoothed_cross_entropy(logits, tgt_out[keep], 0.1)
    return loss / keep.sum()


def step_plain(model, opt, batch):
    src, _, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)
    return F.cross_entropy(
        logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=0.1
    )


def timed(model, step_fn, batches, precision):
    """Target tokens per second over ``batches`` (one warm-up step first)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    tokens, start = 0, None
    for i, batch in enumerate([batches[0]] + batches):
        if i == 1:
            start = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            loss = step_fn(model, opt, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 1:
            tokens += int((batch[3] != PAD_ID).sum())
    return tokens / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=160)
    parser.add_argument("--length", type=int, default=36)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    batches = [make_batch(args.batch_size, args.length, gen) for _ in range(args.steps)]
    tokens = sum(int((b[3] != PAD_ID).sum()) for b in batches) / len(batches)
    torch.manual_seed(0)
    models = {
        "seq2seq Transformer": (
            Transformer(
                V, V, d_model=D, heads=HEADS, encoder_layers=LAYERS, decoder_layers=LAYERS, ffn_dim=FFN
            ),
            step_ours,
        ),
        "torch.nn.Transformer": (PlainTransformer(), step_plain),
    }
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; {args.batch_size} sentences, about {tokens:.0f} target tokens per batch"
    )
    results = {}
    for _ in range(args.rounds):
        for precision in ("fp32", "bf16"):
            for name, (model, step_fn) in models.items():
                results.setdefault((name, precision), []).append(timed(model, step_fn, batches, precision))
    print("| model | precision | target tokens/s (median of rounds) |")
    print("|---|---|---|")
    for (name, precision), values in results.items():
        print(f"| {name} | {precision} | {sorted(values)[len(values) // 2]:,.0f} |")


if __name__ == "__main__":
    main()
