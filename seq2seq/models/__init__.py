"""Encoder-decoder models behind one interface (see ``base.EncoderDecoder``)."""

from seq2seq.models.base import EncoderDecoder, map_state
from seq2seq.models.recurrent import RecurrentEncoderDecoder
from seq2seq.models.transformer import Transformer

__all__ = ["EncoderDecoder", "RecurrentEncoderDecoder", "Transformer", "map_state"]
