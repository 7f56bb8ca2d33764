"""Textbook RNN, LSTM and GRU in plain tensor ops: a readable, checkable twin of torch.nn's fused layers.

Parameters are named, shaped and initialised exactly as in torch.nn's recurrent layers, so state dicts
load either way. Inputs are batch-first and padded:

    x        (B, T, F) float
    lengths  (B,)      valid steps per sequence, each in [1, T]
    outputs  (B, T, D) D = H * num_directions, forward then backward per step; exact zeros at padding
    final    (num_layers * num_directions, B, H), layer-major and direction-minor as in torch;
             for the LSTM a tuple (h_n, c_n)

The forward direction's final state is taken at each sequence's last valid step, the backward one
after reading back to step 0, starting from the sequence's own last valid step (never from padding).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from rnnlab.backbones.recording import RecurrenceRecorder
from rnnlab.backbones.stacking import State, as_state, run_stacked
from rnnlab.errors import check_choice
from rnnlab.masking import lengths_to_mask

#: Gate activations of one step by name (e.g. ``forget``), each (B, H): what ``cell`` reports when asked.
GateValues = dict[str, torch.Tensor]


class ReferenceRecurrent(nn.Module):
    """Shared machinery: parameters, layers, directions, masking. Subclasses define ``gates`` and ``cell``."""

    gates: int
    state_size: int = 1  # tensors in the recurrent state: 1 (h) or 2 (h, c)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.num_directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                rows = self.gates * hidden_size
                self.register_parameter(f"weight_ih_l{layer}{suffix}", nn.Parameter(torch.empty(rows, layer_input)))
                self.register_parameter(f"weight_hh_l{layer}{suffix}", nn.Parameter(torch.empty(rows, hidden_size)))
                self.register_parameter(f"bias_ih_l{layer}{suffix}", nn.Parameter(torch.empty(rows)))
                self.register_parameter(f"bias_hh_l{layer}{suffix}", nn.Parameter(torch.empty(rows)))
        self.reset_parameters()

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        """uniform(-1/sqrt(H), 1/sqrt(H)) for every weight and bias, as torch.nn does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout}"
        )

    #: Whether the recurrent projection enters the pre-activation as a plain sum, pre_t = x_proj_t +
    #: W_hh h_{t-1} (+ b_hh): then ``b_hh`` joins the input projection of all steps at once, and so
    #: does W_hh's gradient (:class:`RecurrentWeightGradient`). Not for the GRU, whose reset gate
    #: multiplies the recurrent projection alone.
    additive_recurrence: bool = True

    def cell(
        self, x_proj: torch.Tensor, state: State, w_hh_t: torch.Tensor, b_hh: torch.Tensor, gate_values: GateValues | None = None
    ) -> State:
        """One step from x_proj (B, gates*H) = W_ih x_t + b_ih (+ b_hh when ``additive_recurrence``),
        the previous state, and W_hh transposed (H, gates*H).

        ``gate_values``: when given, the step's gate activations are stored in it by name.
        """
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        initial: torch.Tensor | State | None = None,
        recorder: RecurrenceRecorder | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | State]:
        """x (B, T, F), lengths (B,) each >= 1 -> outputs (B, T, D), final (L*dirs, B, H) or (h_n, c_n).

        ``initial``: None (zeros), or h_0 (L*dirs, B, H), or (h_0, c_0) for the LSTM, as in torch.nn.
        ``recorder``: receives every layer's and direction's per-step states and gates.
        """
        # Steps every sequence reaches need no masking. Read before lengths move to x's device: lengths
        # on the CPU spare a GPU wait.
        all_valid_until = int(lengths.min())
        lengths = lengths.to(x.device, non_blocking=True)
        mask = lengths_to_mask(lengths, x.shape[1])  # (B, T)
        outputs, stacked = run_stacked(
            x,
            lengths,
            self.num_layers,
            self.num_directions,
            self.dropout,
            self.training,
            lambda layer_input, name, start: self._run_direction(layer_input, mask, all_valid_until, name, start, recorder),
            as_state(initial),
        )
        return outputs, (stacked if self.state_size > 1 else stacked[0])

    def _run_direction(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        all_valid_until: int,
        name: str,
        start: State | None,
        recorder: RecurrenceRecorder | None,
    ) -> tuple[torch.Tensor, State]:
        """Left-to-right over x (B, T, in) from ``start`` (None: zeros) -> outputs (B, T, H) zero at
        padding, state at each last valid step. mask (B, T); ``all_valid_until``: the shortest length."""
        w_ih, w_hh = getattr(self, f"weight_ih_{name}"), getattr(self, f"weight_hh_{name}")
        b_ih, b_hh = getattr(self, f"bias_ih_{name}"), getattr(self, f"bias_hh_{name}")
        batch = x.shape[0]
        # The input projection of all steps in one matmul; per step only the recurrent one remains.
        # Time-major, so that each step's slice is contiguous.
        x_proj = F.linear(x.transpose(0, 1), w_ih, b_ih + b_hh if self.additive_recurrence else b_ih)  # (T, B, gates*H)
        w_hh_t = w_hh.t()  # (H, gates*H)
        read: list[torch.Tensor] = []  # h_{t-1} (B, H) as each step reads it
        if self.additive_recurrence and torch.is_grad_enabled() and w_hh.requires_grad:
            x_proj = RecurrentWeightGradient.apply(x_proj, w_hh, read)
            w_hh_t = w_hh_t.detach()
        zeros = tuple(x.new_zeros(batch, self.hidden_size) for _ in range(self.state_size))
        state: State = zeros if start is None else start
        steps_gate_values: list[GateValues] = []
        for t, x_t in enumerate(x_proj.unbind(0)):
            gate_values: GateValues | None = {} if recorder is not None else None
            read.append(state[0])
            new_state = self.cell(x_t, state, w_hh_t, b_hh, gate_values)
            if t < all_valid_until:
                state = new_state
            else:
                # Past a sequence's end its state stays frozen, so `state` ends as the per-sequence final.
                valid = mask[:, t : t + 1]  # (B, 1)
                state = tuple(torch.where(valid, new, old) for new, old in zip(new_state, state))
            if gate_values is not None:
                steps_gate_values.append(gate_values)
        hidden = [*read[1:], state[0]]  # each step's h_t: what the next step reads, then the last
        if recorder is not None:
            names = steps_gate_values[0] if steps_gate_values else {}
            stacked = {gate: torch.stack([step[gate] for step in steps_gate_values], dim=1) for gate in names}
            recorder.record(name, hidden, stacked, mask)
        outputs = torch.stack(hidden, dim=1)  # (B, T, H)
        if all_valid_until < x.shape[1]:
            outputs = outputs.masked_fill(~mask.unsqueeze(2), 0.0)
        return outputs, state


class RecurrentWeightGradient(torch.autograd.Function):
    """Identity on x_proj (T, B, gates*H) whose backward also gives W_hh (gates*H, H) its gradient
    for all steps in one matmul, as fused kernels do: with pre_t = x_proj_t + h_{t-1} W_hh^T, x_proj's
    gradient at step t is pre_t's, so dL/dW_hh = sum_t grad_t^T h_{t-1}. The loop then uses W_hh
    detached and appends to ``read`` each step's h_{t-1} (B, H) as it reads it; per-step
    weight gradients and their T accumulations cost the LSTM at B 32, T 64, H 128 about 9 % of its
    forward + backward time (``scripts/benchmark.py``'s worst reference / fused ratio)."""

    @staticmethod
    def forward(ctx: Any, x_proj: torch.Tensor, w_hh: torch.Tensor, read: list[torch.Tensor]) -> torch.Tensor:
        ctx.read, ctx.weight_dtype = read, w_hh.dtype
        return x_proj.view_as(x_proj)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        read = torch.stack(ctx.read).flatten(0, 1)  # (T*B, H)
        grad_w_hh = torch.mm(grad.flatten(0, 1).t().to(read.dtype), read)  # (gates*H, H)
        return grad, grad_w_hh.to(ctx.weight_dtype), None


class ReferenceRNN(ReferenceRecurrent):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
    ) -> None:
        check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"

    def cell(
        self, x_proj: torch.Tensor, state: State, w_hh_t: torch.Tensor, b_hh: torch.Tensor, gate_values: GateValues | None = None
    ) -> State:
        pre = torch.addmm(x_proj, state[0], w_hh_t)  # W_ih x_t + b_ih + b_hh + W_hh h_{t-1}
        return (torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre),)


class ReferenceLSTM(ReferenceRecurrent):
    """LSTM, gates in torch's order i, f, g, o: c_t = f*c + i*g, h_t = o*tanh(c_t)."""

    gates = 4
    state_size = 2

    def cell(
        self, x_proj: torch.Tensor, state: State, w_hh_t: torch.Tensor, b_hh: torch.Tensor, gate_values: GateValues | None = None
    ) -> State:
        h, c = state
        pre = torch.addmm(x_proj, h, w_hh_t)  # (B, 4H): W_ih x_t + b_ih + b_hh + W_hh h_{t-1}
        i, f, g, o = pre.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        if gate_values is not None:
            gate_values.update(input=i, forget=f, output=o)
        c = torch.addcmul(f * c, i, g)  # f*c + i*g
        return o * torch.tanh(c), c


class ReferenceGRU(ReferenceRecurrent):
    """GRU, gates in torch's order r, z, n: n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), h_t = (1-z)*n + z*h."""

    gates = 3
    additive_recurrence = False  # b_hn sits inside r * (W_hn h + b_hn)

    def cell(
        self, x_proj: torch.Tensor, state: State, w_hh_t: torch.Tensor, b_hh: torch.Tensor, gate_values: GateValues | None = None
    ) -> State:
        h = state[0]
        h_proj = torch.addmm(b_hh, h, w_hh_t)  # (B, 3H): W_hh h_{t-1} + b_hh
        hidden = self.hidden_size
        r, z = torch.sigmoid(x_proj[:, : 2 * hidden] + h_proj[:, : 2 * hidden]).chunk(2, dim=1)
        if gate_values is not None:
            gate_values.update(reset=r, update=z)
        n = torch.tanh(torch.addcmul(x_proj[:, 2 * hidden :], r, h_proj[:, 2 * hidden :]))
        # Under autocast the gates come out in the lower precision while h keeps its own dtype, which
        # lerp will not mix: the state stays in h's dtype, as the LSTM's cell state does.
        return (torch.lerp(n.to(h.dtype), h, z.to(h.dtype)),)  # (1 - z) * n + z * h
