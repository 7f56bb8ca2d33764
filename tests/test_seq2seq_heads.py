"""The seq2seq tensor code: attention masking, the decoder's teacher-forced paths, the bridge,
greedy and beam search (beam 1 == greedy, batched == alone, exhaustive beam == brute force)."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnlab.backbones import RecurrentBackbone, VectorEncoder
from rnnlab.errors import UserError
from rnnlab.heads.attention import Attention
from rnnlab.heads.search import beam_search, greedy_search
from rnnlab.heads.seq2seq import Bridge, Seq2SeqDecoder, decoder_feature_size, top_layer
from rnnlab.masking import lengths_to_mask

PAD, UNK, BOS, EOS = 0, 1, 2, 3
VOCAB = 7
MEMORY = 10
HIDDEN = 8


def make_decoder(cell: str = "lstm", attention: str = "general", input_feeding: bool = True, layers: int = 1, seed: int = 0) -> Seq2SeqDecoder:
    """A tiny decoder in eval mode; dot attention reads a memory as wide as the decoder (HIDDEN)."""
    torch.manual_seed(seed)
    memory_size = HIDDEN if attention == "dot" else MEMORY
    features = decoder_feature_size(attention, input_feeding, HIDDEN, memory_size)
    rnn = RecurrentBackbone(cell, HIDDEN, layers, vocab_size=VOCAB, embedding_dim=6, padding_idx=PAD, feature_size=features)
    decoder = Seq2SeqDecoder(rnn, VOCAB, memory_size, attention, input_feeding)
    return decoder.eval()


def make_memory(decoder: Seq2SeqDecoder, lengths: list[int], seed: int = 1):
    """Random encoder outputs (zero at padding) for source lengths ``lengths``."""
    generator = torch.Generator().manual_seed(seed)
    memory_size = decoder.combine.in_features - HIDDEN
    outputs = torch.randn(len(lengths), max(lengths), memory_size, generator=generator)
    mask = lengths_to_mask(torch.tensor(lengths), max(lengths))
    outputs = outputs.masked_fill(~mask.unsqueeze(2), 0.0)
    summary = torch.randn(len(lengths), memory_size, generator=generator)
    return decoder.memory(outputs, mask, summary)


def initial_state(decoder: Seq2SeqDecoder, batch: int, seed: int = 2):
    generator = torch.Generator().manual_seed(seed)
    shape = (decoder.rnn.num_layers, batch, HIDDEN)
    h = torch.randn(shape, generator=generator) * 0.5
    return (h, torch.randn(shape, generator=generator) * 0.5) if decoder.rnn.cell == "lstm" else h


BANNED = torch.zeros(VOCAB, dtype=torch.bool)
BANNED[[PAD, BOS]] = True


# -- attention -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_attention_ignores_padded_memory(kind: str) -> None:
    torch.manual_seed(0)
    attention = Attention(kind, MEMORY, MEMORY)
    memory = torch.randn(3, 5, MEMORY)
    mask = lengths_to_mask(torch.tensor([5, 2, 3]), 5)
    query = torch.randn(3, 4, MEMORY)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    garbage = memory.masked_fill(~mask.unsqueeze(2), 1e4)
    context_2, weights_2 = attention(query, attention.keys(garbage), garbage, mask)
    torch.testing.assert_close(context, context_2)
    torch.testing.assert_close(weights, weights_2)
    assert (weights.masked_select(~mask.unsqueeze(1).expand_as(weights)) == 0).all()
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(3, 4))


def test_dot_attention_needs_equal_sizes() -> None:
    with pytest.raises(UserError, match="attention=dot"):
        Attention("dot", 8, 16)


# -- decoder and bridge --------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
def test_teacher_forced_forward_equals_step_by_step(cell: str, attention: str) -> None:
    """The one-call path (no input feeding) and the stepwise path give the same logits."""
    for input_feeding in (False, True):
        decoder = make_decoder(cell, attention, input_feeding)
        memory = make_memory(decoder, [4, 2])
        inputs = torch.tensor([[BOS, 4, 5, 6], [BOS, 5, PAD, PAD]])
        lengths = torch.tensor([4, 2])
        initial = initial_state(decoder, 2)
        logits = decoder(inputs, initial, memory)
        state = decoder.start(initial, memory)
        for step in range(4):
            step_logits, state, _ = decoder.step(inputs[:, step], state, memory)
            valid = lengths > step
            torch.testing.assert_close(logits[valid, step], step_logits[valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_decoder_logits_do_not_depend_on_padding_or_batch_mates(input_feeding: bool) -> None:
    decoder = make_decoder("gru", "additive", input_feeding)
    memory = make_memory(decoder, [5, 2, 3])
    inputs = torch.tensor([[BOS, 4, 5, 6, 4], [BOS, 5, PAD, PAD, PAD], [BOS, 6, 6, PAD, PAD]])
    lengths = torch.tensor([5, 2, 3])
    initial = initial_state(decoder, 3)
    batched = decoder(inputs, initial, memory)
    for row in range(3):
        source = int(memory.mask[row].sum())
        alone_memory = decoder.memory(memory.outputs[row : row + 1, :source], memory.mask[row : row + 1, :source], memory.summary[row : row + 1])
        target = int(lengths[row])
        alone = decoder(inputs[row : row + 1, :target], initial[:, row : row + 1], alone_memory)
        torch.testing.assert_close(batched[row, :target], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("encoder_cell", "layers", "bidirectional", "decoder_cell", "decoder_layers"), [
    ("lstm", 2, True, "gru", 3), ("gru", 1, False, "lstm", 2), ("rnn", 3, True, "rnn", 1),
])
def test_bridge_maps_any_encoder_state_to_any_decoder_state(encoder_cell, layers, bidirectional, decoder_cell, decoder_layers) -> None:
    encoder = RecurrentBackbone(encoder_cell, 6, layers, bidirectional, vocab_size=9, embedding_dim=4)
    outputs, final = encoder(torch.randint(4, 9, (3, 5)), torch.tensor([5, 1, 3]))
    bridge = Bridge(encoder.state_size, decoder_layers, 7, decoder_cell == "lstm")
    initial = bridge(final)
    parts = initial if isinstance(initial, tuple) else (initial,)
    assert len(parts) == (2 if decoder_cell == "lstm" else 1)
    assert all(part.shape == (decoder_layers, 3, 7) for part in parts)
    assert top_layer(final, encoder.num_directions).shape == (3, encoder.output_size)


def test_vector_encoder_is_a_one_step_memory() -> None:
    encoder = VectorEncoder(64, hidden_size=12, num_layers=2)
    outputs, final = encoder(torch.rand(5, 1, 64), torch.ones(5, dtype=torch.long))
    assert outputs.shape == (5, 1, 12) and final.shape == (1, 5, 12)
    with pytest.raises(UserError, match="one feature vector"):
        encoder(torch.rand(5, 3, 64), torch.full((5,), 3))


# -- search --------------------------------------------------------------------------------------


def search_inputs(decoder: Seq2SeqDecoder, source_lengths: list[int]):
    memory = make_memory(decoder, source_lengths)
    state = decoder.start(initial_state(decoder, len(source_lengths)), memory)
    return memory, state


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("attention", ["none", "general", "additive"])
def test_beam_of_one_equals_greedy(cell: str, attention: str) -> None:
    decoder = make_decoder(cell, attention, input_feeding=True, layers=2)
    memory, state = search_inputs(decoder, [4, 1, 3, 2])
    limits = torch.tensor([6, 3, 8, 1])
    greedy = greedy_search(decoder, memory, state, limits, BOS, EOS, PAD, BANNED)
    beam = beam_search(decoder, memory, state, limits, BOS, EOS, PAD, BANNED, beam_size=1)
    assert greedy.sequences() == beam.sequences()
    torch.testing.assert_close(greedy.log_probs, beam.log_probs)
    if greedy.attention is not None:
        steps = min(greedy.attention.shape[2], beam.attention.shape[2])
        torch.testing.assert_close(greedy.attention[:, :, :steps], beam.attention[:, :, :steps])
    assert all(len(seq) <= limit for seq, limit in zip(greedy.sequences(), limits.tolist()))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batched_search_equals_searching_each_example_alone(beam_size: int) -> None:
    decoder = make_decoder("lstm", "general", input_feeding=True)
    lengths = [4, 1, 3]
    memory, state = search_inputs(decoder, lengths)
    limits = torch.tensor([7, 5, 6])
    search = (lambda *a: greedy_search(*a)) if beam_size == 1 else (lambda *a: beam_search(*a, beam_size=beam_size))
    batched = search(decoder, memory, state, limits, BOS, EOS, PAD, BANNED)
    for row, length in enumerate(lengths):
        alone_memory = decoder.memory(memory.outputs[row : row + 1, :length], memory.mask[row : row + 1, :length], memory.summary[row : row + 1])
        alone_state = state.select(torch.tensor([row]))
        alone = search(decoder, alone_memory, alone_state, limits[row : row + 1], BOS, EOS, PAD, BANNED)
        for rank in range(beam_size):
            assert alone.sequences(rank)[0] == batched.sequences(rank)[row]
        torch.testing.assert_close(alone.scores[0], batched.scores[row], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def sequence_log_prob(decoder: Seq2SeqDecoder, memory, state, tokens: list[int], ends_with_eos: bool) -> float:
    total, previous = 0.0, BOS
    for token in [*tokens, EOS] if ends_with_eos else tokens:
        logits, state, _ = decoder.step(torch.tensor([previous]), state, memory)
        total += float(torch.log_softmax(logits, dim=1)[0, token])
        previous = token
    return total


def test_exhaustive_beam_finds_the_most_likely_sequence() -> None:
    """With more beams than sequences, beam search is exhaustive: its best equals brute force."""
    decoder = make_decoder("gru", "additive", input_feeding=True)
    memory, state = search_inputs(decoder, [3])
    limit = 3
    choices = [UNK, 4, 5, 6]
    best = max(
        (sequence_log_prob(decoder, memory, state, list(tokens), len(tokens) < limit), tokens)
        for length in range(limit + 1)
        for tokens in itertools.product(choices, repeat=length)
    )
    beam = beam_search(decoder, memory, state, torch.tensor([limit]), BOS, EOS, PAD, BANNED, beam_size=len(choices) ** limit + 30)
    assert beam.sequences()[0] == list(best[1])
    assert float(beam.log_probs[0, 0]) == pytest.approx(best[0], abs=1e-4)
    ranked = beam.scores[0][torch.isfinite(beam.scores[0])]
    assert (ranked[:-1] >= ranked[1:]).all()


def test_length_penalty_prefers_longer_hypotheses() -> None:
    decoder = make_decoder("lstm", "general")
    memory, state = search_inputs(decoder, [4, 2])
    limits = torch.tensor([8, 8])
    plain = beam_search(decoder, memory, state, limits, BOS, EOS, PAD, BANNED, beam_size=4, alpha=0.0)
    long = beam_search(decoder, memory, state, limits, BOS, EOS, PAD, BANNED, beam_size=4, alpha=2.0)
    assert (long.lengths[:, 0] >= plain.lengths[:, 0]).all()
