"""RecurrentBackbone and the reference cells: padding semantics, fused/reference agreement, errors."""

from __future__ import annotations

import inspect
import itertools
import math

import pytest
import torch
from torch import nn

from rnnlab.backbones import RecurrentBackbone, ReferenceGRU, ReferenceLSTM, ReferenceRNN, reference
from rnnlab.backbones.recording import DirectionRecord
from rnnlab.backbones.recurrent import (
    LENGTH_GROUP_STEP_COST,
    LENGTH_GROUP_STEP_COST_HIDDEN,
    LENGTH_GROUPS_FROM_HIDDEN,
    PACKED_ABOVE_PADDING,
    PACKED_HALF_STEPS,
    PACKED_TABLE_STEPS,
    group_step_cost,
    length_groups,
    packed_above,
)
from rnnlab.errors import UserError

FEATURES, HIDDEN, STEPS, VOCAB = 5, 6, 7, 11
LENGTHS = torch.tensor([7, 3, 1, 5])
ATOL = 1e-5

CONFIGS = list(itertools.product(("rnn", "lstm", "gru"), (False, True), (1, 2)))
CONFIG_IDS = [f"{cell}-{'bi' if bi else 'uni'}-{layers}L" for cell, bi, layers in CONFIGS]


def build(cell: str, bidirectional: bool, num_layers: int, impl: str, **kwargs: object) -> RecurrentBackbone:
    kwargs.setdefault("input_size", FEATURES)
    kwargs.setdefault("hidden_size", HIDDEN)
    model = RecurrentBackbone(
        cell=cell,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=0.3 if num_layers > 1 else 0.0,
        impl=impl,
        **kwargs,
    )
    return model.eval()


def states(final: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return final if isinstance(final, tuple) else (final,)


def padded_features(lengths: torch.Tensor = LENGTHS) -> torch.Tensor:
    """(B, T, F) features with large garbage at padded steps, so leaking padding cannot pass unnoticed."""
    x = torch.randn(len(lengths), STEPS, FEATURES)
    pad = torch.arange(STEPS).unsqueeze(0) >= lengths.unsqueeze(1)
    return torch.where(pad.unsqueeze(2), 100 * torch.randn_like(x), x)


def assert_same(a: tuple[torch.Tensor, object], b: tuple[torch.Tensor, object]) -> None:
    torch.testing.assert_close(a[0], b[0], atol=ATOL, rtol=0)
    for sa, sb in zip(states(a[1]), states(b[1]), strict=True):
        torch.testing.assert_close(sa, sb, atol=ATOL, rtol=0)


def record_calls(model: RecurrentBackbone, names: tuple[str, ...], calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of ``model``'s methods ``names`` still runs, and appends its name to ``calls`` first."""
    for name in names:
        original = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *args, _o=original, _n=name: calls.append(_n) or _o(*args))


def twins(
    cell: str, bidirectional: bool, num_layers: int, **kwargs: object
) -> tuple[RecurrentBackbone, RecurrentBackbone]:
    """A reference and a fused backbone with the same weights (the fused one loads the reference's)."""
    ref = build(cell, bidirectional, num_layers, "reference", **kwargs)
    fused = build(cell, bidirectional, num_layers, "fused", **kwargs)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), CONFIGS, ids=CONFIG_IDS)
def test_padded_batch_matches_each_sequence_alone(cell: str, bidirectional: bool, num_layers: int, impl: str) -> None:
    torch.manual_seed(0)
    model = build(cell, bidirectional, num_layers, impl)
    x = padded_features()
    with torch.no_grad():
        outputs, final = model(x, LENGTHS)
        assert outputs.shape == (4, STEPS, HIDDEN * model.num_directions)
        for b, length in enumerate(LENGTHS.tolist()):
            alone_out, alone_final = model(x[b : b + 1, :length], torch.tensor([length]))
            torch.testing.assert_close(outputs[b, :length], alone_out[0], atol=ATOL, rtol=0)
            assert torch.equal(outputs[b, length:], torch.zeros_like(outputs[b, length:]))
            for batched, single in zip(states(final), states(alone_final), strict=True):
                assert batched.shape == (num_layers * model.num_directions, 4, HIDDEN)
                torch.testing.assert_close(batched[:, b], single[:, 0], atol=ATOL, rtol=0)


@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), CONFIGS, ids=CONFIG_IDS)
def test_reference_equals_fused_on_same_weights(cell: str, bidirectional: bool, num_layers: int) -> None:
    torch.manual_seed(1)
    ref, fused = twins(cell, bidirectional, num_layers)
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in fused.state_dict().items()}
    x = padded_features()
    with torch.no_grad():
        assert_same(ref(x, LENGTHS), fused(x, LENGTHS))
        full = torch.full_like(LENGTHS, STEPS)  # the fused path's unpacked shortcut
        assert_same(ref(x, full), fused(x, full))
        short = LENGTHS.clamp(max=STEPS - 2)  # padded beyond the longest sequence: outputs keep T
        assert_same(ref(x, short), fused(x, short))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_reference_equals_fused_with_token_inputs(cell: str) -> None:
    torch.manual_seed(2)
    kwargs = {"vocab_size": VOCAB, "embedding_dim": FEATURES, "input_size": None}
    fused = build(cell, True, 2, "fused", **kwargs)
    ref = build(cell, True, 2, "reference", **kwargs)
    ref.load_state_dict(fused.state_dict())
    tokens = torch.randint(1, VOCAB, (4, STEPS))
    tokens[torch.arange(STEPS).unsqueeze(0) >= LENGTHS.unsqueeze(1)] = 0
    with torch.no_grad():
        assert_same(ref(tokens, LENGTHS), fused(tokens, LENGTHS))


def test_reference_initialisation_matches_torch() -> None:
    torch.manual_seed(3)
    ref = ReferenceLSTM(FEATURES, 64, num_layers=2, bidirectional=True)
    fused = nn.LSTM(FEATURES, 64, num_layers=2, bidirectional=True, batch_first=True)
    bound = 1 / math.sqrt(64)
    for (name, p), (torch_name, q) in zip(ref.named_parameters(), fused.named_parameters(), strict=True):
        assert (name, p.shape) == (torch_name, q.shape)
        assert p.abs().max().item() <= bound
        assert p.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2)  # std of uniform(-a, a) is a/sqrt(3)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_direction_starts_at_each_sequence_end(cell: str, impl: str) -> None:
    torch.manual_seed(4)
    kwargs = {"vocab_size": VOCAB, "embedding_dim": FEATURES, "input_size": None}
    model = build(cell, True, 2, impl, **kwargs)
    pad = torch.arange(STEPS).unsqueeze(0) >= LENGTHS.unsqueeze(1)
    tokens = torch.randint(1, VOCAB, (4, STEPS))
    clean = tokens.masked_fill(pad, 0)
    garbage = tokens.masked_fill(pad, 7)  # a real token id, not padding_idx: its embedding is non-zero
    features_model = build(cell, True, 2, impl)
    x = padded_features()
    with torch.no_grad():
        assert_same(model(clean, LENGTHS), model(garbage, LENGTHS))
        assert_same(features_model(x, LENGTHS), features_model(x.masked_fill(pad.unsqueeze(2), 0.0), LENGTHS))

        outputs, final = model(garbage, LENGTHS)
        h_n = states(final)[0]  # (L*2, B, H): last layer's forward at -2, backward at -1
        for b, length in enumerate(LENGTHS.tolist()):
            torch.testing.assert_close(outputs[b, 0, HIDDEN:], h_n[-1, b], atol=ATOL, rtol=0)
            torch.testing.assert_close(outputs[b, length - 1, :HIDDEN], h_n[-2, b], atol=ATOL, rtol=0)


@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), [("lstm", True, 2), ("gru", True, 1), ("rnn", True, 2)])
def test_reference_and_fused_gradients_agree(cell: str, bidirectional: bool, num_layers: int) -> None:
    torch.manual_seed(5)
    ref, fused = twins(cell, bidirectional, num_layers)
    x = padded_features()
    mask = (torch.arange(STEPS).unsqueeze(0) < LENGTHS.unsqueeze(1)).unsqueeze(2)
    weights = torch.randn(4, STEPS, HIDDEN * ref.num_directions)
    grads = []
    for model in (ref, fused):
        inputs = x.clone().requires_grad_()
        outputs, final = model(inputs, LENGTHS)
        loss = (outputs * weights * mask).sum() + sum(s.pow(2).sum() for s in states(final))
        loss.backward()
        grads.append({"inputs": inputs.grad, **{n: p.grad for n, p in model.named_parameters()}})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=ATOL, rtol=0, msg=name)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_relu_rnn_reference_equals_fused(bidirectional: bool) -> None:
    torch.manual_seed(6)
    ref, fused = twins("rnn", bidirectional, 2, nonlinearity="relu")
    assert ref.rnn.nonlinearity == fused.rnn.nonlinearity == "relu"
    x = padded_features()
    with torch.no_grad():
        assert_same(ref(x, LENGTHS), fused(x, LENGTHS))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, "model.backbone.cell must be one of rnn, lstm, gru"),
        ({"impl": "cuda"}, "model.backbone.impl must be one of auto, fused, reference"),
        ({"cell": "rnn", "nonlinearity": "sigmoid"}, "model.backbone.nonlinearity must be one of tanh, relu"),
        ({"cell": "lstm", "nonlinearity": "relu"}, "applies to cell=rnn only"),
        ({"input_size": None}, "exactly one of model.backbone.vocab_size"),
        ({"vocab_size": VOCAB}, "exactly one of model.backbone.vocab_size"),
        ({"hidden_size": 0}, "model.backbone.hidden_size must be >= 1; got 0"),
        ({"num_layers": 0}, "model.backbone.num_layers must be >= 1; got 0"),
        ({"dropout": 1.0}, r"model.backbone.dropout must be in \[0, 1\); got 1.0"),
        ({"embedding_dropout": -0.1}, r"model.backbone.embedding_dropout must be in \[0, 1\)"),
        ({"vocab_size": VOCAB, "input_size": None, "padding_idx": VOCAB}, "model.backbone.padding_idx"),
    ],
)
def test_bad_options_raise_user_error(kwargs: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"input_size": FEATURES, **kwargs}
    with pytest.raises(UserError, match=message):
        RecurrentBackbone(**options)


@pytest.mark.parametrize(("impl", "rnn_type"), [("auto", nn.GRU), ("fused", nn.GRU), ("reference", ReferenceGRU)])
def test_impl_resolution_and_sizes(impl: str, rnn_type: type) -> None:
    model = RecurrentBackbone(cell="gru", hidden_size=HIDDEN, bidirectional=True, impl=impl, vocab_size=VOCAB)
    assert isinstance(model.rnn, rnn_type)
    assert model.impl == impl
    assert (model.cell, model.num_directions, model.output_size) == ("gru", 2, 2 * HIDDEN)
    assert isinstance(model.embedding, nn.Embedding) and model.embedding.padding_idx == 0


@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_auto_runs_mostly_padded_cpu_batches_packed_and_others_per_direction(
    cell: str, bidirectional: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """impl=auto on CPU, RNN and GRU: a batch with more padding than packed_above(cell, H) goes
    packed, others per direction; impl=fused always per direction; every path gives the same result."""
    torch.manual_seed(3)
    auto = RecurrentBackbone(cell=cell, hidden_size=HIDDEN, bidirectional=bidirectional, impl="auto", input_size=FEATURES).eval()
    fused = RecurrentBackbone(cell=cell, hidden_size=HIDDEN, bidirectional=bidirectional, impl="fused", input_size=FEATURES).eval()
    fused.load_state_dict(auto.state_dict())
    x = torch.randn(32, 64, FEATURES)  # T = 64: the table's own length
    mostly_padding, little_padding = torch.tensor([64] + [1] * 31), torch.tensor([64, 62, 63, 64, 61, 64, 60, 64] * 4)
    assert 1 - mostly_padding.sum() / 2048 > packed_above(cell, HIDDEN) > 1 - little_padding.sum() / 2048
    calls: list[str] = []
    for model in (auto, fused):
        record_calls(model, ("_run_packed", "_run_per_direction"), calls, monkeypatch)
    for lengths, expected in ((mostly_padding, "_run_packed"), (little_padding, "_run_per_direction")):
        calls.clear()
        with torch.no_grad():
            assert_same(auto(x, lengths), fused(x, lengths))
        assert calls == [expected, "_run_per_direction"]


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_packed_above_interpolates_the_measured_table_in_log_hidden_size(threads: int) -> None:
    table = PACKED_ABOVE_PADDING[min(threads, 2)]
    for cell, points in table.items():
        for hidden, share in points:
            assert packed_above(cell, hidden, threads) == pytest.approx(share)
        (low, below), (high, above) = points[0], points[1]
        assert packed_above(cell, round(math.sqrt(low * high)), threads) == pytest.approx((below + above) / 2, abs=0.01)
        assert packed_above(cell, 1, threads) == points[0][1] and packed_above(cell, 10_000, threads) == points[-1][1]
        assert all(0 < share < 1 for _, share in points)
    assert packed_above("gru", 128) == packed_above("gru", 128, torch.get_num_threads())


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_packed_above_asks_longer_batches_for_more_padding(cell: str) -> None:
    """torch's packed CPU backward is quadratic in T: beyond the table's T, the real share a batch
    may keep and still go packed shrinks as h / (h + T - 64)."""
    at_table = packed_above(cell, 128, 2)
    assert packed_above(cell, 128, 2, steps=1) == packed_above(cell, 128, 2, steps=PACKED_TABLE_STEPS) == at_table
    longer = PACKED_TABLE_STEPS + PACKED_HALF_STEPS
    assert 1 - packed_above(cell, 128, 2, steps=longer) == pytest.approx((1 - at_table) / 2)
    shares = [packed_above(cell, 128, 2, steps=steps) for steps in (64, 128, 256, 512, 1024, 4096)]
    assert shares == sorted(shares) and shares[-1] > 0.98


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_auto_runs_a_long_mostly_padded_batch_per_direction(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A padding share that sends a 64-step batch packed keeps a 1024-step batch on the padded
    path, whose cost is linear in T (below H = 64 as one batch); the result is the packed path's."""
    torch.manual_seed(4)
    auto = RecurrentBackbone(cell=cell, hidden_size=HIDDEN, bidirectional=True, impl="auto", input_size=FEATURES).eval()
    # Padding halfway between the thresholds at T = 64 and at T = 1024: one full sequence, the rest short.
    padding = (packed_above(cell, HIDDEN) + packed_above(cell, HIDDEN, steps=1024)) / 2
    short = round(((1 - padding) * 64 * 1024 - 1024) / 63)
    lengths = torch.tensor([1024] + [short] * 63)
    assert packed_above(cell, HIDDEN, steps=1024) > 1 - lengths.sum() / (64 * 1024) > packed_above(cell, HIDDEN)
    calls: list[str] = []
    record_calls(auto, ("_run_packed", "_run_per_direction"), calls, monkeypatch)
    x = torch.randn(64, 1024, FEATURES)
    with torch.no_grad():
        outputs, final = auto(x, lengths)
        assert calls == ["_run_per_direction"]
        assert_same((outputs, final), auto._run_packed(x, lengths, None))


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_auto_runs_a_long_mostly_padded_rnn_or_gru_batch_in_length_groups(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """From H = 64, that long batch is split into length_groups, each run padded and cut to its own
    longest length. Outputs, final states and the gradients of the inputs, the initial state and the
    weights are those of torch's packed path."""
    torch.manual_seed(8)
    hidden = LENGTH_GROUPS_FROM_HIDDEN
    model = build(cell, True, 1, "auto", hidden_size=hidden)
    padding = (packed_above(cell, hidden) + packed_above(cell, hidden, steps=1024)) / 2
    short = round(((1 - padding) * 31 * 1024 - 1024) / 30)  # one full sequence, 30 about this long
    lengths = torch.tensor([short + offset for offset in (-2, 0, -1, 2, 0, 1, -3, 0, 3, 1)] * 3 + [1024])
    assert packed_above(cell, hidden, steps=1024) > 1 - lengths.sum() / (31 * 1024) > packed_above(cell, hidden) and short > 3
    runs: list[tuple[int, int]] = []
    original = model._run_per_direction
    monkeypatch.setattr(model, "_run_packed", lambda *args: pytest.fail("impl=auto packed a 1024-step batch it should split"))
    monkeypatch.setattr(model, "_run_per_direction", lambda x, n, s: runs.append(tuple(x.shape[:2])) or original(x, n, s))
    x = torch.randn(len(lengths), 1024, FEATURES, requires_grad=True)
    h0 = torch.randn(2, len(lengths), hidden, requires_grad=True)

    def run(path: object) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
        outputs, h = path(x, lengths, h0)  # type: ignore[operator]
        inputs = [x, h0, *model.parameters()]
        return (outputs, h), list(torch.autograd.grad(outputs.pow(2).sum() + h.pow(2).sum(), inputs))

    got, got_grads = run(lambda *args: model(args[0], args[1], initial=args[2]))
    assert runs == [(1, 1024), (30, short + 3)]
    expected, expected_grads = run(RecurrentBackbone._run_packed.__get__(model))
    for a, b in zip((*got, *got_grads), (*expected, *expected_grads), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4)  # weight gradients: float32 sums over thousands of steps


def cheapest_split_cost(lengths: list[int], step_cost: float) -> float:
    """By brute force: the least sum of T_g * (step_cost + B_g) over every split of the longest-first
    order into runs."""
    ordered = sorted(lengths, reverse=True)
    best = math.inf
    for cuts in itertools.product((False, True), repeat=len(ordered) - 1):
        starts = [0] + [i + 1 for i, cut in enumerate(cuts) if cut]
        ends = [*starts[1:], len(ordered)]
        best = min(best, sum(ordered[a] * (step_cost + b - a) for a, b in zip(starts, ends)))
    return best


@pytest.mark.parametrize("step_cost", [0.0, 2.0, 16.0])
def test_length_groups_is_the_cheapest_split_into_runs_of_similar_lengths(step_cost: float) -> None:
    rng = torch.Generator().manual_seed(5)
    for size in (1, 2, 5, 9, 12):
        for _ in range(5):
            lengths = torch.randint(1, 40, (size,), generator=rng).tolist()
            groups = length_groups(lengths, step_cost)
            assert sorted(i for group in groups for i in group) == list(range(size))  # each index once
            in_order = [lengths[i] for group in groups for i in group]
            assert in_order == sorted(lengths, reverse=True)  # runs of the longest-first order
            for earlier, later in zip(groups, groups[1:]):  # equal lengths are never split
                assert lengths[earlier[-1]] > lengths[later[0]]
            cost = sum(max(lengths[i] for i in group) * (step_cost + len(group)) for group in groups)
            assert cost == pytest.approx(cheapest_split_cost(lengths, step_cost))


def test_length_groups_split_finer_for_bigger_hidden_sizes() -> None:
    """A kernel call's own cost stays while a sequence's step grows with H: the cost of a call's step
    in sequence-steps falls as 128 / H, so a bigger model splits the same batch into more groups."""
    assert group_step_cost(LENGTH_GROUP_STEP_COST_HIDDEN) == LENGTH_GROUP_STEP_COST
    assert group_step_cost(64) == 2 * group_step_cost(128) == 4 * group_step_cost(256) == 8 * group_step_cost(512)
    lengths = [64, 51, 47, 47, 46, 46, 43, 41, 40, 37, 36, 35, 34, 32, 31, 29, 29, 26, 22, 21, 17, 16, 16, 15, 13, 10, 6, 6, 5, 4, 1, 1]
    counts = [len(length_groups(lengths, group_step_cost(hidden))) for hidden in (64, 128, 256, 512)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_length_groups_keeps_a_tight_batch_whole_and_splits_off_the_long_tail() -> None:
    step_cost = LENGTH_GROUP_STEP_COST
    assert length_groups([5, 5, 5], step_cost) == [[0, 1, 2]]
    (tight,) = length_groups([30, 29, 31, 30] * 8, step_cost)  # 3 % padding: no split pays
    assert sorted(tight) == list(range(32))
    lengths = [3, 200, 7, 7, 150, 2, 1, 200, 9, 30]
    assert length_groups(lengths, step_cost) == [[1, 7, 4, 9], [8, 2, 3, 0, 5, 6]]


@pytest.mark.parametrize(("bidirectional", "num_layers"), [(False, 1), (True, 2)])
def test_auto_runs_a_cpu_lstm_batch_in_length_groups_with_the_packed_result(
    bidirectional: bool, num_layers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """impl=auto never packs an LSTM batch on CPU: from H = 64 it runs each of length_groups padded,
    cut to its own longest length. Outputs, final states and the gradients of the inputs, the initial
    state and the weights are those of torch's packed path and of each sequence alone."""
    torch.manual_seed(6)
    hidden = LENGTH_GROUPS_FROM_HIDDEN
    model = build("lstm", bidirectional, num_layers, "auto", hidden_size=hidden)
    lengths = torch.tensor([3, 200, 7, 7, 150, 2, 1, 200, 9, 30])
    directions = num_layers * model.num_directions
    x = torch.randn(len(lengths), 200, FEATURES, requires_grad=True)
    h0 = torch.randn(directions, len(lengths), hidden, requires_grad=True)
    c0 = torch.randn(directions, len(lengths), hidden, requires_grad=True)
    runs: list[tuple[int, int]] = []
    original = model._run_per_direction
    monkeypatch.setattr(model, "_run_packed", lambda *args: pytest.fail("impl=auto packed an LSTM batch on CPU"))
    monkeypatch.setattr(model, "_run_per_direction", lambda x, n, s: runs.append(tuple(x.shape[:2])) or original(x, n, s))

    def run(path: object) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
        outputs, (h, c) = path(x, lengths, (h0, c0))  # type: ignore[operator]
        inputs = [x, h0, c0, *model.parameters()]
        grads = torch.autograd.grad(outputs.pow(2).sum() + h.pow(2).sum() + c.pow(2).sum(), inputs)
        return (outputs, h, c), list(grads)

    got, got_grads = run(lambda *args: model(args[0], args[1], initial=args[2]))
    assert runs == [(4, 200), (6, 9)]
    expected, expected_grads = run(RecurrentBackbone._run_packed.__get__(model))
    for a, b in zip((*got, *got_grads), (*expected, *expected_grads), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)  # weight gradients sum to about 20
    with torch.no_grad():
        for b, length in enumerate(lengths.tolist()):
            start = (h0[:, b : b + 1], c0[:, b : b + 1])
            alone, (h, c) = model(x[b : b + 1, :length], lengths[b : b + 1], initial=start)
            torch.testing.assert_close(got[0][b, :length], alone[0], atol=ATOL, rtol=0)
            assert torch.equal(got[0][b, length:], torch.zeros_like(got[0][b, length:]))
            torch.testing.assert_close(got[1][:, b], h[:, 0], atol=ATOL, rtol=0)
            torch.testing.assert_close(got[2][:, b], c[:, 0], atol=ATOL, rtol=0)


def test_auto_runs_a_small_cpu_lstm_as_one_padded_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below H = 64 a step costs little beside the kernel call: no length groups, and never packed."""
    model = build("lstm", True, 1, "auto", hidden_size=LENGTH_GROUPS_FROM_HIDDEN - 1)
    lengths = torch.tensor([200] + [1] * 31)  # 97 % padding
    calls: list[str] = []
    record_calls(model, ("_run_packed", "_run_per_direction", "_run_length_groups"), calls, monkeypatch)
    with torch.no_grad():
        model(torch.randn(32, 200, FEATURES), lengths)
    assert calls == ["_run_per_direction"]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_padded_path_gives_padding_no_gradient(bidirectional: bool) -> None:
    """The fused padded LSTM path keeps c frozen at padded steps by saturating the gates there: the
    loss on outputs and both final states must send exactly zero gradient into padded inputs,
    even with huge garbage there, and the real steps' gradients must equal each sequence's alone."""
    torch.manual_seed(8)
    model = build("lstm", bidirectional, 2, "fused")
    x = padded_features().requires_grad_()
    outputs, (h_n, c_n) = model(x, LENGTHS)
    (outputs.sum() + h_n.sum() + c_n.pow(2).sum()).backward()
    pad = torch.arange(STEPS).unsqueeze(0) >= LENGTHS.unsqueeze(1)
    assert torch.equal(x.grad[pad], torch.zeros_like(x.grad[pad]))
    for b, length in enumerate(LENGTHS.tolist()):
        alone = x.detach()[b : b + 1, :length].clone().requires_grad_()
        out, (h, c) = model(alone, torch.tensor([length]))
        (out.sum() + h.sum() + c.pow(2).sum()).backward()
        torch.testing.assert_close(x.grad[b, :length], alone.grad[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("padding_value", [float("nan"), float("inf"), 1e8])
def test_lstm_padded_path_ignores_whatever_the_padding_holds(padding_value: float) -> None:
    """The saturating column must win whatever the caller padded with: the padded path's outputs
    and final states equal torch's packed path (which never reads padding)."""
    torch.manual_seed(9)
    model = build("lstm", True, 2, "fused")
    x = padded_features()
    pad = torch.arange(STEPS).unsqueeze(0) >= LENGTHS.unsqueeze(1)
    garbage = x.masked_fill(pad.unsqueeze(2), padding_value)
    with torch.no_grad():
        assert_same(model._run_per_direction(garbage, LENGTHS, None), model._run_packed(x, LENGTHS, None))


def test_lstm_padded_path_in_half_precision_matches_packed() -> None:
    """The saturating column in float16 weights (a constant past 65504 would be inf, and 0 * inf = NaN)."""
    torch.manual_seed(10)
    model = build("lstm", True, 1, "fused").half()
    x = torch.randn(4, STEPS, FEATURES).half()
    with torch.no_grad():
        padded, (h, c) = model._run_per_direction(x, LENGTHS, None)
        packed, (h_ref, c_ref) = model._run_packed(x, LENGTHS, None)
    assert all(t.isfinite().all() for t in (padded, h, c))
    for got, expected in ((padded, packed), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got.float(), expected.float(), atol=5e-3, rtol=0)


@pytest.mark.parametrize("impl", ["fused", "auto", "reference"])
@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), CONFIGS, ids=CONFIG_IDS)
def test_bfloat16_autocast_runs_every_path_and_stays_close_to_float32(
    cell: str, bidirectional: bool, num_layers: int, impl: str
) -> None:
    """``trainer.precision=bf16-mixed`` on the CPU: forward and backward run on a padded batch (the
    reference GRU once failed: its bfloat16 gates met a float32 state in ``lerp``), with results
    within bfloat16's precision of float32 and nothing from the padding."""
    torch.manual_seed(11)
    model = build(cell, bidirectional, num_layers, impl)
    x = padded_features().requires_grad_()
    expected, expected_final = model(x, LENGTHS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, final = model(x, LENGTHS)
        (outputs.float().sum() + sum(s.float().sum() for s in states(final))).backward()
    assert x.grad is not None and x.grad.isfinite().all()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.dtype == parameter.dtype and parameter.grad.isfinite().all(), name
    pad = torch.arange(STEPS).unsqueeze(0) >= LENGTHS.unsqueeze(1)
    assert (x.grad[pad] == 0).all()
    torch.testing.assert_close(outputs.float(), expected, atol=0.05, rtol=0)
    for got, want in zip(states(final), states(expected_final), strict=True):
        torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_training_mode_applies_dropout_between_layers(impl: str) -> None:
    torch.manual_seed(7)
    model = RecurrentBackbone(
        cell="lstm", hidden_size=HIDDEN, num_layers=2, bidirectional=True, dropout=0.5, impl=impl, input_size=FEATURES
    )
    x = padded_features()
    model.eval()
    with torch.no_grad():
        eval_out, _ = model(x, LENGTHS)
    model.train()
    outputs, (h_n, c_n) = model(x, LENGTHS)
    assert outputs.shape == (4, STEPS, 2 * HIDDEN)
    assert h_n.shape == c_n.shape == (4, 4, HIDDEN)
    pad = torch.arange(STEPS).unsqueeze(0) >= LENGTHS.unsqueeze(1)
    assert torch.equal(outputs[pad], torch.zeros_like(outputs[pad]))
    assert not torch.allclose(outputs, eval_out)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_no_dropout_after_the_last_layer(impl: str) -> None:
    torch.manual_seed(8)
    model = RecurrentBackbone(cell="gru", hidden_size=HIDDEN, dropout=0.5, impl=impl, input_size=FEATURES)
    x = padded_features()
    with torch.no_grad():
        assert_same(model.train()(x, LENGTHS), model.eval()(x, LENGTHS))


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_embedding_dropout_in_training_only(impl: str) -> None:
    torch.manual_seed(9)
    model = RecurrentBackbone(
        cell="gru", hidden_size=HIDDEN, impl=impl, vocab_size=VOCAB, embedding_dim=FEATURES, embedding_dropout=0.5
    )
    tokens = torch.randint(1, VOCAB, (4, STEPS))
    with torch.no_grad():
        eval_out, _ = model.eval()(tokens, LENGTHS)
        torch.testing.assert_close(model(tokens, LENGTHS)[0], eval_out, atol=0, rtol=0)
        train_out, _ = model.train()(tokens, LENGTHS)
    assert not torch.allclose(train_out, eval_out)


def test_reference_uses_no_torch_recurrent_modules() -> None:
    cells = [ReferenceRNN(FEATURES, HIDDEN), ReferenceLSTM(FEATURES, HIDDEN), ReferenceGRU(FEATURES, HIDDEN, 2, True)]
    for model in cells:
        assert not any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in model.modules())
    source = inspect.getsource(reference)
    for banned in ("nn.RNN", "nn.LSTM", "nn.GRU", "Cell(", "_VF", "rnn_tanh", "lstm_cell", "gru_cell"):
        assert banned not in source


# -- the two fused strategies: packed (GPU) and per-direction on the padded batch (CPU) --------


@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), CONFIGS, ids=CONFIG_IDS)
def test_packed_and_per_direction_fused_paths_agree(cell: str, bidirectional: bool, num_layers: int) -> None:
    """forward() takes the per-direction path on CPU; the packed one (taken on GPU) must give the same."""
    torch.manual_seed(0)
    model = build(cell, bidirectional, num_layers, "fused")
    x = padded_features()
    assert_same(model._run_packed(x, LENGTHS, None), model._run_per_direction(x, LENGTHS, None))
    assert_same(model(x, LENGTHS), model._run_per_direction(x, LENGTHS, None))


def test_lstm_final_cell_state_is_exact_over_long_sequences() -> None:
    """The closed-form cell state stays within tolerance over hundreds of steps and odd lengths."""
    torch.manual_seed(0)
    ref, fused = twins("lstm", True, 2)
    lengths = torch.tensor([300, 17, 1, 299, 150])
    x = torch.randn(len(lengths), 300, FEATURES)
    assert_same(ref(x, lengths), fused(x, lengths))


def test_gradients_through_final_states_match_reference() -> None:
    """Training through h_n and c_n (as a seq2seq bridge does) gives the reference's gradients."""
    torch.manual_seed(0)
    ref, fused = twins("lstm", True, 2)
    x = padded_features()
    for model in (ref, fused):
        _, (h_n, c_n) = model(x, LENGTHS)
        (h_n.pow(2).sum() + c_n.sin().sum()).backward()
    for (name, p_ref), (_, p_fused) in zip(ref.named_parameters(), fused.named_parameters(), strict=True):
        torch.testing.assert_close(p_fused.grad, p_ref.grad, atol=ATOL, rtol=1e-4, msg=name)


# -- starting states and extra per-step features -------------------------------------------------


def random_initial(cell: str, model: RecurrentBackbone, batch: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
    shape = (model.num_layers * model.num_directions, batch, HIDDEN)
    return (torch.randn(shape), torch.randn(shape)) if cell == "lstm" else torch.randn(shape)


@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), CONFIGS, ids=CONFIG_IDS)
def test_initial_state_same_in_every_path(cell: str, bidirectional: bool, num_layers: int) -> None:
    """Reference, fused per-direction (CPU), packed (GPU) and the full-length shortcut agree from h_0."""
    torch.manual_seed(3)
    ref, fused = twins(cell, bidirectional, num_layers)
    x = padded_features()
    initial = random_initial(cell, ref, len(LENGTHS))
    with torch.no_grad():
        expected = ref(x, LENGTHS, initial=initial)
        assert_same(expected, fused(x, LENGTHS, initial=initial))
        assert_same(expected, fused._run_packed(x, LENGTHS, initial))
        full = torch.full_like(LENGTHS, STEPS)
        assert_same(ref(x, full, initial=initial), fused(x, full, initial=initial))
        assert not torch.allclose(expected[0], ref(x, LENGTHS)[0]), "the initial state must matter"


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_carrying_the_final_state_continues_the_sequence(cell: str, impl: str) -> None:
    """Running a sequence in two chunks, the second from the first's final state, equals one run."""
    torch.manual_seed(4)
    model = build(cell, False, 2, impl)
    x = torch.randn(3, STEPS, FEATURES)
    lengths = torch.full((3,), STEPS)
    with torch.no_grad():
        whole_out, whole_final = model(x, lengths)
        first_out, first_final = model(x[:, :4], torch.full((3,), 4))
        second_out, second_final = model(x[:, 4:], torch.full((3,), STEPS - 4), initial=first_final)
    torch.testing.assert_close(torch.cat([first_out, second_out], dim=1), whole_out, atol=ATOL, rtol=0)
    for a, b in zip(states(second_final), states(whole_final), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_features_are_concatenated_to_embeddings(impl: str) -> None:
    torch.manual_seed(5)
    model = build("gru", True, 1, impl, vocab_size=VOCAB, embedding_dim=4, input_size=None, feature_size=3)
    tokens = torch.randint(1, VOCAB, (4, STEPS))
    features = torch.randn(4, STEPS, 3)
    with torch.no_grad():
        outputs, _ = model(tokens, LENGTHS, features=features)
        changed, _ = model(tokens, LENGTHS, features=features + 1)
        for b, length in enumerate(LENGTHS.tolist()):
            alone, _ = model(tokens[b : b + 1, :length], torch.tensor([length]), features=features[b : b + 1, :length])
            torch.testing.assert_close(outputs[b, :length], alone[0], atol=ATOL, rtol=0)
    assert model.rnn.input_size == 4 + 3
    assert not torch.allclose(outputs, changed)
    with pytest.raises(ValueError, match="features"):
        model(tokens, LENGTHS)


# -- recording(): every step's states and gates, for the diagnostics -----------------------------

GATES = {"rnn": set(), "lstm": {"input", "forget", "output"}, "gru": {"reset", "update"}}
RECORD_CONFIGS = list(itertools.product(("rnn", "lstm", "gru"), ("fused", "reference"), (False, True)))
RECORD_IDS = [f"{cell}-{impl}-{'bi' if bi else 'uni'}" for cell, impl, bi in RECORD_CONFIGS]


def stacked_states(record: DirectionRecord) -> torch.Tensor:
    """A record's T states (B, H) -> (B, T, H), in reading order."""
    return torch.stack(record.states, dim=1)


def first_step_gates(cell: str, model: RecurrentBackbone, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gates of layer l0's first forward step from a zero state, computed from the weights: (B, H) each."""
    rnn = model.rnn
    pre = x[:, 0] @ rnn.weight_ih_l0.t() + rnn.bias_ih_l0 + rnn.bias_hh_l0  # h_0 = 0: W_hh h_0 vanishes
    if cell == "lstm":
        i, f, _, o = pre.chunk(4, dim=1)
        return {"input": torch.sigmoid(i), "forget": torch.sigmoid(f), "output": torch.sigmoid(o)}
    r, z, _ = pre.chunk(3, dim=1)
    return {"reset": torch.sigmoid(r), "update": torch.sigmoid(z)}


@pytest.mark.parametrize(("cell", "impl", "bidirectional"), RECORD_CONFIGS, ids=RECORD_IDS)
def test_recording_changes_nothing_and_reports_every_direction(cell: str, impl: str, bidirectional: bool) -> None:
    """Inside recording() the outputs and final states are the normal forward's; the recorder holds
    one record per layer and direction with T states (B, H) and the cell's gates (B, T, H)."""
    torch.manual_seed(10)
    model = build(cell, bidirectional, 2, impl)
    x = padded_features()
    batch = len(LENGTHS)
    with torch.no_grad():
        expected = model(x, LENGTHS)
        with model.recording() as recorder:
            recorded = model(x, LENGTHS)
        assert model._recorder is None  # switched off again after the block
        assert_same(expected, recorded)
        assert_same(expected, model(x, LENGTHS))

    names = ["l0", "l0_reverse", "l1", "l1_reverse"] if bidirectional else ["l0", "l1"]
    assert list(recorder.directions) == names
    mask = torch.arange(STEPS).unsqueeze(0) < LENGTHS.unsqueeze(1)  # (B, T)
    for name, record in recorder.directions.items():
        assert record.reverse == name.endswith("_reverse")
        assert torch.equal(record.mask, mask) and torch.equal(record.lengths, LENGTHS)
        assert len(record.states) == STEPS
        assert all(state.shape == (batch, HIDDEN) for state in record.states)
        assert set(record.gates) == GATES[cell]
        for gate in record.gates.values():
            assert gate.shape == (batch, STEPS, HIDDEN)
            assert bool(((gate >= 0) & (gate <= 1)).all())  # sigmoid activations (1.0 at the huge padded inputs)
        # Past a sequence's end its state stays frozen at the last valid one.
        states = stacked_states(record)  # (B, T, H)
        for b, length in enumerate(LENGTHS.tolist()):
            torch.testing.assert_close(states[b, length:], states[b, length - 1].expand(STEPS - length, HIDDEN))
    assert recorder.top_layer() == [recorder.directions[name] for name in names[len(names) // 2 :]]
    if cell != "rnn":
        for gate, value in first_step_gates(cell, model, x).items():
            torch.testing.assert_close(recorder.directions["l0"].gates[gate][:, 0], value, atol=ATOL, rtol=0, msg=gate)


@pytest.mark.parametrize(("cell", "bidirectional"), [("rnn", True), ("lstm", True), ("gru", False)])
def test_fused_and_reference_record_the_same_steps(cell: str, bidirectional: bool) -> None:
    """A fused backbone records (on its own weights) exactly what the reference one with the same state dict records."""
    torch.manual_seed(11)
    ref, fused = twins(cell, bidirectional, 2)
    x = padded_features()
    recorders = []
    with torch.no_grad():
        for model in (ref, fused):
            with model.recording() as recorder:
                model(x, LENGTHS)
            recorders.append(recorder)
    assert isinstance(fused.rnn, nn.RNNBase) and not isinstance(ref.rnn, nn.RNNBase)
    by_ref, by_fused = (r.directions for r in recorders)
    assert list(by_ref) == list(by_fused)
    for name in by_ref:
        torch.testing.assert_close(stacked_states(by_fused[name]), stacked_states(by_ref[name]), atol=ATOL, rtol=0)
        assert by_ref[name].gates.keys() == by_fused[name].gates.keys()
        for gate in by_ref[name].gates:
            torch.testing.assert_close(by_fused[name].gates[gate], by_ref[name].gates[gate], atol=ATOL, rtol=0)


def test_recorded_states_carry_gradients_of_every_later_step() -> None:
    """The recorded states are the tensors the recurrence fed on: ∂(final state)/∂h_t is non-zero for
    every valid t, and zero for a state that never reaches the loss (the fused backbone's parameters
    get gradients too, through the functional twin)."""
    torch.manual_seed(12)
    model = build("gru", False, 1, "fused")
    x = padded_features()
    with model.recording() as recorder:
        _, final = model(x, LENGTHS)
    record = recorder.directions["l0"]
    grads = torch.autograd.grad(final.sum(), record.states + [model.rnn.weight_hh_l0])
    norms = torch.stack([g.norm(dim=1) for g in grads[:-1]], dim=1)  # (B, T)
    assert bool((norms[record.mask] > 0).all())
    assert grads[-1].abs().sum() > 0


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recording_ignores_extra_padding(cell: str, impl: str) -> None:
    """More padded steps (with garbage inputs) at the end of the batch leave every valid step's
    state and gate unchanged, in every layer and direction."""
    torch.manual_seed(13)
    model = build(cell, True, 2, impl)
    x = padded_features()
    longer = torch.cat([x, 100 * torch.randn(len(LENGTHS), 4, FEATURES)], dim=1)  # (B, T + 4, F)
    records = []
    with torch.no_grad():
        for inputs in (x, longer):
            with model.recording() as recorder:
                model(inputs, LENGTHS)
            records.append(recorder.directions)
    short, long = records
    assert list(short) == list(long)
    for name in short:
        valid_short, valid_long = short[name].mask, long[name].mask  # (B, T), (B, T + 4)
        assert valid_long.shape == (len(LENGTHS), STEPS + 4) and int(valid_long.sum()) == int(valid_short.sum())
        # Reading order (the backward direction's valid steps come first too) and by position.
        torch.testing.assert_close(
            stacked_states(long[name])[valid_long], stacked_states(short[name])[valid_short], atol=ATOL, rtol=0
        )
        by_position = short[name].in_positions(stacked_states(short[name]))[valid_short]
        torch.testing.assert_close(
            long[name].in_positions(stacked_states(long[name]))[valid_long], by_position, atol=ATOL, rtol=0
        )
        for gate in short[name].gates:
            torch.testing.assert_close(
                long[name].gates[gate][valid_long], short[name].gates[gate][valid_short], atol=ATOL, rtol=0
            )


def test_in_positions_maps_reading_order_back_to_positions() -> None:
    """The backward direction's reading step t of a sequence of length n is position n - 1 - t;
    padding stays last; the forward direction's order is already by position."""
    lengths = torch.tensor([4, 2, 1])
    mask = torch.arange(4).unsqueeze(0) < lengths.unsqueeze(1)  # (3, 4)
    steps = torch.arange(4.0).expand(3, 4).unsqueeze(2)  # (3, 4, 1): the reading step
    backward = DirectionRecord([], {}, mask, reverse=True)
    forward = DirectionRecord([], {}, mask, reverse=False)
    assert backward.in_positions(steps).squeeze(2).tolist() == [[3, 2, 1, 0], [1, 0, 2, 3], [0, 1, 2, 3]]
    assert torch.equal(forward.in_positions(steps), steps)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_top_layer_states_by_position_are_the_backbone_outputs(cell: str, impl: str) -> None:
    """For the last layer, each direction's states mapped to positions are the matching half of the
    backbone's outputs at valid steps: forward the first H units, backward the last H."""
    torch.manual_seed(14)
    model = build(cell, True, 2, impl)
    x = padded_features()
    valid = torch.arange(STEPS).unsqueeze(0) < LENGTHS.unsqueeze(1)  # (B, T)
    with torch.no_grad(), model.recording() as recorder:
        outputs, _ = model(x, LENGTHS)  # (B, T, 2H)
    forward, backward = recorder.top_layer()
    assert (forward.reverse, backward.reverse) == (False, True)
    for record, half in ((forward, outputs[..., :HIDDEN]), (backward, outputs[..., HIDDEN:])):
        by_position = record.in_positions(stacked_states(record))  # (B, T, H)
        torch.testing.assert_close(by_position[valid], half[valid], atol=ATOL, rtol=0)
    # Without the mapping the backward states would not match (reading order is not position order).
    assert not torch.allclose(stacked_states(backward)[valid], outputs[..., HIDDEN:][valid], atol=1e-3)
