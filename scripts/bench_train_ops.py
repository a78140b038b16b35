"""The pieces of a training step that seq2seq writes itself, each against the plain PyTorch way.

Each row times forward and backward (or one optimiser step) at the default Transformer
recipe's shapes: batches of about 4,000 target tokens (here 128 sentences of 32 tokens),
d_model 256, 4 heads, an 8k vocabulary, the 7.6M parameters of ``+model=transformer``.
The two ways of a row run interleaved, ``--rounds`` times ``--repeat`` calls, and the
table gives the median milliseconds per call.

* cross-entropy: ``log_softmax`` in fp32, gather and mean through autograd (the textbook
  label-smoothed loss) against ``seq2seq.training.loss.label_smoothed_cross_entropy``;
* dropout: ``torch.nn.functional.dropout`` against ``seq2seq.models.dropout.dropout``;
* attention: ``F.scaled_dot_product_attention`` against the explicit softmax, causal, with
  the recipe's ``attention_dropout`` 0 and with 0.1 (seq2seq takes the fused kernel on the
  CPU only in fp32 without dropout, ``MultiHeadAttention.forward``);
* Adam: one step of PyTorch's default on the CPU (a loop over the tensors) against
  ``fused=True`` (``optim.fused``, the default).

    python scripts/bench_train_ops.py [--rounds 5] [--repeat 10] [--threads 2]

The pieces run on fp32 and on bf16 inputs (what they see under bf16 autocast).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from seq2seq.device import cpu_name
from seq2seq.models.dropout import dropout
from seq2seq.models.transformer import Transformer
from seq2seq.training.loss import label_smoothed_cross_entropy

B, T, D, H, V = 128, 32, 256, 4, 8000  # sentences, tokens, d_model, heads, vocabulary


def plain_cross_entropy(logits, target, epsilon=0.1):
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    keep = target != 0
    nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    loss = (1 - epsilon) * nll - epsilon * log_probs.mean(dim=-1)
    return loss[keep].sum()


def fused_cross_entropy(logits, target):
    return label_smoothed_cross_entropy(logits, target, 0.1)[0]


def sdpa(p):
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)


def explicit_attention(p):
    def attend(q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, h, T, T)
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        probs = scores.masked_fill(~mask, float("-inf")).float().softmax(dim=-1)
        return dropout(probs, p, True).to(v.dtype) @ v  # (B, h, T, d)

    return attend


def backward_of(fn, *shapes, dtype, target=None):
    """A call that runs fn forward and backward on fresh leaf tensors of ``shapes``."""
    inputs = [torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes]

    def call():
        args = [*inputs] if target is None else [*inputs, target]
        out = fn(*args)
        out.float().sum().backward() if out.dim() else out.backward()

    return call


def adam_step(fused: bool):
    params = list(Transformer(V, V).parameters())  # the recipe's sizes are the defaults
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=fused)
    optimizer.step()  # the state exists before timing
    return optimizer.step


def rows(dtype):
    target = torch.randint(0, V, (B * T,))
    name = "fp32" if dtype == torch.float32 else "bf16"
    head = (B, H, T, D // H)
    yield (
        f"cross-entropy, {B * T} x {V} logits, {name}",
        backward_of(plain_cross_entropy, (B * T, V), dtype=dtype, target=target),
        backward_of(fused_cross_entropy, (B * T, V), dtype=dtype, target=target),
    )
    yield (
        f"dropout 0.1, {B} x {T} x {D}, {name}",
        backward_of(lambda x: F.dropout(x, 0.1, True), (B, T, D), dtype=dtype),
        backward_of(lambda x: dropout(x, 0.1, True), (B, T, D), dtype=dtype),
    )
    for p in (0.0, 0.1):
        yield (
            f"causal self-attention, {B} x {H} heads x {T} x {D // H}, dropout {p}, {name}",
            backward_of(sdpa(p), head, head, head, dtype=dtype),
            backward_of(explicit_attention(p), head, head, head, dtype=dtype),
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10, help="calls timed together")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    table = [*rows(torch.float32), *rows(torch.bfloat16)]
    table.append(("Adam step, 7.6M fp32 parameters", adam_step(False), adam_step(True)))
    print(f"# {cpu_name()}, {args.threads} threads, torch {torch.__version__}; ms per call, median")
    print("| piece | PyTorch | seq2seq's own | speed-up |")
    print("|---|---:|---:|---:|")
    for name, plain, ours in table:
        times = {plain: [], ours: []}
        for call in (plain, ours):
            call()  # warm-up
        for _ in range(args.rounds):
            for call in (plain, ours):
                start = time.perf_counter()
                for _ in range(args.repeat):
                    call()
                times[call].append((time.perf_counter() - start) / args.repeat * 1000)
        a, b = statistics.median(times[plain]), statistics.median(times[ours])
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}× |")


if __name__ == "__main__":
    main()
