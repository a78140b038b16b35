"""Attention heatmaps: source pieces across, target pieces down."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from seq2seq.data.collate import collate  # noqa: E402


def attention_figure(weights: torch.Tensor, src_pieces: list[str], tgt_pieces: list[str]):
    """A matplotlib figure of (T, S) attention weights with labelled axes."""
    T, S = len(tgt_pieces), len(src_pieces)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * S + 2), max(3, 0.35 * T + 1.5)))
    ax.imshow(weights[:T, :S].float().cpu().numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), src_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(T), tgt_pieces, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    return fig


@torch.no_grad()
def attention_figures(model, tokenizer, src_ids: list[list[int]], out_ids: list[list[int]], device):
    """One figure per sentence from the model's teacher-forced cross-attention over
    its own output (``out_ids`` without BOS/EOS); none for a model whose
    ``attention`` returns None."""
    batch = collate(src_ids, out_ids).to(device)
    weights = model.attention(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, S) or None
    if weights is None:
        return []
    figures = []
    for i, (src, out) in enumerate(zip(src_ids, out_ids, strict=True)):
        rows = tokenizer.tgt_pieces(out) + ["</s>"]
        figures.append(attention_figure(weights[i], tokenizer.src_pieces(src), rows))
    return figures
