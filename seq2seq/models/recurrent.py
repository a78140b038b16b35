"""Recurrent encoder-decoder with attention (Bahdanau et al., 2015; Luong et al., 2015).

Encoder: a (bidirectional, multi-layer) GRU or LSTM over the source embeddings;
its outputs are the ``memory`` the decoder attends to. A bidirectional encoder
uses ``hidden_size // 2`` units per direction, so the memory always has
``hidden_size`` features, like the decoder states (``dot`` attention needs that).

Decoder, one target token at a time (Luong et al.'s "global" flow):

    x_t  = [embed(y_{t-1}); h~_{t-1}]        input feeding (just embed(y_{t-1}) without it)
    h_t  = RNN(x_t, h_{t-1})                  top layer's state is the attention query
    c_t  = attention(h_t, memory)             context vector
    h~_t = tanh(W_c [c_t; h_t])               attentional vector
    logits_t = W_out h~_t + b

The decoder's first state comes from a bridge, ``tanh(W_b [final encoder
states])``, one state per decoder layer (for an LSTM a second bridge gives the
cells).

``tie_embeddings`` makes ``W_out`` the target embedding table. h~_t has
``hidden_size`` features, so tying needs ``emb_size == hidden_size``; other
sizes raise a ValueError rather than silently adding a projection.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.models.attention import build_attention
from seq2seq.models.base import MAX_POSITIONS, EncoderDecoder, State, check_rates, check_sizes
from seq2seq.models.dropout import Dropout
from seq2seq.special import PAD_ID

RNN_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def make_embedding(vocab_size: int, emb_size: int) -> nn.Embedding:
    """Embedding table with small uniform weights and a zero PAD row."""
    embedding = nn.Embedding(vocab_size, emb_size, padding_idx=PAD_ID)
    nn.init.uniform_(embedding.weight, -0.1, 0.1)
    with torch.no_grad():
        embedding.weight[PAD_ID].zero_()
    return embedding


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, **kwargs):
    """A batch-first ``nn.GRU`` or ``nn.LSTM``, dropout between its layers; an LSTM's
    forget gates start with bias 1."""
    if cell not in RNN_CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(RNN_CELLS)}")
    dropout = dropout if num_layers > 1 else 0.0
    rnn = RNN_CELLS[cell](input_size, hidden_size, num_layers, batch_first=True, dropout=dropout, **kwargs)
    if cell == "lstm":  # forget-gate bias 1 (Jozefowicz et al., 2015): remember by default early on
        for name, bias in rnn.named_parameters():
            if name.startswith("bias_ih"):  # gates i, f, g, o; bias_hh adds its own (small) bias
                with torch.no_grad():
                    bias[hidden_size : 2 * hidden_size].fill_(1.0)
    return rnn


class RecurrentEncoder(nn.Module):
    """Bidirectional multi-layer RNN over packed source sequences."""

    def __init__(self, embedding, cell, hidden_size, num_layers, bidirectional, dropout):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        if hidden_size % self.directions:
            raise ValueError(f"hidden_size {hidden_size} must be even for a bidirectional encoder")
        self.embedding = embedding
        self.dropout = Dropout(dropout)
        self.rnn = make_rnn(
            cell,
            embedding.embedding_dim,
            hidden_size // self.directions,
            num_layers,
            dropout,
            bidirectional=bidirectional,
        )

    def merge_directions(self, final: torch.Tensor) -> torch.Tensor:
        """(layers * dirs, B, H / dirs) final states -> (B, layers, H), directions concatenated."""
        layers_dirs, batch, size = final.shape
        final = final.view(
            layers_dirs // self.directions, self.directions, batch, size
        )  # (L, dirs, B, H/dirs)
        final = final.permute(2, 0, 1, 3)  # (B, L, dirs, H/dirs)
        return final.reshape(batch, -1, self.directions * size)  # (B, L, H)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Encode a padded batch.

        Args:
            src: (B, S) source ids; src_lengths: (B,).
        Returns:
            memory: (B, S, H) outputs of the top layer, zeros at padding.
            finals: [(B, L_enc, H)] final hidden states, plus the final cells for an LSTM.
        """
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, finals = self.rnn(packed)
        memory, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))  # (B, S, H)
        finals = finals if isinstance(finals, tuple) else (finals,)
        return memory, [self.merge_directions(f) for f in finals]


class Bridge(nn.Module):
    """Maps the encoder's final states to the decoder's first states: tanh(W [finals])."""

    def __init__(self, encoder_layers: int, decoder_layers: int, hidden_size: int):
        super().__init__()
        self.decoder_layers = decoder_layers
        self.linear = nn.Linear(encoder_layers * hidden_size, decoder_layers * hidden_size)

    def forward(self, final: torch.Tensor) -> torch.Tensor:
        """(B, L_enc, H) encoder finals -> (B, L_dec, H) decoder initial states."""
        batch = final.size(0)
        state = torch.tanh(self.linear(final.reshape(batch, -1)))  # (B, L_dec * H)
        return state.view(batch, self.decoder_layers, -1)  # (B, L_dec, H)


class RecurrentEncoderDecoder(EncoderDecoder):
    """GRU/LSTM encoder-decoder with attention, input feeding and tied embeddings.

    Decoder state (all tensors batch-first). Per decoder row (B = N * G rows):
        hidden: (B, L_dec, H) decoder RNN states;  cell: (B, L_dec, H), LSTM only;
        feed: (B, H) previous attentional vector, only with input feeding;
        attention: (B, S) weights of the last step (zeros before the first).
    Per source sentence (N rows), shared by its G rows (``sentence_keys``):
        memory: (N, S, H); keys: (N, S, K) precomputed attention keys;
        src_mask: (N, S) True at real tokens; src_lengths: (N,).
    """

    sentence_keys = ("memory", "keys", "src_mask", "src_lengths")

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        shared_vocab: bool = False,
        cell: str = "gru",
        attention: str = "bahdanau",
        emb_size: int = 256,
        hidden_size: int = 256,
        encoder_layers: int = 2,
        decoder_layers: int = 1,
        bidirectional: bool = True,
        input_feeding: bool = True,
        dropout: float = 0.3,
        tie_embeddings: bool = True,
        local_window: int = 10,
        max_positions: int = MAX_POSITIONS,
    ):
        super().__init__()
        check_sizes(
            emb_size=emb_size,
            hidden_size=hidden_size,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            max_positions=max_positions,
        )
        check_rates(dropout=dropout)
        if tie_embeddings and emb_size != hidden_size:
            raise ValueError(
                f"tie_embeddings needs emb_size ({emb_size}) == hidden_size ({hidden_size}), "
                "the size of the attentional vector fed to the output layer"
            )
        if shared_vocab and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"shared_vocab needs equal vocab sizes, got {src_vocab_size} and {tgt_vocab_size}"
            )
        self.cell = cell
        self.input_feeding = input_feeding
        self._max_positions = max_positions

        src_embed = make_embedding(src_vocab_size, emb_size)
        self.tgt_embed = src_embed if shared_vocab else make_embedding(tgt_vocab_size, emb_size)
        self.encoder = RecurrentEncoder(src_embed, cell, hidden_size, encoder_layers, bidirectional, dropout)
        self.bridges = nn.ModuleList(
            Bridge(encoder_layers, decoder_layers, hidden_size) for _ in range(2 if cell == "lstm" else 1)
        )
        rnn_input_size = emb_size + (hidden_size if input_feeding else 0)
        self.decoder_rnn = make_rnn(cell, rnn_input_size, hidden_size, decoder_layers, dropout)
        self.attention_layer = build_attention(
            attention, hidden_size, hidden_size, local_window, max_positions
        )
        self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False)  # W_c
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(hidden_size, tgt_vocab_size)
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    # ----- encoder side -------------------------------------------------------------------------

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> State:
        """Encode the source.

        Args:
            src: (B, S) source ids; src_lengths: (B,).
        Returns:
            {"memory": (B, S, H), "src_mask": (B, S), "src_lengths": (B,),
             "finals": [(B, L_enc, H)] (hidden, and cell for an LSTM)}.
        """
        memory, finals = self.encoder(src, src_lengths)
        src_mask = torch.arange(src.size(1), device=src.device) < src_lengths.unsqueeze(1)  # (B, S)
        return {"memory": memory, "src_mask": src_mask, "src_lengths": src_lengths, "finals": finals}

    def init_state(self, memory: State) -> State:
        """Decoder state before the first target token (keys see the class docstring)."""
        hidden = [
            bridge(final) for bridge, final in zip(self.bridges, memory["finals"], strict=True)
        ]  # [(B, L_dec, H)]
        batch, src_len, hidden_size = memory["memory"].shape
        state = {
            "hidden": hidden[0],
            "attention": memory["memory"].new_zeros(batch, src_len),
            "memory": memory["memory"],
            "keys": self.attention_layer.project_keys(memory["memory"]),
            "src_mask": memory["src_mask"],
            "src_lengths": memory["src_lengths"],
        }
        if self.cell == "lstm":
            state["cell"] = hidden[1]
        if self.input_feeding:
            state["feed"] = memory["memory"].new_zeros(batch, hidden_size)
        return state

    # ----- decoder side -------------------------------------------------------------------------

    def run_rnn(self, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Run the decoder RNN over ``inputs`` (B, T, I) from ``state``.

        Returns (B, T, H) top-layer outputs and a new state with the new hidden (and cell).
        """
        hidden = state["hidden"].transpose(0, 1).contiguous()  # (L_dec, B, H)
        if self.cell == "lstm":
            cell = state["cell"].transpose(0, 1).contiguous()  # (L_dec, B, H)
            outputs, (hidden, cell) = self.decoder_rnn(inputs, (hidden, cell))
            state = {**state, "cell": cell.transpose(0, 1)}  # (B, L_dec, H)
        else:
            outputs, hidden = self.decoder_rnn(inputs, hidden)
        return outputs, {**state, "hidden": hidden.transpose(0, 1)}  # (B, L_dec, H)

    def attend(self, query: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Attentional vectors h~ = tanh(W_c [c; h]) for queries ``h`` (B, T, H), the
        rows of each sentence attending over its one copy of the memory.

        Returns (B, T, H) attentional vectors (after dropout) and (B, T, S) weights.
        """
        context, weights = self.attention_layer(
            query,
            state["keys"],
            state["memory"],
            state["src_mask"],
            state["src_lengths"],
            group=self.rows_per_sentence(state),
        )  # (B, T, H), (B, T, S)
        attentional = torch.tanh(self.combine(torch.cat([context, query], dim=-1)))  # (B, T, H)
        return self.dropout(attentional), weights

    def decode(self, tgt_in: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Run the decoder over ``tgt_in`` (B, T) with teacher forcing.

        Without input feeding the RNN takes the whole sequence in one call and
        attention scores all positions at once; with it, the previous
        attentional vector is part of the next input, so it loops over time.

        Returns (B, T, H) attentional vectors, (B, T, S) weights and the final state.
        """
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        if not self.input_feeding:
            outputs, state = self.run_rnn(embedded, state)  # (B, T, H)
            attentional, weights = self.attend(outputs, state)
            return attentional, weights, {**state, "attention": weights[:, -1]}
        steps, step_weights = [], []
        for t in range(tgt_in.size(1)):
            inputs = torch.cat([embedded[:, t], state["feed"]], dim=-1).unsqueeze(1)  # (B, 1, E + H)
            output, state = self.run_rnn(inputs, state)  # (B, 1, H)
            attentional, weights = self.attend(output, state)  # (B, 1, H), (B, 1, S)
            state = {**state, "feed": attentional.squeeze(1), "attention": weights.squeeze(1)}
            steps.append(attentional)
            step_weights.append(weights)
        return torch.cat(steps, dim=1), torch.cat(step_weights, dim=1), state

    def step(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Advance by one token: (B,) previous tokens -> (B, V) logits and the new state."""
        attentional, _, state = self.decode(tgt.unsqueeze(1), state)  # (B, 1, H)
        return self.project(attentional.squeeze(1)), state

    def features(self, src, src_lengths, tgt_in) -> torch.Tensor:
        """Teacher-forced pass: (B, S) src, (B,) lengths, (B, T) tgt_in -> (B, T, H)."""
        state = self.init_state(self.encode(src, src_lengths))
        return self.decode(tgt_in, state)[0]

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Output layer: (..., H) attentional vectors -> (..., V) logits."""
        return self.output(features)

    def attention(self, src, src_lengths, tgt_in, layer=None, head=None) -> torch.Tensor:
        """Attention weights (B, T, S) of a teacher-forced pass (one map: ``layer`` and
        ``head`` can only be 0 or None)."""
        state = self.init_state(self.encode(src, src_lengths))
        return self.decode(tgt_in, state)[1]

    @property
    def attention_grid(self) -> tuple[int, int]:
        """One attention map: the decoder's attention over the memory."""
        return 1, 1

    @property
    def max_positions(self) -> int | None:
        """Longest target the decoders should produce (RNNs have no built-in limit)."""
        return self._max_positions
