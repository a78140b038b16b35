"""A Transformer as a CTranslate2 model specification (``python -m seq2seq.export``).

CTranslate2 is a C++ inference engine for Transformer encoder-decoders; it runs
no recurrent model. Its ``TransformerSpec`` names every weight the engine reads;
``transformer_spec`` fills it from a trained ``Transformer``:

    ours                                    CTranslate2
    src_embed / tgt_embed                   encoder.embeddings[0] / decoder.embeddings
    positions (L, D), our sinusoidal table  {encoder,decoder}.position_encodings.encodings
    Layer.self_attn.in_proj (3D, D): q,k,v  layer.self_attention.linear[0] (fused QKV)
    Layer.self_attn.out                     layer.self_attention.linear[1]
    Layer.cross_attn.q                      layer.attention.linear[0]
    Layer.cross_attn.in_proj (2D, D): k,v   layer.attention.linear[1] (fused KV)
    Layer.cross_attn.out                    layer.attention.linear[2]
    Layer.norms[0], [1], [-1]               self_attention / attention / ffn .layer_norm
    Layer.ffn[0], ffn[2]                    ffn.linear_0, ffn.linear_1
    encoder_norm / decoder_norm (pre-norm)  {encoder,decoder}.layer_norm
    output (V, D), no bias                  decoder.projection

Both scale embeddings by sqrt(D) before adding positions; tied matrices are the
same array, which CTranslate2 stores once. The position table is written out
because CTranslate2's own sinusoidal table orders sines and cosines differently.
The special tokens are the SentencePiece pieces of ``seq2seq.special``'s ids;
the source gets EOS appended (``add_source_eos``) and the decoder starts from BOS.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from seq2seq.errors import UserError
from seq2seq.models.base import EncoderDecoder
from seq2seq.models.transformer import Layer, MultiHeadAttention, Transformer
from seq2seq.special import BOS_ID, EOS_ID, UNK_ID


def array(tensor) -> np.ndarray:
    return tensor.detach().float().cpu().contiguous().numpy()


def set_linear(spec, linear: nn.Linear) -> None:
    spec.weight = array(linear.weight)
    if linear.bias is not None:
        spec.bias = array(linear.bias)


def set_norm(spec, norm: nn.LayerNorm) -> None:
    spec.gamma, spec.beta = array(norm.weight), array(norm.bias)


def set_attention(spec, attn: MultiHeadAttention) -> None:
    linears = [attn.in_proj, attn.out] if attn.q is None else [attn.q, attn.in_proj, attn.out]
    for target, linear in zip(spec.linear, linears, strict=True):
        set_linear(target, linear)


def set_layer(spec, layer: Layer) -> None:
    set_norm(spec.self_attention.layer_norm, layer.norms[0])
    set_attention(spec.self_attention, layer.self_attn)
    if layer.cross_attn is not None:
        set_norm(spec.attention.layer_norm, layer.norms[1])
        set_attention(spec.attention, layer.cross_attn)
    set_norm(spec.ffn.layer_norm, layer.norms[-1])
    set_linear(spec.ffn.linear_0, layer.ffn[0])
    set_linear(spec.ffn.linear_1, layer.ffn[2])


def transformer_spec(model: EncoderDecoder, src_pieces: list[str], tgt_pieces: list[str]):
    """The ``ctranslate2.specs.TransformerSpec`` of a trained Transformer.

    Args:
        model: a ``Transformer`` (any other model is a ``UserError``).
        src_pieces, tgt_pieces: the vocabularies, piece i having id i.
    Returns:
        the filled spec, not yet validated or quantized.
    """
    if not isinstance(model, Transformer):
        raise UserError(
            f"a {type(model).__name__} cannot be exported: CTranslate2 runs Transformers only "
            "(+model=transformer); translate and evaluate run this checkpoint with engine=torch"
        )
    from ctranslate2.specs import TransformerSpec  # CTranslate2 is optional

    pre_norm = model.encoder[0].pre_norm
    spec = TransformerSpec.from_config(
        (len(model.encoder), len(model.decoder)), model.heads, pre_norm=pre_norm
    )
    positions = array(model.positions)  # (L, D)
    for side, table, layers, final in (
        (spec.encoder, model.src_embed, model.encoder, model.encoder_norm),
        (spec.decoder, model.tgt_embed, model.decoder, model.decoder_norm),
    ):
        embeddings = side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings
        embeddings.weight = array(table.weight)
        side.position_encodings.encodings = positions
        if pre_norm:
            set_norm(side.layer_norm, final)
        for layer_spec, layer in zip(side.layer, layers, strict=True):
            set_layer(layer_spec, layer)
    set_linear(spec.decoder.projection, model.output)

    spec.register_source_vocabulary(src_pieces)
    spec.register_target_vocabulary(tgt_pieces)
    config = spec.config
    config.unk_token, config.bos_token = tgt_pieces[UNK_ID], tgt_pieces[BOS_ID]
    config.eos_token, config.decoder_start_token = tgt_pieces[EOS_ID], tgt_pieces[BOS_ID]
    config.add_source_eos = True
    config.layer_norm_epsilon = model.encoder[0].norms[0].eps
    return spec
