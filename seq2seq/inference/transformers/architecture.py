"""Our Transformer as a stock transformers class: which class, its config, and its weights.

Two stock classes compute the function of every Transformer seq2seq trains:

    model.pre_norm=true (default)   PegasusForConditionalGeneration: pre-norm layers, a final
                                    LayerNorm after encoder and decoder, sinusoidal positions from 0
    model.pre_norm=false            MarianMTModel: post-norm layers, no final LayerNorm, the same
                                    positions

Both scale embeddings by sqrt(D) (``scale_embedding``), add positions from 0, use biased q, k, v
and output projections with 1/sqrt(d) attention scaling, a ReLU feed-forward, LayerNorm with
eps 1e-5 and an output layer without bias (plus ``final_logits_bias``, zero here).

Positions. Ours interleave sines and cosines over the model dimension (``table[:, 0::2]`` sin,
``[:, 1::2]`` cos); theirs put all sines first, then all cosines, at the same frequencies. The
permutation ``halves(D)`` maps one layout to the other, and applying it to every weight that
reads or writes the model dimension gives the same function with a permuted residual stream:

    embeddings (V, D), lm_head (V, D), LayerNorm weight and bias (D,)   columns / entries permuted
    q, k, v, fc1 (out, D): they read the stream                         input columns permuted
    out_proj, fc2 (D, in) and their biases: they write it               output rows permuted

Attention heads and the feed-forward's inner dimension are left as they are.

Vocabularies. One vocabulary and a tied output layer: every matrix is one (``tie_word_embeddings``).
Otherwise each matrix is stored apart (``tie_word_embeddings=false``; for Marian
``share_encoder_decoder_embeddings=false`` with ``decoder_vocab_size``). Pegasus has one
``vocab_size`` for both sides: with two vocabularies of different sizes the smaller matrices get
zero rows up to the larger size, and ``final_logits_bias`` is -inf on target ids past the target
vocabulary, so they are never produced and the softmax over the real ids is unchanged.
Pegasus keeps the encoder's and decoder's embeddings apart only since transformers 5: 4.x ties
them to one matrix and loads such a folder without a word, wrongly (``needs_transformers_5``).
"""

from __future__ import annotations

import torch

from seq2seq.errors import UserError
from seq2seq.models.transformer import Layer, MultiHeadAttention, Transformer
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID

PRE_NORM, POST_NORM = "PegasusForConditionalGeneration", "MarianMTModel"


def halves(dim: int) -> torch.Tensor:
    """(dim,) index: position ``k`` of transformers' layout holds our index ``halves(dim)[k]``:
    the even indices (our sines) first, then the odd ones (our cosines)."""
    return torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])


def check_convertible(model) -> None:
    """Refuse, in one line, a model that no stock transformers class computes."""
    if not isinstance(model, Transformer):
        raise UserError(
            f"a {type(model).__name__} cannot be exported with format=transformers: transformers has no "
            "recurrent encoder-decoder architecture; train a Transformer (+model=transformer)"
        )
    eps = model.encoder[0].norms[0].eps
    if eps != 1e-5:  # transformers' LayerNorms use torch's default
        raise UserError(f"LayerNorm eps {eps}: Pegasus and Marian use 1e-5; this model has no equivalent")


def layout(model: Transformer) -> dict:
    """What decides the class and its config: pre_norm, joint (one embedding), tied (the output
    layer is the target embedding), and the vocabulary sizes."""
    return {
        "pre_norm": model.encoder[0].pre_norm,
        "joint": model.src_embed is model.tgt_embed,
        "tied": model.output.weight is model.tgt_embed.weight,
        "src_vocab": model.src_embed.num_embeddings,
        "tgt_vocab": model.tgt_embed.num_embeddings,
    }


def needs_transformers_5(model: Transformer) -> bool:
    """Whether transformers 4.x would load the export of ``model`` wrongly: a pre-norm model with
    two vocabularies, whose Pegasus needs apart encoder and decoder embeddings."""
    shape = layout(model)
    return shape["pre_norm"] and not shape["joint"]


def hf_config(model: Transformer) -> tuple[str, dict]:
    """The stock class's name and the keyword arguments of its config (``PegasusConfig`` or
    ``MarianConfig``). The dropout rates are the model's, for fine-tuning; in eval mode they do
    nothing."""
    check_convertible(model)
    shape = layout(model)
    first = model.encoder[0]
    config = {
        "d_model": model.d_model,
        "encoder_layers": len(model.encoder),
        "decoder_layers": len(model.decoder),
        "encoder_attention_heads": model.heads,
        "decoder_attention_heads": model.heads,
        "encoder_ffn_dim": first.ffn[0].out_features,
        "decoder_ffn_dim": model.decoder[0].ffn[0].out_features,
        "activation_function": "relu",
        "dropout": model.drop.p,
        "attention_dropout": first.self_attn.dropout,
        "activation_dropout": 0.0,
        "max_position_embeddings": model.max_positions,
        "scale_embedding": True,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "decoder_start_token_id": BOS_ID,
        "forced_eos_token_id": EOS_ID,
        "is_encoder_decoder": True,
    }
    one_matrix = shape["joint"] and shape["tied"]
    if shape["pre_norm"]:
        config.update(vocab_size=max(shape["src_vocab"], shape["tgt_vocab"]), tie_word_embeddings=one_matrix)
        return PRE_NORM, config
    config.update(
        vocab_size=shape["src_vocab"],
        decoder_vocab_size=shape["tgt_vocab"],
        share_encoder_decoder_embeddings=one_matrix,
        tie_word_embeddings=shape["tied"],
    )
    return POST_NORM, config


def _rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """weight (V, D) with zero rows appended up to (rows, D)."""
    extra = rows - weight.size(0)
    return weight if extra == 0 else torch.cat([weight, weight.new_zeros(extra, weight.size(1))])


def _linear(out: dict, name: str, weight, bias, perm, reads: bool) -> None:
    """A projection that reads the residual stream (input columns permuted) or writes it
    (output rows and bias permuted)."""
    if reads:
        out[f"{name}.weight"], out[f"{name}.bias"] = weight[:, perm], bias
    else:
        out[f"{name}.weight"], out[f"{name}.bias"] = weight[perm], bias[perm]


def _norm(out: dict, name: str, norm, perm) -> None:
    out[f"{name}.weight"], out[f"{name}.bias"] = norm.weight[perm], norm.bias[perm]


def _attention(out: dict, name: str, attn: MultiHeadAttention, perm) -> None:
    w, b = attn.in_proj.weight, attn.in_proj.bias  # (3D, D) q, k, v; cross: (2D, D) k, v
    parts = ["q", "k", "v"] if attn.q is None else ["k", "v"]
    if attn.q is not None:
        _linear(out, f"{name}.q_proj", attn.q.weight, attn.q.bias, perm, reads=True)
    for part, pw, pb in zip(parts, w.chunk(len(parts)), b.chunk(len(parts)), strict=True):
        _linear(out, f"{name}.{part}_proj", pw, pb, perm, reads=True)
    _linear(out, f"{name}.out_proj", attn.out.weight, attn.out.bias, perm, reads=False)


def _layer(out: dict, name: str, layer: Layer, perm) -> None:
    _norm(out, f"{name}.self_attn_layer_norm", layer.norms[0], perm)
    _attention(out, f"{name}.self_attn", layer.self_attn, perm)
    if layer.cross_attn is not None:
        _norm(out, f"{name}.encoder_attn_layer_norm", layer.norms[1], perm)
        _attention(out, f"{name}.encoder_attn", layer.cross_attn, perm)
    _norm(out, f"{name}.final_layer_norm", layer.norms[-1], perm)
    _linear(out, f"{name}.fc1", layer.ffn[0].weight, layer.ffn[0].bias, perm, reads=True)
    _linear(out, f"{name}.fc2", layer.ffn[2].weight, layer.ffn[2].bias, perm, reads=False)


@torch.no_grad()
def hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """The weights of ``hf_config``'s class, float32, by transformers' names: the full set its
    ``load_state_dict`` takes (tied names hold the same values)."""
    check_convertible(model)
    shape = layout(model)
    perm = halves(model.d_model)
    _, config = hf_config(model)
    rows = config["vocab_size"] if shape["pre_norm"] else None
    src = model.src_embed.weight.float()[:, perm]  # (V_src, D)
    tgt = model.tgt_embed.weight.float()[:, perm]  # (V_tgt, D)
    head = model.output.weight.float()[:, perm]  # (V_tgt, D)
    if rows is not None:
        src, tgt, head = _rows(src, rows), _rows(tgt, rows), _rows(head, rows)
    out = {
        "model.encoder.embed_tokens.weight": src,
        "model.decoder.embed_tokens.weight": tgt,
        "lm_head.weight": head,
    }
    if shape["pre_norm"] or (shape["joint"] and shape["tied"]):
        out["model.shared.weight"] = src  # Marian has it only when the matrices are one
    bias = torch.zeros(1, head.size(0))
    bias[:, model.tgt_embed.num_embeddings :] = float("-inf")  # Pegasus's padding ids: never produced
    out["final_logits_bias"] = bias
    positions = model.positions.float()[:, perm]  # (L, D)
    for side, layers in (("encoder", model.encoder), ("decoder", model.decoder)):
        out[f"model.{side}.embed_positions.weight"] = positions
        for i, layer in enumerate(layers):
            _layer(out, f"model.{side}.layers.{i}", layer, perm)
    if shape["pre_norm"]:
        _norm(out, "model.encoder.layer_norm", model.encoder_norm, perm)
        _norm(out, "model.decoder.layer_norm", model.decoder_norm, perm)
    return {k: v.detach().float().contiguous() for k, v in out.items()}
