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
(the default) runs the padded path on GPU too, which took 0.1-0.8 x the packed path's time on most
benchmarked shapes (BENCHMARKS-cuda.md). On CPU it picks the faster exact path per batch: the padded
path computes every padded step, the packed one only real steps but at a higher cost per step, which
grows with the length. An RNN or GRU batch with more padding than :func:`packed_above` (a measured
share per thread count, cell, hidden size and sequence length) goes packed; a batch longer than 64
steps with more padding than the 64-step share, which packing no longer pays for, is split into
groups of similar lengths (:func:`length_groups`, from H = 64), each run padded. An LSTM batch is
never packed, since oneDNN's padded LSTM is that much faster: from H = 64 it is always split;
``impl="reference"`` runs :mod:`rnnlab.backbones.reference`. All have the same parameter names, so a
state dict from one loads into the others. Inside ``with backbone.recording() as recorder:`` each
runs step by step and reports every step's states and gates (:mod:`rnnlab.backbones.recording`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.backbones.recording import RecurrenceRecorder
from rnnlab.backbones.reference import ReferenceGRU, ReferenceLSTM, ReferenceRNN
from rnnlab.backbones.stacking import State, as_state, run_stacked
from rnnlab.dropout import Dropout
from rnnlab.errors import UserError, check_choice
from rnnlab.masking import lengths_to_mask

CELLS = ("rnn", "lstm", "gru")
IMPLS = ("auto", "fused", "reference")
NONLINEARITIES = ("tanh", "relu")

_FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_REFERENCE = {"rnn": ReferenceRNN, "lstm": ReferenceLSTM, "gru": ReferenceGRU}

FinalState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h_n, or (h_n, c_n) for the LSTM

#: impl=auto on CPU: the share of padded steps above which an RNN or GRU batch of T = 64 runs packed,
#: by torch's thread count (1, or 2 and more), cell and hidden size (between the sizes listed:
#: interpolated in log2 H; outside: the nearest). The padded path computes every padded step; the packed one only
#: real steps, but at a higher cost per step that grows with H, and more so on one thread. Measured
#: by `scripts/benchmark.py` (its "impl=auto" sections, on 1 thread and on torch's default: forward +
#: backward with the final state in the loss, B=32, T=64, one layer) in two full runs on a 2-core
#: AMD EPYC with torch 2.13: the lowest crossover over both directions and both runs, rounded down
#: to 0.05; 0.95 where the padded path was faster at every padding measured (up to 91 %).
PACKED_ABOVE_PADDING: dict[int, dict[str, tuple[tuple[int, float], ...]]] = {
    1: {
        "rnn": ((64, 0.85), (128, 0.6), (256, 0.45), (512, 0.3)),
        "gru": ((64, 0.7), (128, 0.5), (256, 0.4), (512, 0.4)),
    },
    2: {
        "rnn": ((64, 0.75), (128, 0.75), (256, 0.5), (512, 0.3)),
        "gru": ((64, 0.6), (128, 0.45), (256, 0.35), (512, 0.25)),
    },
}


#: The sequence length the table was measured at, and the step count over which the real share a
#: packed batch may keep halves beyond it. The backward pass of torch's packed CPU kernels grows
#: about quadratically with T, with or without a gradient to the input (measured; likely each step's
#: slice of a whole-batch tensor gets a zero-filled gradient of the whole tensor), so a packed step
#: costs more the longer the batch.
#: Measured (B=32, H=128, bidirectional, 2 threads): at T = 1000 and 85 % padding, where the T = 64
#: table packs, the packed path took 1.2-2.9 x the padded one's time; going from T = 1000 to 2000
#: multiplied the packed backward's time by 3.5-6, while the padded path's is linear in T.
PACKED_TABLE_STEPS = 64
PACKED_HALF_STEPS = 128


def packed_above(cell: str, hidden_size: int, threads: int | None = None, steps: int = PACKED_TABLE_STEPS) -> float:
    """The padding share above which impl=auto runs a CPU batch of ``steps`` time steps of the RNN or
    GRU packed; ``threads``: torch's intra-op thread count (default: the current one).

    At the table's T = 64 it is PACKED_ABOVE_PADDING's share p. Longer batches pack only when the
    real share 1 - p' is below (1 - p) * h / (h + T - 64), h = PACKED_HALF_STEPS: the packed path's
    cost per real token grows linearly with T (above), so its advantage shrinks in proportion.
    """
    threads = torch.get_num_threads() if threads is None else threads
    share = _interpolated(PACKED_ABOVE_PADDING[1 if threads <= 1 else 2][cell], hidden_size)
    if steps <= PACKED_TABLE_STEPS:
        return share
    return 1.0 - (1.0 - share) * PACKED_HALF_STEPS / (PACKED_HALF_STEPS + steps - PACKED_TABLE_STEPS)


#: impl=auto on CPU: the cost of each step of each padded kernel call beyond its sequences' own, in
#: units of one sequence's step at H = 128 (:func:`length_groups`); at other sizes it is scaled by
#: 128 / H (:func:`group_step_cost`), since the call's own cost stays while a sequence's step grows
#: with H. Measured (B = 32, one layer, bidirectional, 1 and 2 threads, forward + backward), the LSTM:
#: with 16 at every size, the groups took 0.35-0.8 x the time of torch's packed path at 60-95 %
#: padding for H = 64-512 and T = 64 in earlier runs, 0.25-0.35 x at T = 256, 0.1-0.15 x at
#: T = 1024, and 0.45-0.5 x on shuffled batches of log-normal lengths (72 % padding), where one padded
#: batch takes 0.63-0.91 x; but on a later machine 1.06 x at H = 512, 78 % padding, one thread. The
#: best cost per size came out near 32 at H = 64, 8 at H = 256 and 2-4 at H = 512; scaled so, H = 512's
#: groups took 0.67-0.89 x the packed time at 46-91 % padding (16: 0.79-1.06 x).
#: The GRU and RNN split only long batches past the 64-step packing share (:func:`packed_above`): at
#: T = 64 their groups took 1.1-1.3 x the packed time where that packs, since their padded kernels
#: cost about as much per step as the packed ones. At 81-94 % padding their groups took 0.56-0.71 x
#: one padded batch's time at T = 1024 (H = 128; the packed path: 1.5-2.5 x) and 0.66-0.91 x at
#: T = 256 (H = 64 and 256); at 60 % padding splitting does not pay (0.96-1.15 x), hence the packing
#: share as the gate. None below H = 64 (LENGTH_GROUPS_FROM_HIDDEN), where a step costs little beside
#: the call: at H = 16 and 32 the LSTM's groups took 1.0-1.5 x the time of one padded batch.
LENGTH_GROUP_STEP_COST = 16.0
LENGTH_GROUP_STEP_COST_HIDDEN = 128
LENGTH_GROUPS_FROM_HIDDEN = 64


def group_step_cost(hidden_size: int) -> float:
    """:func:`length_groups`' cost of a kernel call's step, in sequence-steps of this hidden size."""
    return LENGTH_GROUP_STEP_COST * LENGTH_GROUP_STEP_COST_HIDDEN / hidden_size


def length_groups(lengths: list[int], step_cost: float) -> list[list[int]]:
    """Indices into ``lengths`` split into groups, each to run as its own padded batch: runs of the
    longest-first order (equal lengths together, stable), the split that minimises the sum over
    groups of T_g * (step_cost + B_g), T_g the group's longest length and B_g its size: each padded
    step a group computes costs 1 per sequence, plus ``step_cost`` per step for the kernel call.
    One group when splitting does not pay (e.g. a tightly bucketed batch). Exact dynamic programme
    over the distinct lengths: O(D^2) for D distinct lengths."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    distinct: list[int] = []  # the distinct lengths, longest first
    ends: list[int] = []  # ends[k]: how many of ``order`` are at least distinct[k] long
    for position, index in enumerate(order):
        if distinct and distinct[-1] == lengths[index]:
            ends[-1] = position + 1
        else:
            distinct.append(lengths[index])
            ends.append(position + 1)
    starts = [0, *ends]
    # best[j]: least cost of the first j distinct lengths in groups; first[j]: where its last group starts.
    best, first = [0.0] + [math.inf] * len(distinct), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):
        for i in range(j):
            cost = best[i] + distinct[i] * (step_cost + starts[j] - starts[i])
            if cost < best[j]:
                best[j], first[j] = cost, i
    groups, j = [], len(distinct)
    while j > 0:
        groups.append(order[starts[first[j]] : starts[j]])
        j = first[j]
    return groups[::-1]


def _interpolated(points: tuple[tuple[int, float], ...], hidden_size: int) -> float:
    """The share at ``hidden_size`` from (H, share) points: linear in log2 H between them, else the nearest."""
    if hidden_size <= points[0][0]:
        return points[0][1]
    for (low, below), (high, above) in zip(points, points[1:]):
        if hidden_size <= high:
            position = (math.log2(hidden_size) - math.log2(low)) / (math.log2(high) - math.log2(low))
            return below + position * (above - below)
    return points[-1][1]


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
        self.embedding_dropout = Dropout(embedding_dropout)  # applied to embeddings only
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

        ``lengths`` may live on any device; the fused paths read them on the CPU, so lengths made
        there spare a GPU run a wait for the kernels queued so far.

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
        # On the CPU for packing and the dispatch below: a wait for the GPU if they come from there (tasks pass
        # Batch.on_host's); the all-full check then comes free.
        lengths = lengths.to("cpu", torch.int64)
        if bool((lengths == steps).all()):
            return self.rnn(x, initial)
        if x.is_cuda:
            return self._run_per_direction(x, lengths, initial) if self.impl == "auto" else self._run_packed(x, lengths, initial)
        if self.impl == "auto" and self.cell == "lstm":
            if self.hidden_size >= LENGTH_GROUPS_FROM_HIDDEN:
                return self._run_length_groups(x, lengths, initial)
        elif self.impl == "auto":
            padding = 1.0 - float(lengths.sum()) / (lengths.numel() * steps)
            if padding > packed_above(self.cell, self.hidden_size, steps=steps):
                return self._run_packed(x, lengths, initial)
            # Padded past where a 64-step batch packs, but too long for packing to pay: split instead.
            long_and_padded = padding > packed_above(self.cell, self.hidden_size)
            if long_and_padded and self.hidden_size >= LENGTH_GROUPS_FROM_HIDDEN:
                return self._run_length_groups(x, lengths, initial)
        return self._run_per_direction(x, lengths, initial)

    def _run_length_groups(
        self, x: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None
    ) -> tuple[torch.Tensor, FinalState]:
        """x (B, T, F), lengths (B,) on the CPU -> the padded path on each of :func:`length_groups`,
        each group cut to its own longest length; outputs (B, T, D) and final states put back in the
        batch's order. Sequences do not interact, so this is exact as the padded path is."""
        groups = length_groups(lengths.tolist(), group_step_cost(self.hidden_size))
        if len(groups) == 1:
            return self._run_per_direction(x, lengths, initial)
        start = as_state(initial)
        outputs, finals = [], []
        for group in groups:
            index = torch.tensor(group, device=x.device)
            steps = int(lengths[group[0]])
            group_start = None if start is None else tuple(part[:, index] for part in start)
            out, final = self._run_per_direction(x[index, :steps], lengths[group], group_start)
            outputs.append(F.pad(out, (0, 0, 0, x.shape[1] - steps)))  # (B_g, T, D)
            finals.append(as_state(final))
        order = torch.tensor([i for group in groups for i in group], device=x.device)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=x.device)
        stacked = tuple(torch.cat(parts, dim=1)[:, inverse] for parts in zip(*finals, strict=True))
        return torch.cat(outputs)[inverse], (stacked if len(stacked) > 1 else stacked[0])

    def _run_packed(
        self, x: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None
    ) -> tuple[torch.Tensor, FinalState]:
        """The whole stack on a PackedSequence: torch.nn's own exact path (impl=fused on a GPU)."""
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed, initial)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        return outputs, final

    def _run_per_direction(
        self, x: torch.Tensor, lengths: torch.Tensor, initial: FinalState | None
    ) -> tuple[torch.Tensor, FinalState]:
        """Each layer and direction through the fused kernel on the padded batch (oneDNN, cuDNN).

        Padding after a sequence's end cannot change its earlier steps, so each direction runs
        padded: the backward one on each sequence reversed within its own length. h_n is read at
        each sequence's last valid step. For the LSTM's c_n, padded steps are made to keep the
        cell state exactly: see :func:`with_cell_state_kept_at_padding`.
        """
        rnn = self.rnn
        batch, steps = x.shape[0], x.shape[1]
        # Lengths come on the CPU (see _run_fused): copied once, not per direction, and without a wait for the GPU.
        on_device = lengths.to(x.device, non_blocking=True)
        valid = lengths_to_mask(on_device, steps).unsqueeze(2)  # (B, T, 1)
        last = (torch.arange(batch, device=x.device), on_device - 1)
        kernel = _KERNELS[rnn.mode]

        def run_direction(layer_input: torch.Tensor, name: str, start: State | None) -> tuple[torch.Tensor, State]:
            weights = [getattr(rnn, f"{param}_{name}") for param in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if start is None:
                start = (layer_input.new_zeros(batch, self.hidden_size),) * (2 if rnn.mode == "LSTM" else 1)
            if rnn.mode == "LSTM":
                layer_input, weights[0] = with_cell_state_kept_at_padding(layer_input, weights[0], valid)
                hx = [part.unsqueeze(0) for part in start]
            else:
                hx = start[0].unsqueeze(0)
            with quiet_weight_compaction(x.is_cuda):
                out, *final = kernel(layer_input, hx, weights, True, 1, 0.0, self.training, False, True)  # out (B, T, H)
            state: State = (out[last],)
            if rnn.mode == "LSTM":
                state += (final[1][0],)  # c after the last step: the cell state at each sequence's end
            return out.masked_fill(~valid, 0.0), state

        outputs, stacked = run_stacked(
            x, on_device, rnn.num_layers, self.num_directions, rnn.dropout, self.training, run_direction, as_state(initial)
        )
        return outputs, (stacked if rnn.mode == "LSTM" else stacked[0])


@contextmanager
def quiet_weight_compaction(on_gpu: bool) -> Iterator[None]:
    """cuDNN copies one direction's weights, slices of the module's, into a buffer of their own at
    each call (cheap next to the recurrence) and warns about it; the warning would come every run."""
    if not on_gpu:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
        yield


# torch.nn's recurrent kernels, called per layer and direction as nn.RNNBase.forward calls them.
_KERNELS = {"LSTM": torch.lstm, "GRU": torch.gru, "RNN_TANH": torch.rnn_tanh, "RNN_RELU": torch.rnn_relu}

#: Added to the forget gate's and subtracted from the input gate's pre-activation at padded steps,
#: where the input is zeroed, so the rest of the pre-activation is bias + W_hh h (|h| <= 1): far
#: below this. sigmoid(+-1000) is exactly 1 or 0 in every float type (float32 rounds sigmoid(z) to
#: 1 from about z = 17 and to 0 below about z = -104), and float16 holds it. Not larger: cuDNN's
#: bfloat16 LSTM on an H100 returned NaN once the constant reached 1e5 (1e4 and below were exact).
SATURATING = 1000.0


def with_cell_state_kept_at_padding(
    x: torch.Tensor, w_ih: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM layer's input and input weights, extended so that padded steps leave c unchanged.

    x (B, T, F), w_ih (4H, F) in gate order i, f, g, o, valid (B, T, 1) -> x (B, T, F + 1), zero at
    padded steps but for a new column that is 1 there, w_ih (4H, F + 1) whose new column is
    -SATURATING for i, +SATURATING for f and 0 for g, o. At a padded step then i = 0 and f = 1
    exactly, so c_t = f c_{t-1} + i g = c_{t-1}: the kernel's final c is each sequence's c at its
    last valid step. Nothing leaks into the real steps: the saturated gates' derivatives are exactly 0, and
    the hidden states at padded steps reach the loss only through those gates and the masked
    outputs, so gradients are those of the sequences alone.
    """
    hidden = w_ih.shape[0] // 4
    column = w_ih.new_zeros(4 * hidden, 1)
    column[:hidden] = -SATURATING
    column[hidden : 2 * hidden] = SATURATING
    padded = (~valid).to(x.dtype)  # (B, T, 1)
    # Zeroed, so that whatever the caller padded with (huge values, inf, NaN) cannot outweigh the column.
    return torch.cat([x.masked_fill(~valid, 0.0), padded], dim=2), torch.cat([w_ih, column], dim=1)
