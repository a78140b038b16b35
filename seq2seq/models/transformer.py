"""The Transformer of Vaswani et al. (2017), written on the decoding interface.

``encode`` runs the encoder once; ``init_state`` computes every decoder layer's
cross-attention keys and values from the memory once per sentence; ``step``
feeds one token and appends its self-attention keys and values to the cache
carried in the returned state, so no step re-runs the prefix.

Beams share their sentence's cross-attention keys and values (``sentence_keys``,
see ``base.py``): cross-attention stacks a sentence's G rows as extra query
positions, (N * G, 1, D) -> (N, G, D), so no beam copies the memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.models.base import MAX_POSITIONS, EncoderDecoder, State, check_rates, check_sizes
from seq2seq.models.dropout import Dropout, dropout
from seq2seq.special import PAD_ID


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) table of sine/cosine position encodings."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class MultiHeadAttention(nn.Module):
    """Multi-head attention; self-attention when ``kv`` is None, else cross-attention."""

    def __init__(self, d_model: int, heads: int, dropout: float, cross: bool):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_model, d_model) if cross else None
        self.in_proj = nn.Linear(d_model, 2 * d_model if cross else 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, h, T, d)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of the memory (B, S, D): two (B, h, S, d)."""
        k, v = self.in_proj(memory).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x, mask=None, kv=None, cache=None, need_weights=False, group=1):
        """Attend from x (B, T, D).

        mask: (B / group, 1, 1, S) True where a key may be attended (None: causal self-attention).
        kv: precomputed cross-attention (k, v), each (B / group, h, S, d), shared by ``group``
        consecutive rows of x; cache: self-attention (k, v) of earlier steps.
        Returns the output (B, T, D), the (k, v) to cache, and (B, h, T, S) weights if asked.
        """
        B, T, D = x.shape
        x = x.reshape(B // group, group * T, D)  # (N, G * T, D) a sentence's rows as one sequence
        if kv is None:
            q, k, v = (self.split(t) for t in self.in_proj(x).chunk(3, dim=-1))
            if cache is not None:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # (B, h, t, d)
        else:
            q, (k, v) = self.split(self.q(x)), kv
        causal = mask is None and cache is None and q.size(2) > 1
        drop = self.dropout if self.training else 0.0
        weights = None
        # On the CPU the fused kernel is the faster one only in fp32 without dropout; with
        # bf16 or dropout the explicit softmax measured 1.4-4x faster (docs/BENCHMARKS.md).
        explicit = x.device.type == "cpu" and (q.dtype != torch.float32 or drop > 0)
        if need_weights or explicit:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (N, h, G * T, S)
            if causal:
                mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).tril()  # (T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.float().softmax(dim=-1)  # (N, h, G * T, S)
            weights = probs if need_weights else None
            y = dropout(probs, drop, self.training).to(v.dtype) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal)
        y = y.transpose(1, 2).reshape(B, T, D)  # (N, h, G * T, d) -> (B, T, D)
        if weights is not None:
            N, h, _, S = weights.shape
            weights = weights.view(N, h, group, T, S).transpose(1, 2).reshape(B, h, T, S)  # (B, h, T, S)
        return self.out(y), (k, v), weights


class Layer(nn.Module):
    """An encoder layer (self-attention, feed-forward) or a decoder layer (with cross-attention)."""

    def __init__(self, d_model, heads, ffn_dim, dropout, attention_dropout, decoder, pre_norm):
        super().__init__()
        self.pre_norm = pre_norm
        self.self_attn = MultiHeadAttention(d_model, heads, attention_dropout, cross=False)
        self.cross_attn = (
            MultiHeadAttention(d_model, heads, attention_dropout, cross=True) if decoder else None
        )
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, d_model))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3 if decoder else 2))
        self.drop = Dropout(dropout)

    def sublayer(self, i, x, fn):
        """Residual around fn, with LayerNorm before (pre-norm) or after (post-norm)."""
        if self.pre_norm:
            y, *extra = fn(self.norms[i](x))
            return x + self.drop(y), extra
        y, *extra = fn(x)
        return self.norms[i](x + self.drop(y)), extra

    def forward(
        self, x, self_mask=None, cross_kv=None, cross_mask=None, cache=None, need_weights=False, group=1
    ):
        """x: (B, T, D). Returns (B, T, D), this layer's self-attention (k, v) and cross weights.

        ``group`` consecutive rows of x share one row of ``cross_kv`` and ``cross_mask``.
        """
        x, (kv, _) = self.sublayer(0, x, lambda h: self.self_attn(h, self_mask, cache=cache))
        weights = None
        if self.cross_attn is not None:
            x, (_, weights) = self.sublayer(
                1, x, lambda h: self.cross_attn(h, cross_mask, cross_kv, None, need_weights, group)
            )
        x, _ = self.sublayer(len(self.norms) - 1, x, lambda h: (self.ffn(h),))
        return x, kv, weights


class Transformer(EncoderDecoder):
    """Encoder-decoder Transformer with sinusoidal positions and tied embeddings.

    Decoder state: per source sentence (N rows) "src_mask" (N, S) and, per layer,
    "cross_k", "cross_v" (N, h, S, d); per decoder row (B = N * G rows) the
    self-attention cache "self_k", "self_v" (B, h, t, d) per layer and the next
    position "pos" (B,).

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes (set by the trainer).
        shared_vocab: source and target use one vocabulary, so all three
            embedding matrices (source, target, output) are one.
        tie_embeddings: tie the target embedding and the output layer.
        pre_norm: LayerNorm before each sublayer (default) or after it.
        attention_layer: decoder layer whose cross-attention ``attention`` shows.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        shared_vocab: bool = True,
        d_model: int = 256,
        heads: int = 4,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        pre_norm: bool = True,
        tie_embeddings: bool = True,
        max_positions: int = MAX_POSITIONS,
        attention_layer: int = -1,
    ):
        super().__init__()
        check_sizes(
            d_model=d_model,
            heads=heads,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            ffn_dim=ffn_dim,
            max_positions=max_positions,
        )
        check_rates(dropout=dropout, attention_dropout=attention_dropout)
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        if shared_vocab and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"shared_vocab needs equal vocab sizes, got {src_vocab_size} and {tgt_vocab_size}"
            )
        if not -decoder_layers <= attention_layer < decoder_layers:
            raise ValueError(
                f"attention_layer ({attention_layer}) must name one of the {decoder_layers} decoder layers"
            )
        self.d_model, self.heads, self.attention_layer = d_model, heads, attention_layer
        self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=PAD_ID)
        if shared_vocab:
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model, padding_idx=PAD_ID)
        self.register_buffer("positions", sinusoidal_positions(max_positions, d_model), persistent=False)
        args = (d_model, heads, ffn_dim, dropout, attention_dropout)
        self.encoder = nn.ModuleList(Layer(*args, False, pre_norm) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(Layer(*args, True, pre_norm) for _ in range(decoder_layers))
        self.encoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.drop = Dropout(dropout)
        self.output = nn.Linear(d_model, tgt_vocab_size, bias=False)
        self._init_weights()
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    def _init_weights(self):
        for name, p in self.named_parameters():
            if "embed" in name:
                nn.init.normal_(p, mean=0.0, std=self.d_model**-0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
        with torch.no_grad():
            for emb in {self.src_embed, self.tgt_embed}:
                emb.weight[PAD_ID].zero_()

    @property
    def max_positions(self) -> int:
        return self.positions.size(0)

    def embed(self, table: nn.Embedding, tokens: torch.Tensor, start) -> torch.Tensor:
        """tokens (B, T) -> (B, T, D) scaled embeddings plus positions from ``start`` (B,)."""
        pos = start.unsqueeze(1) + torch.arange(tokens.size(1), device=tokens.device)  # (B, T)
        return self.drop(table(tokens) * math.sqrt(self.d_model) + self.positions[pos])

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> State:
        """src (B, S) -> {"memory": (B, S, D), "src_mask": (B, S) True on real tokens}."""
        src_mask = src != PAD_ID
        attn_mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        x = self.embed(self.src_embed, src, torch.zeros_like(src_lengths))
        for layer in self.encoder:
            x, _, _ = layer(x, self_mask=attn_mask)
        return {"memory": self.encoder_norm(x), "src_mask": src_mask}

    sentence_keys = ("src_mask", "cross_k", "cross_v")

    def init_state(self, memory: State) -> State:
        """Decoder state before the first token, one row per sentence (keys: class docstring)."""
        B = memory["memory"].size(0)
        cross = [layer.cross_attn.keys_values(memory["memory"]) for layer in self.decoder]
        empty = memory["memory"].new_zeros(B, self.heads, 0, self.d_model // self.heads)  # (B, h, 0, d)
        return {
            "src_mask": memory["src_mask"],
            "cross_k": [k for k, _ in cross],
            "cross_v": [v for _, v in cross],
            "self_k": [empty] * len(self.decoder),
            "self_v": [empty] * len(self.decoder),
            "pos": torch.zeros(B, dtype=torch.long, device=empty.device),
        }

    def decode(self, tgt: torch.Tensor, state: State, need_weights: bool = False, layer: int | None = None):
        """Run the decoder on tgt (B, T) after the cached prefix in ``state``.

        Returns (B, T, D) outputs, the new state and the cross-attention (B, h, T, S) of
        decoder layer ``layer`` (None: ``attention_layer``) when ``need_weights``.
        """
        cross_mask = state["src_mask"][:, None, None, :]  # (N, 1, 1, S)
        x = self.embed(self.tgt_embed, tgt, state["pos"])
        first = state["self_k"][0].size(2) == 0 and tgt.size(1) > 1  # full sequence: causal mask
        chosen = range(len(self.decoder))[self.attention_layer if layer is None else layer]
        group = self.rows_per_sentence(state)
        new_k, new_v, weights = [], [], None
        for i, block in enumerate(self.decoder):
            cache = None if first else (state["self_k"][i], state["self_v"][i])
            kv = (state["cross_k"][i], state["cross_v"][i])
            x, (k, v), w = block(x, None, kv, cross_mask, cache, need_weights and i == chosen, group)
            new_k.append(k)
            new_v.append(v)
            weights = w if w is not None else weights
        new_state = {**state, "self_k": new_k, "self_v": new_v, "pos": state["pos"] + tgt.size(1)}
        return self.decoder_norm(x), new_state, weights

    def step(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tgt (B,) -> logits (B, V) and the state with this token's keys/values cached."""
        h, state, _ = self.decode(tgt.unsqueeze(1), state)  # (B, 1, D)
        return self.project(h.squeeze(1)), state

    def features(self, src, src_lengths, tgt_in) -> torch.Tensor:
        """Teacher-forced decoder outputs (B, T, D)."""
        h, _, _ = self.decode(tgt_in, self.init_state(self.encode(src, src_lengths)))
        return h

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(features)

    def attention(self, src, src_lengths, tgt_in, layer=None, head=None) -> torch.Tensor:
        """Cross-attention (B, T, S) of decoder layer ``layer`` (None: ``attention_layer``),
        of one head or (``head`` None) averaged over the heads."""
        _, _, weights = self.decode(tgt_in, self.init_state(self.encode(src, src_lengths)), True, layer)
        return weights.mean(dim=1) if head is None else weights[:, head]

    @property
    def attention_grid(self) -> tuple[int, int]:
        """(decoder layers, heads): every layer's cross-attention can be shown, head by head."""
        return len(self.decoder), self.heads
