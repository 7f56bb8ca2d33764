"""The recurrent encoder every task shares: optional embedding, then an RNN, LSTM or GRU over a padded batch.

    inputs   (B, T) token ids (long) when built with ``vocab_size``,
             or (B, T, F) real-valued features (float) when built with ``input_size`` (F = input_size)
    lengths  (B,)   valid steps per sequence, each in [1, T]; any device
    features optional (B, T, feature_size) float, concatenated to each step's embedding (e.g. a
             character-level word representation)
    initial  optional starting state in torch's layout, h_0 or (h_0, c_0) for the LSTM (default zeros)
    outputs  (B, T, D) D = hidden_size * num_directions, forward then backward per step; exact zeros at padding
    final    (num_layers * num_directions, B, H) in torch's layout (layer-major, direction-minor);
             for the LSTM a tuple (h_n, c_n). Forward direction: the state at each sequence's last valid
             step; backward direction: the state after reading back to step 0.

``impl="fused"`` runs torch.nn's kernels: on GPU the whole stack on a packed sequence (cuDNN), on CPU
each layer and direction on the padded batch (oneDNN), both exact for every length. ``impl="auto"``
(the default) is ``fused`` except that on CPU a batch that is mostly padding goes packed too: the
padded path computes every padded step, and past PACKED_ABOVE_PADDING the packed one is faster;
``impl="reference"`` runs :mod:`rnnlab.backbones.reference`. All have the same parameter names, so a
state dict from one loads into the others. Inside ``with backbone.recording() as recorder:`` each
runs step by step and reports every step's states and gates (:mod:`rnnlab.backbones.recording`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.backbones.recording import RecurrenceRecorder
from rnnlab.backbones.reference import ReferenceGRU, ReferenceLSTM, ReferenceRNN
from rnnlab.backbones.stacking import State, as_state, run_stacked
from rnnlab.errors import UserError, check_choice
from rnnlab.masking import lengths_to_mask

CELLS = ("rnn", "lstm", "gru")
IMPLS = ("auto", "fused", "reference")
NONLINEARITIES = ("tanh", "relu")

_FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_REFERENCE = {"rnn": ReferenceRNN, "lstm": ReferenceLSTM, "gru": ReferenceGRU}

FinalState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h_n, or (h_n, c_n) for the LSTM

#: impl=auto on CPU: a batch with a larger share of padded steps runs packed. Measured (scripts/
#: benchmark.py's machine, LSTM H=128, B=32, T=64, forward + backward): the padded path takes
#: 0.7-1.0 x the packed time up to about half padding, 1.25-1.4 x at three quarters.
PACKED_ABOVE_PADDING = 0.5


def _key(name: str) -> str:
    return f"model.backbone.{name}"


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise UserError(f"{_key(name)} must be >= 1; got {value}")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise UserError(f"{_key(name)} must be in [0, 1); got {value}")


class RecurrentBackbone(nn.Module):
    """Embedding (token inputs) or raw features, then a (bi)directional, multi-layer recurrent network."""

    def __init__(
        self,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        impl: str = "auto",
        embedding_dim: int = 128,
        embedding_dropout: float = 0.0,
        vocab_size: int | None = None,
        padding_idx: int | None = 0,
        input_size: int | None = None,
        feature_size: int = 0,
    ) -> None:
        super().__init__()
        check_choice(_key("cell"), cell, CELLS)
        check_choice(_key("impl"), impl, IMPLS)
        check_choice(_key("nonlinearity"), nonlinearity, NONLINEARITIES)
        if nonlinearity != "tanh" and cell != "rnn":
            raise UserError(
                f"{_key('nonlinearity')} applies to cell=rnn only; got nonlinearity={nonlinearity!r} with cell={cell!r}"
            )
        _check_positive("hidden_size", hidden_size)
        _check_positive("num_layers", num_layers)
        _check_probability("dropout", dropout)
        _check_probability("embedding_dropout", embedding_dropout)
        if (vocab_size is None) == (input_size is None):
            raise UserError(
                f"set exactly one of {_key('vocab_size')} (token-id inputs) or {_key('input_size')} "
                f"(real-valued features); got vocab_size={vocab_size}, input_size={input_size}"
            )

        self.cell = cell
        self.impl = impl
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        # The final state's numbers per example (every layer and direction; h and c for the LSTM).
        self.state_size = num_layers * self.num_directions * hidden_size * (2 if cell == "lstm" else 1)

        if feature_size < 0:
            raise UserError(f"{_key('feature_size')} must be >= 0; got {feature_size}")
        self.feature_size = feature_size
        self.embedding: nn.Embedding | None = None
        self.embedding_dropout = nn.Dropout(embedding_dropout)  # applied to embeddings only
        if vocab_size is not None:
            _check_positive("vocab_size", vocab_size)
            _check_positive("embedding_dim", embedding_dim)
            if padding_idx is not None and not -vocab_size <= padding_idx < vocab_size:
                raise UserError(
                    f"{_key('padding_idx')} must be a token id below vocab_size={vocab_size}; got {padding_idx}"
                )
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
            rnn_input = embedding_dim
        else:
            assert input_size is not None
            _check_positive("input_size", input_size)
            rnn_input = input_size
        rnn_input += feature_size

        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        if self.impl != "reference":
            # Dropout acts between layers only; torch warns when it is set on a single layer.
            self.rnn: nn.Module = _FUSED[cell](
                rnn_input,
                hidden_size,
                num_layers=num_layers,
                bidirectional=bidirectional,
                dropout=dropout if num_layers > 1 else 0.0,
                batch_first=True,
                **extra,
            )
        else:
            self.rnn = _REFERENCE[cell](rnn_input, hidden_size, num_layers, bidirectional, dropout, **extra)
        self._recorder: RecurrenceRecorder | None = None

    @contextmanager
    def recording(self) -> Iterator[RecurrenceRecorder]:
        """Within the block, ``forward`` runs the recurrence step by step (the reference equations on
        this backbone's own parameters, for ``impl=fused`` too) and reports every layer's and
        direction's states and gates to the recorder it yields. Several times slower than the fused
        kernels: meant for diagnostics on a small probe batch."""
        self._recorder = RecurrenceRecorder()
        try:
            yield self._recorder
        finally:
            self._recorder = None

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        features: torch.Tensor | None = None,
        initial: FinalState | None = None,
    ) -> tuple[torch.Tensor, FinalState]:
        """inputs (B, T) long or (B, T, F) float, lengths (B,) each >= 1 -> outputs (B, T, D), final.

        features (B, T, feature_size) when built with ``feature_size`` > 0; initial: h_0 or
        (h_0, c_0), each (num_layers * num_directions, B, H), or None for zeros. final is
        (num_layers * num_directions, B, H), or (h_n, c_n) for the LSTM. A length of 0 may
        raise ValueError.
        """
        x = inputs
        if self.embedding is not None:
            x = self.embedding_dropout(self.embedding(inputs))  # (B, T, E)
        if (features is None) != (self.feature_size == 0):
            raise ValueError(f"this backbone takes features of size {self.feature_size}; got {features is not None}")
        if features is not None:
            x = torch.cat([x, features.to(x.dtype)], dim=2)  # (B, T, E + feature_size)
        if self._recorder is not None:
            return self._run_recorded(x, lengths, initial, self._recorder)
        if self.impl == "reference":
            return self.rnn(x, lengths, initial)
        return self._run_fused(x, lengths, initial)

    def _run_recorded(
        self, x: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None, recorder: RecurrenceRecorder
    ) -> tuple[torch.Tensor, FinalState]:
        """x (B, T, F) -> outputs, final, step by step, reporting to ``recorder``."""
        if self.impl == "reference":
            return self.rnn(x, lengths, initial, recorder)
        # The fused layer's twin among the reference layers (same parameter names), run on the fused
        # layer's own parameters; built on the meta device, so it allocates nothing.
        rnn = self.rnn
        extra = {"nonlinearity": rnn.nonlinearity} if self.cell == "rnn" else {}
        with torch.device("meta"):
            twin = _REFERENCE[self.cell](rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bidirectional, rnn.dropout, **extra)
        twin.train(self.training)
        parameters = dict(rnn.named_parameters())
        return torch.func.functional_call(twin, parameters, (x, lengths, initial), {"recorder": recorder})

    def _run_fused(
        self, x: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None
    ) -> tuple[torch.Tensor, FinalState]:
        """x (B, T, F) -> torch.nn's kernels, exact for every length; outputs (B, T, D), final."""
        steps = x.shape[1]
        # Packing needs lengths on the CPU (one host sync on GPU); the all-full check then comes free.
        lengths = lengths.to("cpu", torch.int64)
        if bool((lengths == steps).all()):
            return self.rnn(x, initial)
        padding = 1.0 - float(lengths.sum()) / (lengths.numel() * steps)
        if x.is_cuda or (self.impl == "auto" and padding > PACKED_ABOVE_PADDING):
            return self._run_packed(x, lengths, initial)
        return self._run_per_direction(x, lengths, initial)

    def _run_packed(
        self, x: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None
    ) -> tuple[torch.Tensor, FinalState]:
        """The whole stack on a PackedSequence: cuDNN's native variable-length path (fast on GPU only)."""
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed, initial)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        return outputs, final

    def _run_per_direction(
        self, x: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None
    ) -> tuple[torch.Tensor, FinalState]:
        """Each layer and direction through the fused kernel on the padded batch (CPU).

        On the CPU, torch's packed path is several times slower than the padded one (which uses
        oneDNN). Padding after a sequence's end cannot change its earlier steps, so each direction
        runs padded: the backward one on each sequence reversed within its own length. Final states
        are read at each sequence's last valid step; the LSTM's cell state by
        :func:`lstm_cell_at_length`.
        """
        rnn = self.rnn
        batch, steps = x.shape[0], x.shape[1]
        valid = lengths_to_mask(lengths, steps).unsqueeze(2)  # (B, T, 1)
        last = (torch.arange(batch), lengths - 1)
        kernel = _KERNELS[rnn.mode]

        def run_direction(layer_input: torch.Tensor, name: str, start: State | None) -> tuple[torch.Tensor, State]:
            weights = [getattr(rnn, f"{param}_{name}") for param in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if start is None:
                start = (layer_input.new_zeros(batch, self.hidden_size),) * (2 if rnn.mode == "LSTM" else 1)
            hx = [part.unsqueeze(0) for part in start] if rnn.mode == "LSTM" else start[0].unsqueeze(0)
            out = kernel(layer_input, hx, weights, True, 1, 0.0, self.training, False, True)[0]  # (B, T, H)
            state: State = (out[last],)
            if rnn.mode == "LSTM":
                state += (lstm_cell_at_length(layer_input, out, weights, valid, start),)
            return out.masked_fill(~valid, 0.0), state

        outputs, stacked = run_stacked(
            x, lengths, rnn.num_layers, self.num_directions, rnn.dropout, self.training, run_direction, as_state(initial)
        )
        return outputs, (stacked if rnn.mode == "LSTM" else stacked[0])


# torch.nn's recurrent kernels, called per layer and direction as nn.RNNBase.forward calls them.
_KERNELS = {"LSTM": torch.lstm, "GRU": torch.gru, "RNN_TANH": torch.rnn_tanh, "RNN_RELU": torch.rnn_relu}


def lstm_cell_at_length(
    x: torch.Tensor, outputs: torch.Tensor, weights: list[torch.Tensor], valid: torch.Tensor, start: State
) -> torch.Tensor:
    """The LSTM cell state at each sequence's last valid step, from a run that went on past it.

    x (B, T, F) the layer input, outputs (B, T, H) the kernel's hidden states (right at valid
    steps), valid (B, T, 1), start (h_0, c_0) each (B, H) -> c (B, H). The gates of step t depend
    only on x_t and h_{t-1}, both known, so c follows from the linear recurrence
    c_t = f_t c_{t-1} + i_t g_t in closed form, c_n = (prod_t f_t) c_0 + sum_t (prod_{s>t} f_s) i_t g_t,
    with f = 1 and i g = 0 at padded steps. Products are summed as logs in float64 (exact to
    ~1e-12 over thousands of steps), and gradients flow through the outputs into the kernel, so
    training through the final state stays exact.
    """
    w_ih, w_hh, b_ih, b_hh = weights
    h_0, c_0 = start
    previous = torch.cat([h_0.unsqueeze(1), outputs[:, :-1]], dim=1)  # (B, T, H): h_{t-1}
    i, f, g, _ = (F.linear(x, w_ih, b_ih) + F.linear(previous, w_hh, b_hh)).chunk(4, dim=2)
    log_forget = F.logsigmoid(f).double().masked_fill(~valid, 0.0)
    written = (torch.sigmoid(i) * torch.tanh(g)).double().masked_fill(~valid, 0.0)
    kept_from = log_forget.cumsum(dim=1)  # (B, T, H): log prod_{s<=t} f_s
    decay = torch.exp(kept_from[:, -1:] - kept_from)  # prod_{s>t} f_s, <= 1
    kept_c_0 = torch.exp(kept_from[:, -1]) * c_0.double()  # (B, H)
    return (kept_c_0 + (decay * written).sum(dim=1)).to(outputs.dtype)
