"""Encoder-decoder models behind one interface (``base.EncoderDecoder``): the Transformer
(``transformer.py``), the recurrent GRU and LSTM models (``recurrent.py``) with their attention
types (``attention.py``), the dropout they share (``dropout.py``), and an ensemble of several
(``ensemble.py``). ``build_model`` instantiates the one a ``model`` config names.

May import only the leaf modules (``special``, ``errors``): everything else is written against
this package, never the other way round.
"""

from __future__ import annotations

from seq2seq.errors import UserError
from seq2seq.models.base import EncoderDecoder, map_state
from seq2seq.models.ensemble import Ensemble
from seq2seq.models.recurrent import RecurrentEncoderDecoder
from seq2seq.models.transformer import Transformer

# The constructor arguments that ``build_model`` sets from the tokenizer, never a config.
DATA_ARGUMENTS = ("src_vocab_size", "tgt_vocab_size", "shared_vocab")


def build_model(model_cfg, src_vocab_size: int, tgt_vocab_size: int, shared_vocab: bool) -> EncoderDecoder:
    """Instantiate the model a ``model`` config names (``_target_`` and its constructor
    arguments) for these vocabularies; a bad argument is a ``UserError``."""
    # hydra's instantiate (about 0.3 s to import) loads only when a model is built from a config.
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(model_cfg) if isinstance(model_cfg, dict) else model_cfg
    try:
        model = instantiate(
            cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, shared_vocab=shared_vocab
        )
    except InstantiationException as e:
        cause = e.__cause__ or e
        message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise UserError(f"model: {message}; check the model.* keys against configs/model/") from None
    if not isinstance(model, EncoderDecoder):
        raise UserError(f"model._target_={cfg._target_}: not an EncoderDecoder of seq2seq.models")
    return model


__all__ = [
    "DATA_ARGUMENTS",
    "EncoderDecoder",
    "Ensemble",
    "RecurrentEncoderDecoder",
    "Transformer",
    "build_model",
    "map_state",
]
