"""The seq2seq head: a bridge from the encoder's final state to the decoder's, and a recurrent
decoder with optional attention and input feeding (Luong et al. 2015).

One decoding step t (s: decoder RNN state, y: target tokens):

    x_t  = [embed(y_{t-1}) ; f_t]            f_t: the previous attentional state h~_{t-1} (input
                                             feeding), or the fixed context c (attention=none),
                                             or nothing
    s_t  = RNN(x_t, s_{t-1})                 s_0 = bridge(encoder final state), or zeros
    c_t  = attention(s_t, encoder outputs)   attention=none: c_t = c, the encoder's summary (its
                                             top layer's final states, both directions)
    h~_t = tanh(W [s_t ; c_t])
    p(y_t | y_<t, x) = softmax(V dropout(h~_t))

Without attention the decoder sees the source only through c (and s_0): the classic
encoder-decoder (Cho et al. 2014), so the two can be compared on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from rnnlab.dropout import Dropout
from rnnlab.heads.attention import Attention

#: A recurrent state: h (L, B, H), or (h, c) for an LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def select_rows(state: State, index: torch.Tensor) -> State:
    """The batch rows ``index`` (N,) of a state (L, B, H) [or (h, c)] -> (L, N, H)."""
    if isinstance(state, tuple):
        return tuple(part.index_select(1, index) for part in state)
    return state.index_select(1, index)


def flatten_state(state: State) -> torch.Tensor:
    """A state (L, B, H) [or (h, c)] -> (B, L * H [* 2]): every layer and direction per example."""
    parts = state if isinstance(state, tuple) else (state,)
    return torch.cat([part.transpose(0, 1).flatten(1) for part in parts], dim=1)


def top_layer(state: State, num_directions: int) -> torch.Tensor:
    """The last layer's final h of every direction, concatenated: (L * D, B, H) -> (B, D * H)."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-num_directions:].transpose(0, 1).flatten(1)


@dataclass
class Memory:
    """What the decoder reads from the encoder, fixed while decoding one batch.

    outputs (B, S, D), mask (B, S) True at valid steps, keys: the attention's precomputed
    memory-side scores (or None without attention), summary (B, D) the fixed context c.
    """

    outputs: torch.Tensor
    mask: torch.Tensor
    keys: torch.Tensor | None
    summary: torch.Tensor

    def repeat_interleave(self, repeats: int) -> Memory:
        """Each row ``repeats`` times in a row (B -> B * repeats), e.g. once per beam."""
        keys = None if self.keys is None else self.keys.repeat_interleave(repeats, dim=0)
        return Memory(
            self.outputs.repeat_interleave(repeats, dim=0),
            self.mask.repeat_interleave(repeats, dim=0),
            keys,
            self.summary.repeat_interleave(repeats, dim=0),
        )


@dataclass
class DecoderState:
    """The decoder's recurrent state (L, B, H) [or (h, c)] and, with input feeding, the previous
    attentional state h~ (B, H)."""

    rnn: State
    feed: torch.Tensor | None

    def select(self, index: torch.Tensor) -> DecoderState:
        """The rows ``index`` (N,): reorders beams, or repeats each example once per beam."""
        feed = None if self.feed is None else self.feed.index_select(0, index)
        return replace(self, rnn=select_rows(self.rnn, index), feed=feed)


class Bridge(nn.Module):
    """Encoder final state (every layer and direction, h and c) -> decoder initial state.

    h_0 = tanh(W_h x), c_0 = W_c x (LSTM decoders), x the flattened encoder state (B, state_size):
    a learned map, so any encoder depth, width and directions fits any decoder.
    """

    def __init__(self, state_size: int, num_layers: int, hidden_size: int, lstm: bool) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.hidden = nn.Linear(state_size, num_layers * hidden_size)
        self.cell = nn.Linear(state_size, num_layers * hidden_size) if lstm else None

    def _layers(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, L * H) -> (L, B, H)."""
        return flat.view(-1, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()

    def forward(self, encoder_state: State) -> State:
        x = flatten_state(encoder_state)
        h = self._layers(torch.tanh(self.hidden(x)))
        if self.cell is None:
            return h
        return h, self._layers(self.cell(x))


def decoder_feature_size(attention: str, input_feeding: bool, hidden_size: int, summary_size: int) -> int:
    """Extra per-step inputs of the decoder RNN beside the token embedding: the previous attentional
    state (input feeding), else the fixed context c without attention, else none."""
    if input_feeding:
        return hidden_size
    return summary_size if attention == "none" else 0


class Seq2SeqDecoder(nn.Module):
    """Decodes target tokens from a :class:`Memory`.

    ``rnn``: a unidirectional recurrent backbone over the target tokens (its embedding included)
    that takes :func:`decoder_feature_size` extra features per step. ``attention``: none | dot |
    general | additive. ``input_feeding``: feed h~_{t-1} into step t (Luong), which makes
    teacher-forced training step by step instead of one call over the whole target.
    """

    def __init__(
        self,
        rnn: nn.Module,
        vocab_size: int,
        memory_size: int,
        attention: str = "general",
        input_feeding: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.rnn = rnn
        hidden = rnn.hidden_size
        self.input_feeding = input_feeding
        self.attention = None if attention == "none" else Attention(attention, hidden, memory_size)
        self.combine = nn.Linear(hidden + memory_size, hidden)
        self.dropout = Dropout(dropout)
        self.projection = nn.Linear(hidden, vocab_size)

    def memory(self, outputs: torch.Tensor, mask: torch.Tensor, summary: torch.Tensor) -> Memory:
        """Encoder outputs (B, S, D), mask (B, S), summary (B, D) -> the decoder's :class:`Memory`."""
        keys = None if self.attention is None else self.attention.keys(outputs)
        return Memory(outputs, mask, keys, summary)

    def start(self, initial: State, memory: Memory) -> DecoderState:
        """The state before the first target token; initial (L, B, H) [or (h, c)]."""
        feed = memory.summary.new_zeros(memory.summary.shape[0], self.rnn.hidden_size) if self.input_feeding else None
        return DecoderState(initial, feed)

    def _read(self, states: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RNN outputs s (B, T, H) -> attentional states h~ (B, T, H), attention weights (B, T, S) or None."""
        if self.attention is None:
            context, weights = memory.summary.unsqueeze(1).expand(-1, states.shape[1], -1), None
        else:
            context, weights = self.attention(states, memory.keys, memory.outputs, memory.mask)
        return torch.tanh(self.combine(torch.cat([states, context], dim=2))), weights

    def _features(self, feed: torch.Tensor | None, memory: Memory, steps: int) -> torch.Tensor | None:
        if self.input_feeding:
            return feed.unsqueeze(1)  # (B, 1, H)
        if self.attention is None:
            return memory.summary.unsqueeze(1).expand(-1, steps, -1)  # (B, T, D)
        return None

    def step(
        self, tokens: torch.Tensor, state: DecoderState, memory: Memory
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step for every row: tokens (B,) the previous target tokens -> logits (B, V), the next
        state, attention weights (B, S) or None."""
        one = torch.ones(tokens.shape[0], dtype=torch.long)  # on the CPU, where the backbone reads lengths
        outputs, rnn_state = self.rnn(tokens.unsqueeze(1), one, features=self._features(state.feed, memory, 1), initial=state.rnn)
        attended, weights = self._read(outputs, memory)  # (B, 1, H)
        logits = self.projection(self.dropout(attended[:, 0]))
        feed = attended[:, 0] if self.input_feeding else None
        return logits, DecoderState(rnn_state, feed), None if weights is None else weights[:, 0]

    def forward(self, inputs: torch.Tensor, initial: State, memory: Memory, teacher_forcing: float = 1.0) -> torch.Tensor:
        """Teacher-forced logits: inputs (B, T) = <bos> y_1 .. y_{n-1} (padded) -> (B, T, V).

        Left to right, so padding after a row's end cannot change its earlier logits: every row
        runs all T steps, and its logits at padding are never scored. No lengths to read (on a GPU,
        reading them on the host would wait for the encoder's kernels).

        ``teacher_forcing`` < 1: at each step after the first, each row feeds its own previous
        prediction (argmax, no gradient through the choice) instead of the gold token with
        probability 1 - teacher_forcing (scheduled sampling, Bengio et al. 2015).
        """
        if not self.input_feeding and teacher_forcing >= 1.0:
            # No step depends on an earlier step's output: one fused RNN call over the whole target,
            # every row as long as the batch (lengths made on the CPU, where the backbone reads them).
            batch, steps = inputs.shape
            full = torch.full((batch,), steps, dtype=torch.long)
            outputs, _ = self.rnn(inputs, full, features=self._features(None, memory, steps), initial=initial)
            attended, _ = self._read(outputs, memory)
            return self.projection(self.dropout(attended))
        state = self.start(initial, memory)
        logits = []
        tokens = inputs[:, 0]
        for step in range(inputs.shape[1]):
            if step > 0:
                tokens = inputs[:, step]
                if teacher_forcing < 1.0:
                    own = torch.rand(tokens.shape, device=tokens.device) >= teacher_forcing
                    tokens = torch.where(own, logits[-1].argmax(dim=1), tokens)
            step_logits, state, _ = self.step(tokens, state, memory)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)
