"""The TensorBoard diagnostics (rnnlab.callbacks): layer groups, gradient flow through time and
saturation against known answers, gradient health, throughput and histograms read back from real
Trainer runs, the real CLI with callbacks=diagnostics, bad options, and ``Batch.first``.

The known answers come from a vanilla tanh RNN with W_ih = 0, zero biases, W_hh = s·I and a zero
initial state: every h_t is 0, so tanh'(0) = 1 and ∂L/∂h_t = (s·I)^{T-t} ∂L/∂h_T. A classifier
pooling the last state then has ‖∂L/∂h_t‖ = s^{T-t} ‖∂L/∂h_T‖, with ∂L/∂h_T itself known in closed
form from the head (logits = b, since h_T = 0).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from conftest import cli_env, describe, run_cli
from rnnlab.backbones import RecurrentBackbone
from rnnlab.batch import Batch
from rnnlab.callbacks import GradientFlow, GradientHealth, ParameterHistograms, Saturation, Throughput
from rnnlab.callbacks.gradients import clipped_norm, parameter_groups
from rnnlab.callbacks.probing import first_last_ratio, gradient_flow, saturation
from rnnlab.callbacks.throughput import peak_memory
from rnnlab.data import KeywordsDataModule
from rnnlab.errors import UserError
from rnnlab.masking import lengths_to_mask
from rnnlab.tasks import SequenceClassifier

FEATURES, HIDDEN, VOCAB = 3, 4, 20
LABELS = ["a", "b", "c"]
FEATURE_SPEC: dict[str, Any] = {
    "task": "classification",
    "input": {"kind": "features", "num_features": FEATURES},
    "labels": {"labels": LABELS},
    "label_counts": [1, 1, 1],
}
TOKEN_SPEC: dict[str, Any] = {**FEATURE_SPEC, "input": {"kind": "tokens", "vocab_size": VOCAB, "pad_id": 0}}
ADAM = {"_target_": "torch.optim.Adam", "lr": 0.01}
SCALE = 0.5  # s: W_hh = s·I in the known-answer RNN
SIZE_GUIDANCE = {"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
ENV = cli_env(OMP_NUM_THREADS="1")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def classifier(
    spec: dict[str, Any] = FEATURE_SPEC, pooling: str = "last", head_dropout: float = 0.0, **backbone: Any
) -> SequenceClassifier:
    """A SequenceClassifier on a tiny RecurrentBackbone (vanilla tanh RNN unless ``cell`` says otherwise)."""
    config = {"_target_": "rnnlab.backbones.RecurrentBackbone", "cell": "rnn", "hidden_size": HIDDEN, "embedding_dim": 5, **backbone}
    return SequenceClassifier(spec, config, ADAM, pooling=pooling, head_dropout=head_dropout)


def feature_batch(
    lengths: list[int], steps: int | None = None, inputs: torch.Tensor | None = None, padding: float | None = None
) -> Batch:
    """A batch of feature sequences (B, T, FEATURES), targets cycling through the classes; ``padding``
    (when given) fills the padded steps, so that counting them would show."""
    lengths_tensor = torch.tensor(lengths)
    steps = steps or max(lengths)
    mask = lengths_to_mask(lengths_tensor, steps)  # (B, T)
    x = torch.randn(len(lengths), steps, FEATURES) if inputs is None else inputs
    if padding is not None:
        x = x.masked_fill(~mask.unsqueeze(2), padding)
    targets = torch.arange(len(lengths)) % len(LABELS)
    return Batch(x, lengths_tensor, mask, targets)


def make_linear_recurrence(backbone: RecurrentBackbone, scale: float = SCALE) -> None:
    """W_hh = scale·I in every layer and direction; every other recurrent weight and bias 0."""
    with torch.no_grad():
        for name, parameter in backbone.rnn.named_parameters():
            if name.startswith("weight_hh"):
                parameter.copy_(scale * torch.eye(backbone.hidden_size))
            else:
                parameter.zero_()


def last_state_gradients(model: SequenceClassifier, targets: torch.Tensor) -> torch.Tensor:
    """∂L/∂(pooled vector) (B, D) in closed form when the pooled states are 0: logits = b, so
    ∂L/∂p = W^T (softmax(b) - onehot(y)) / B for the mean cross-entropy; in float64, as the probe's norms."""
    weight, bias = model.head.output.weight, model.head.output.bias  # (C, D), (C,)
    error = torch.softmax(bias, dim=0) - F.one_hot(targets, len(LABELS)).float()  # (B, C)
    return (error @ weight / len(targets)).detach().double()


def read_events(log_dir: Path | str) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance=SIZE_GUIDANCE)
    events.Reload()
    return events


def scalar_steps(events: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in events.Scalars(tag)]


def scalars(events: EventAccumulator, tag: str) -> dict[int, float]:
    return {event.step: event.value for event in events.Scalars(tag)}


# -- parameter groups ----------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_parameter_groups_by_layer_and_direction(impl: str) -> None:
    """One group per recurrent layer and direction and per leaf module; every trainable parameter
    exactly once; frozen parameters left out."""
    model = classifier(TOKEN_SPEC, pooling="attention", cell="lstm", num_layers=2, bidirectional=True, impl=impl)
    groups = parameter_groups(model)
    assert list(groups) == [
        "backbone.embedding",
        "backbone.rnn.l0",
        "backbone.rnn.l0_reverse",
        "backbone.rnn.l1",
        "backbone.rnn.l1_reverse",
        "head.pooling.scorer.0",
        "head.pooling.scorer.2",
        "head.output",
    ]
    assert [len(groups[f"backbone.rnn.{d}"]) for d in ("l0", "l0_reverse", "l1", "l1_reverse")] == [4, 4, 4, 4]
    assert groups["backbone.rnn.l1_reverse"][0] is model.backbone.rnn.weight_ih_l1_reverse
    grouped = [id(p) for group in groups.values() for p in group]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once

    model.backbone.embedding.weight.requires_grad_(False)
    model.backbone.rnn.bias_hh_l0.requires_grad_(False)
    frozen = parameter_groups(model)
    assert "backbone.embedding" not in frozen
    assert [p is model.backbone.rnn.bias_hh_l0 for p in frozen["backbone.rnn.l0"]] == [False, False, False]
    assert sum(len(group) for group in frozen.values()) == sum(p.requires_grad for p in model.parameters())


# -- gradient flow: the known answer -------------------------------------------------------------


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_gradient_flow_decays_as_scale_to_the_distance(impl: str) -> None:
    """‖∂L/∂h_t‖ = s^{T-t} ‖∂L/∂h_T‖ at every t, ∂L/∂h_T as the head says, and the ratio is s^{T-1}."""
    steps = 9
    torch.manual_seed(0)
    model = classifier(impl=impl).eval()
    make_linear_recurrence(model.backbone)
    batch = feature_batch([steps] * 5)
    ((record, norms),) = gradient_flow(model, model.backbone, batch)
    assert not record.reverse and norms.shape == (5, steps)  # (B, T) by position

    expected_last = last_state_gradients(model, batch.targets).norm(dim=1)  # (B,)
    assert bool((expected_last > 0).all())
    distance = torch.arange(steps - 1, -1, -1, dtype=torch.float64)  # T - t for t = 1..T
    expected = expected_last.unsqueeze(1) * SCALE**distance  # (B, T)
    torch.testing.assert_close(norms, expected, rtol=1e-4, atol=0)
    assert bool((norms.diff(dim=1) > 0).all())  # grows monotonically towards T
    assert first_last_ratio(norms, batch.lengths) == pytest.approx(SCALE ** (steps - 1), rel=1e-4)


def test_gradient_flow_is_the_same_for_fused_and_reference() -> None:
    """The probe runs the step-by-step equations on the backbone's own weights: same numbers for both impls."""
    torch.manual_seed(1)
    batch = feature_batch([8, 3, 6, 1, 8])
    reference = classifier(impl="reference", cell="lstm", num_layers=2, bidirectional=True).eval()
    fused = classifier(impl="fused", cell="lstm", num_layers=2, bidirectional=True).eval()
    fused.load_state_dict(reference.state_dict())
    assert isinstance(fused.backbone.rnn, nn.LSTM)
    curves = [[norms for _, norms in gradient_flow(model, model.backbone, batch)] for model in (reference, fused)]
    assert len(curves[0]) == len(curves[1]) == 2
    for reference_norms, fused_norms in zip(*curves, strict=True):
        torch.testing.assert_close(fused_norms, reference_norms, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_gradient_flow_with_variable_lengths(impl: str) -> None:
    """Each sequence's curve ends at its own last position (s^{n-t} there); padded positions get 0;
    the ratio is taken over the batch with each sequence's own T."""
    lengths = [9, 5, 1, 7]
    torch.manual_seed(3)
    model = classifier(impl=impl).eval()
    make_linear_recurrence(model.backbone)
    batch = feature_batch(lengths, padding=100.0)
    ((_, norms),) = gradient_flow(model, model.backbone, batch)
    last = last_state_gradients(model, batch.targets).norm(dim=1)  # (B,)
    expected = torch.zeros(len(lengths), max(lengths), dtype=torch.float64)
    for b, n in enumerate(lengths):
        expected[b, :n] = last[b] * SCALE ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
    torch.testing.assert_close(norms, expected, rtol=1e-4, atol=0)
    first = torch.stack([last[b] * SCALE ** (n - 1) for b, n in enumerate(lengths)])
    assert first_last_ratio(norms, batch.lengths) == pytest.approx(float(first.norm() / last.norm()), rel=1e-4)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_gradient_flow_of_the_backward_direction(impl: str) -> None:
    """Bidirectional, 2 layers: the last layer's backward direction gets the loss at position 1 (where
    pooling takes it) and decays towards each sequence's end: s^{t-1} by position. Its ratio
    ‖∂L/∂h_T‖ / ‖∂L/∂h_1‖ (the state it read first over the one it read last) is s^{T-1}, as forward."""
    lengths = [8, 8, 4, 6]
    torch.manual_seed(4)
    model = classifier(impl=impl, num_layers=2, bidirectional=True).eval()
    make_linear_recurrence(model.backbone)
    batch = feature_batch(lengths, padding=-50.0)
    (forward, forward_norms), (backward, backward_norms) = gradient_flow(model, model.backbone, batch)
    assert (forward.reverse, backward.reverse) == (False, True)
    pooled = last_state_gradients(model, batch.targets)  # (B, 2H): forward half, backward half
    g_forward, g_backward = pooled[:, :HIDDEN].norm(dim=1), pooled[:, HIDDEN:].norm(dim=1)
    expected_forward, expected_backward = torch.zeros(4, 8, dtype=torch.float64), torch.zeros(4, 8, dtype=torch.float64)
    for b, n in enumerate(lengths):
        expected_forward[b, :n] = g_forward[b] * SCALE ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
        expected_backward[b, :n] = g_backward[b] * SCALE ** torch.arange(n, dtype=torch.float64)
    torch.testing.assert_close(forward_norms, expected_forward, rtol=1e-4, atol=0)
    by_position = backward.in_positions(backward_norms.unsqueeze(2)).squeeze(2)  # norms come in reading order
    torch.testing.assert_close(by_position, expected_backward, rtol=1e-4, atol=0)

    # Each ratio is first-read over last-read state: s^{T-1} for both directions (vanishing).
    full = feature_batch([8] * 4)
    (_, forward_norms), (backward, backward_norms) = gradient_flow(model, model.backbone, full)
    assert first_last_ratio(forward_norms, full.lengths) == pytest.approx(SCALE**7, rel=1e-4)
    assert first_last_ratio(backward_norms, backward.lengths) == pytest.approx(SCALE**7, rel=1e-4)


def test_gradient_flow_leaves_the_parameter_gradients_alone() -> None:
    """The probe differentiates the recorded states only: .grad stays None, or keeps its values;
    it works inside no_grad too (the callback's hooks may run there)."""
    torch.manual_seed(5)
    model = classifier(cell="gru", num_layers=2, bidirectional=True).eval()
    batch = feature_batch([6, 2, 4])
    with torch.no_grad():
        gradient_flow(model, model.backbone, batch)
    assert all(p.grad is None for p in model.parameters())
    saved = {name: torch.randn_like(p) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = saved[name].clone()
    gradient_flow(model, model.backbone, batch)
    saturation(model, model.backbone, batch)
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, saved[name]), name
        assert p.requires_grad, name


# -- saturation: known answers and padding -------------------------------------------------------


def set_gate_biases(backbone: RecurrentBackbone, biases: dict[int, float]) -> None:
    """Small random weights; bias_ih chunk k (gate k in torch's order) = biases[k], others 0; bias_hh 0."""
    with torch.no_grad():
        for name, parameter in backbone.rnn.named_parameters():
            if name.startswith("weight"):
                parameter.copy_(0.01 * torch.randn_like(parameter))
            else:
                parameter.zero_()
                if name.startswith("bias_ih"):
                    for k, value in biases.items():
                        parameter[k * backbone.hidden_size : (k + 1) * backbone.hidden_size] = value


DIRECTIONS = ("l0", "l0_reverse", "l1", "l1_reverse")


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_saturation_of_lstm_gates(impl: str) -> None:
    """Forget-gate bias +20, input-gate bias -20: forget ≈ 1 and input ≈ 0, both fully saturated;
    the output gate (bias 0, tiny weights) sits at 0.5, never saturated. Every layer and direction."""
    torch.manual_seed(6)
    model = classifier(cell="lstm", num_layers=2, bidirectional=True, impl=impl).eval()
    set_gate_biases(model.backbone, {0: -20.0, 1: 20.0})  # i, f, g, o
    values = saturation(model, model.backbone, feature_batch([7, 3, 5], padding=0.0))
    assert set(values) == {f"{d}/{g}_{m}" for d in DIRECTIONS for g in ("input", "forget", "output") for m in ("mean", "saturated")}
    for d in DIRECTIONS:
        assert values[f"{d}/forget_mean"] == pytest.approx(1.0, abs=1e-6)
        assert values[f"{d}/input_mean"] == pytest.approx(0.0, abs=1e-6)
        assert values[f"{d}/forget_saturated"] == values[f"{d}/input_saturated"] == 1.0
        assert values[f"{d}/output_mean"] == pytest.approx(0.5, abs=0.02)
        assert values[f"{d}/output_saturated"] == 0.0


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_saturation_of_gru_gates(impl: str) -> None:
    """Reset-gate bias +20 (≈ 1) and update-gate bias -20 (≈ 0): both fully saturated."""
    torch.manual_seed(7)
    model = classifier(cell="gru", num_layers=2, bidirectional=True, impl=impl).eval()
    set_gate_biases(model.backbone, {0: 20.0, 1: -20.0})  # r, z, n
    values = saturation(model, model.backbone, feature_batch([4, 6]))
    assert set(values) == {f"{d}/{g}_{m}" for d in DIRECTIONS for g in ("reset", "update") for m in ("mean", "saturated")}
    for d in DIRECTIONS:
        assert values[f"{d}/reset_mean"] == pytest.approx(1.0, abs=1e-6)
        assert values[f"{d}/update_mean"] == pytest.approx(0.0, abs=1e-6)
        assert values[f"{d}/reset_saturated"] == values[f"{d}/update_saturated"] == 1.0


def vanilla_rnn(nonlinearity: str, w_ih: float, impl: str = "fused") -> SequenceClassifier:
    """A 2-layer unidirectional vanilla RNN with every input weight ``w_ih`` and W_hh = 0, biases 0."""
    model = classifier(num_layers=2, nonlinearity=nonlinearity, impl=impl).eval()
    with torch.no_grad():
        for name, parameter in model.backbone.rnn.named_parameters():
            parameter.fill_(w_ih if name.startswith("weight_ih") else 0.0)
    return model


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_saturation_of_tanh_and_relu_units(impl: str) -> None:
    """Huge positive pre-activations: every tanh unit |h| > 0.99; tiny ones: none. A relu RNN driven
    negative is all zeros, driven positive none."""
    positive = 1.0 + torch.rand(3, 5, FEATURES)  # inputs in [1, 2)
    batch = feature_batch([5, 2, 4], inputs=positive)

    def measured(nonlinearity: str, w_ih: float) -> dict[str, float]:
        model = vanilla_rnn(nonlinearity, w_ih, impl)
        return saturation(model, model.backbone, batch)

    assert measured("tanh", 10.0) == {"l0/tanh_saturated": 1.0, "l1/tanh_saturated": 1.0}
    assert measured("tanh", 1e-3) == {"l0/tanh_saturated": 0.0, "l1/tanh_saturated": 0.0}
    assert measured("relu", -1.0) == {"l0/relu_zero": 1.0, "l1/relu_zero": 1.0}
    assert measured("relu", 1.0)["l0/relu_zero"] == 0.0


def test_saturation_leaves_padding_out_of_a_known_answer() -> None:
    """W_hh = 0, so each tanh unit saturates exactly where its step's input is 1: at every valid step
    but each sequence's last, 5 of the 8 valid steps. Past its end a sequence's state stays frozen
    at its last (unsaturated) value, so counting the padded steps would give 5 of 15."""
    model = vanilla_rnn("tanh", 10.0)
    lengths = [5, 2, 1]
    inputs = torch.ones(3, 5, FEATURES)
    for b, n in enumerate(lengths):
        inputs[b, n - 1] = 0.0
    batch = feature_batch(lengths, inputs=inputs)
    assert saturation(model, model.backbone, batch) == pytest.approx({"l0/tanh_saturated": 5 / 8, "l1/tanh_saturated": 5 / 8})


def test_saturation_leaves_padded_gates_out() -> None:
    """Zero inputs at valid steps (and W_hh = 0, biases 0) hold every LSTM gate at exactly 0.5;
    the padded steps' inputs would saturate them all if they were counted."""
    torch.manual_seed(9)
    model = classifier(cell="lstm", num_layers=2, bidirectional=True).eval()
    with torch.no_grad():
        for name, parameter in model.backbone.rnn.named_parameters():
            parameter.fill_(10.0 if name.startswith("weight_ih") else 0.0)
    batch = feature_batch([6, 3, 1], inputs=torch.zeros(3, 6, FEATURES), padding=1.0)
    values = saturation(model, model.backbone, batch)
    assert len(values) == 4 * 3 * 2
    for key, value in values.items():
        assert value == (0.5 if key.endswith("_mean") else 0.0), key
    with model.backbone.recording() as recorder, torch.no_grad():
        model.probe_loss(batch)
    padded_gates = recorder.directions["l0"].gates["forget"][~batch.mask]  # (padded steps, H)
    assert bool((padded_gates > 0.99).all())  # what counting them would have added


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_saturation_of_a_padded_batch_equals_its_sequences_alone(cell: str) -> None:
    """Every number of a padded batch (huge garbage at padding) is the step-weighted mean of the
    same numbers for each sequence run alone, without padding."""
    torch.manual_seed(8)
    model = classifier(cell=cell, num_layers=2, bidirectional=True).eval()
    with torch.no_grad():
        for parameter in model.backbone.rnn.parameters():
            parameter.mul_(6.0)  # partly saturated, so that the shares are neither 0 nor 1
    lengths = [7, 2, 5, 1]
    batch = feature_batch(lengths, padding=100.0)
    values = saturation(model, model.backbone, batch)
    singles = [
        Batch(batch.inputs[b : b + 1, :n], batch.lengths[b : b + 1], batch.mask[b : b + 1, :n], batch.targets[b : b + 1])
        for b, n in enumerate(lengths)
    ]
    alone = [saturation(model, model.backbone, single) for single in singles]
    assert any(0.0 < value < 1.0 for key, value in values.items() if key.endswith("_saturated"))
    for key, value in values.items():
        expected = sum(single[key] * n for single, n in zip(alone, lengths)) / sum(lengths)
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), key


# -- callbacks in a real Trainer -----------------------------------------------------------------


def keywords(num_train: int = 48, batch_size: int = 8) -> KeywordsDataModule:
    """A tiny keyword-spotting data module: num_train / batch_size training steps per epoch."""
    datamodule = KeywordsDataModule(
        num_train=num_train, num_val=16, num_test=16, batch_size=batch_size, max_length_generated=12, seed=0
    )
    datamodule.setup("fit")
    return datamodule


def keywords_classifier(datamodule: KeywordsDataModule, **backbone: Any) -> SequenceClassifier:
    options = {"cell": "lstm", "hidden_size": 8, "embedding_dim": 8, "num_layers": 2, "bidirectional": True, **backbone}
    return classifier(datamodule.spec, **options)


def fit(
    tmp_path: Path, datamodule: KeywordsDataModule, model: L.LightningModule, callbacks: list[L.Callback], **options: Any
) -> L.Trainer:
    """Fit on the CPU with a TensorBoard logger under ``tmp_path``; no checkpoints, no progress bar."""
    L.seed_everything(0, verbose=False)
    settings: dict[str, Any] = {
        "max_epochs": 1,
        "log_every_n_steps": 2,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        **options,
    }
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,  # where a test run writes its per-class report
        logger=TensorBoardLogger(tmp_path, name="tb", default_hp_metric=False),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **settings,
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer


def total_norm(module: nn.Module) -> float:
    """The global L2 norm of ``module``'s gradients, in float64."""
    return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in module.parameters() if p.grad is not None))


class NormRecorder(L.Callback):
    """The gradient norm before clipping (keyed by the step it becomes) and after the optimizer step."""

    def __init__(self) -> None:
        self.before: dict[int, float] = {}
        self.after: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self.before[trainer.global_step + 1] = total_norm(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.after[trainer.global_step] = total_norm(pl_module)


@pytest.mark.parametrize("clip", [1e-3, None], ids=["clipped", "unclipped"])
def test_gradient_health_norms_and_clipping(tmp_path: Path, clip: float | None) -> None:
    """Every log_every_n_steps (2) steps, at Lightning's numbering (step k at x = k - 1): grad/norm
    is the global norm before clipping, norm_clipped the one the optimizer used (≈ the clip value
    when every step is clipped), the clipped share 1 or 0, and the per-layer norms combine to the
    global one."""
    datamodule = keywords()
    model = keywords_classifier(datamodule)
    recorder = NormRecorder()
    trainer = fit(tmp_path, datamodule, model, [GradientHealth(), recorder], gradient_clip_val=clip)
    assert trainer.global_step == 6
    events = read_events(trainer.logger.log_dir)

    for tag in ("grad/norm", "grad/norm_clipped", "grad/clipped_fraction"):
        assert scalar_steps(events, tag) == [1, 3, 5], tag
    norm, clipped, fraction = (scalars(events, f"grad/{name}") for name in ("norm", "norm_clipped", "clipped_fraction"))
    for step in (2, 4, 6):
        assert norm[step - 1] == pytest.approx(recorder.before[step], rel=1e-4)
        assert clipped[step - 1] == pytest.approx(recorder.after[step], rel=1e-4)
        if clip is None:
            assert clipped[step - 1] == pytest.approx(norm[step - 1], rel=1e-6) and fraction[step - 1] == 0.0
        else:
            assert norm[step - 1] > 10 * clip
            assert clipped[step - 1] == pytest.approx(clip, rel=1e-3) and fraction[step - 1] == 1.0

    groups = parameter_groups(model)
    layer_tags = {tag for tag in events.Tags()["scalars"] if tag.startswith("grad_norm/")}
    assert layer_tags == {f"grad_norm/{name}" for name in groups}
    assert "grad_norm/backbone.rnn.l1_reverse" in layer_tags and "grad_norm/head.output" in layer_tags
    layers = {tag: scalars(events, tag) for tag in layer_tags}
    for step in (1, 3, 5):
        combined = math.sqrt(sum(values[step] ** 2 for values in layers.values()))
        assert combined == pytest.approx(norm[step], rel=1e-4)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
@pytest.mark.parametrize("clip", [None, 0.05, 100.0])
def test_clipped_norm_is_the_norm_lightning_clipping_leaves(algorithm: str, clip: float | None) -> None:
    """Worked out before the optimizer steps (some optimizers change .grad in place when they step):
    the same norm as torch's own clipping of a copy gives, by norm and by value."""
    torch.manual_seed(0)
    grads = [torch.randn(5, 3), torch.randn(7) * 10]
    trainer = L.Trainer(gradient_clip_val=clip, gradient_clip_algorithm=algorithm, logger=False, enable_progress_bar=False)
    before = torch.nn.utils.get_total_norm(grads)
    copies = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for parameter, grad in zip(copies, grads):
        parameter.grad = grad.clone()
    if clip is not None and algorithm == "norm":
        torch.nn.utils.clip_grad_norm_(copies, clip)
    elif clip is not None:
        torch.nn.utils.clip_grad_value_(copies, clip)
    expected = torch.nn.utils.get_total_norm([p.grad for p in copies])
    assert float(clipped_norm(trainer, grads, before)) == pytest.approx(float(expected), rel=1e-5)


def test_probe_batch_travels_in_the_checkpoint() -> None:
    """A resumed run probes the batch the first run chose (the callback's state holds it)."""
    probe = GradientFlow(probe_size=2)
    probe.batch = Batch(torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1]), torch.tensor([[True, True], [True, False]]), torch.tensor([0, 1]), {"index": torch.tensor([4, 5])})
    restored = GradientFlow(probe_size=2)
    restored.load_state_dict(probe.state_dict())
    assert restored.batch is not None
    for field in ("inputs", "lengths", "mask", "targets"):
        assert torch.equal(getattr(restored.batch, field), getattr(probe.batch, field))
    assert torch.equal(restored.batch.extras["index"], probe.batch.extras["index"])
    empty = GradientFlow()
    empty.load_state_dict(GradientFlow().state_dict())
    assert empty.batch is None


def test_gradient_health_counts_optimizer_steps_under_accumulation(tmp_path: Path) -> None:
    """Accumulating 2 batches per step: 6 batches make 3 optimizer steps, each logged (every_n_steps=1)
    with the norm of the accumulated gradients; batches without a step log nothing."""
    datamodule = keywords()
    model = keywords_classifier(datamodule)
    recorder = NormRecorder()
    callbacks = [GradientHealth(every_n_steps=1), recorder]
    trainer = fit(tmp_path, datamodule, model, callbacks, accumulate_grad_batches=2, gradient_clip_val=1e-3)
    assert trainer.global_step == 3
    events = read_events(trainer.logger.log_dir)
    assert scalar_steps(events, "grad/norm") == [0, 1, 2]
    for step, value in scalars(events, "grad/norm").items():
        assert value == pytest.approx(recorder.before[step + 1], rel=1e-4)
    assert list(scalars(events, "grad/clipped_fraction").values()) == [1.0, 1.0, 1.0]


class BatchRecorder(L.Callback):
    """Tokens and sequences of each training batch by the step it ends on; whether the sanity check ran."""

    def __init__(self) -> None:
        self.train: dict[int, tuple[int, int]] = {}
        self.sanity_checked = False

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sanity_checked = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.train[trainer.global_step] = (int(batch.lengths.sum()), len(batch))


def test_throughput_tags_per_stage(tmp_path: Path) -> None:
    """Training numbers every every_n_steps (3) steps over just those steps; validation once per
    validation run (not in the sanity check); test once; peak memory in MiB."""
    datamodule = keywords()
    model = keywords_classifier(datamodule)
    recorder = BatchRecorder()
    trainer = fit(
        tmp_path, datamodule, model, [Throughput(every_n_steps=3), recorder],
        max_epochs=2, limit_val_batches=None, num_sanity_val_steps=2,
    )
    trainer.test(model, datamodule=datamodule, verbose=False)
    trainer.logger.experiment.flush()
    assert recorder.sanity_checked and trainer.global_step == 12
    events = read_events(trainer.logger.log_dir)
    tags = set(events.Tags()["scalars"])
    assert "resources/cuda_max_allocated_mib" not in tags  # CPU run

    names = ("tokens_per_s", "sequences_per_s", "step_ms", "outside_step_share")
    train = {name: scalars(events, f"throughput/train_{name}") for name in names}
    for values in train.values():
        assert list(values) == [2, 5, 8, 11]  # steps 3, 6, 9, 12 at Lightning's numbering
    for step in (3, 6, 9, 12):
        window = [recorder.train[s] for s in range(step - 2, step + 1)]
        tokens, sequences = sum(t for t, _ in window), sum(n for _, n in window)
        x = step - 1
        assert train["sequences_per_s"][x] > 0 and train["step_ms"][x] > 0
        assert 0.0 <= train["outside_step_share"][x] <= 1.0
        # Same elapsed time in both rates: their ratio is the window's mean real length.
        assert train["tokens_per_s"][x] / train["sequences_per_s"][x] == pytest.approx(tokens / sequences, rel=1e-5)

    # Where Lightning logs val/* (x = k - 1 after k steps) and test/* (x = k after fitting).
    for stage, steps, loader in (("val", [5, 11], datamodule.val_dataloader()), ("test", [12], datamodule.test_dataloader())):
        batches = list(loader)
        tokens, sequences = sum(int(b.lengths.sum()) for b in batches), sum(len(b) for b in batches)
        rates = {name: scalars(events, f"throughput/{stage}_{name}") for name in ("tokens_per_s", "sequences_per_s")}
        assert list(rates["tokens_per_s"]) == list(rates["sequences_per_s"]) == steps, stage  # nothing at step 0
        for step in steps:
            assert rates["tokens_per_s"][step] / rates["sequences_per_s"][step] == pytest.approx(tokens / sequences, rel=1e-5)

    # The same counter read now (VmHWM on Linux): ru_maxrss is summed from per-CPU counters that lag it.
    peak_now = peak_memory(torch.device("cpu"))["resources/peak_rss_mib"]
    peaks = [event.value for event in events.Scalars("resources/peak_rss_mib")]
    assert len(peaks) == 4 + 1  # train points (the validations share their step numbers), the test run
    assert all(0 < peak <= peak_now + 1e-3 for peak in peaks)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's /proc/self/status (VmHWM)")
def test_peak_rss_is_the_process_own_not_that_of_the_process_that_started_it() -> None:
    """getrusage's ru_maxrss survives exec: a run started from a process holding 1 GiB (a notebook,
    a sweep driver, the benchmark) would report at least that as its own peak."""
    child = "import torch; from rnnlab.callbacks.throughput import peak_memory; print(peak_memory(torch.device('cpu'))['resources/peak_rss_mib'])"
    parent = f"import subprocess, sys; held = b'x' * 2**30; print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True, check=True).stdout)"
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120, env=cli_env())
    assert result.returncode == 0, describe(result)
    assert 0 < float(result.stdout) < 900  # MiB: torch and Lightning imported, well under the parent's 1 GiB


def test_throughput_points_are_optimizer_steps_under_accumulation(tmp_path: Path) -> None:
    """Accumulating 2 batches per step: 6 batches make 3 optimizer steps, one point each
    (every_n_steps=1) over both of its batches; no point at step 0, none twice."""
    datamodule = keywords()
    model = keywords_classifier(datamodule)
    trainer = fit(tmp_path, datamodule, model, [Throughput(every_n_steps=1)], accumulate_grad_batches=2)
    assert trainer.global_step == 3
    events = read_events(trainer.logger.log_dir)
    assert scalar_steps(events, "throughput/train_sequences_per_s") == [0, 1, 2]


class ParameterRecorder(L.Callback):
    """Just before each epoch's last optimizer step: every parameter's sum and its gradient's sum of squares."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[str, tuple[float, float | None]]] = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if trainer.is_last_batch:
            self.seen[trainer.global_step] = {
                name: (float(p.detach().double().sum()), None if p.grad is None else float(p.grad.double().pow(2).sum()))
                for name, p in pl_module.named_parameters()
            }


def test_parameter_histograms_every_n_epochs(tmp_path: Path) -> None:
    """every_n_epochs=2 over 4 epochs of 3 steps: weights/<name> and gradients/<name> of every
    parameter at steps 6 and 12 (each epoch's last batch), the gradients those of that batch
    although Lightning zeroes them before each validation."""
    datamodule = keywords(num_train=24)
    model = keywords_classifier(datamodule)
    recorder = ParameterRecorder()
    trainer = fit(tmp_path, datamodule, model, [ParameterHistograms(every_n_epochs=2), recorder], max_epochs=4, limit_val_batches=1)
    assert trainer.global_step == 12
    events = read_events(trainer.logger.log_dir)
    names = [name for name, _ in model.named_parameters()]
    assert set(events.Tags()["histograms"]) == {f"{kind}/{name}" for kind in ("weights", "gradients") for name in names}
    parameters = dict(model.named_parameters())
    for name in names:
        weights, gradients = events.Histograms(f"weights/{name}"), events.Histograms(f"gradients/{name}")
        assert [e.step for e in weights] == [e.step for e in gradients] == [5, 11], name
        for weight_event, gradient_event in zip(weights, gradients):
            weight_sum, grad_squares = recorder.seen[weight_event.step][name]
            assert weight_event.histogram_value.num == gradient_event.histogram_value.num == parameters[name].numel()
            assert weight_event.histogram_value.sum == pytest.approx(weight_sum, rel=1e-4, abs=1e-5), name
            assert grad_squares is not None and grad_squares > 0, name
            assert gradient_event.histogram_value.sum_squares == pytest.approx(grad_squares, rel=1e-4), name


class ProbeRecorder(L.Callback):
    """Placed after the probes: the first training batch, the mode the model trains in, and the
    forward and backward first/last ratios of the probe batch computed here, in eval mode."""

    def __init__(self, probe_size: int) -> None:
        self.probe_size = probe_size
        self.first: Batch | None = None
        self.expected: dict[int, list[float]] = {}
        self.training: list[bool] = []

    def _expect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self.first is not None
        pl_module.eval()
        probe = self.first.first(self.probe_size)
        self.expected[trainer.global_step] = [
            first_last_ratio(norms, record.lengths) for record, norms in gradient_flow(pl_module, pl_module.backbone, probe)
        ]
        pl_module.train()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.training.append(pl_module.training)
        if self.first is None:
            self.first = batch
            self._expect(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.training.append(pl_module.training)
        if trainer.global_step % 2 == 0:
            self._expect(trainer, pl_module)


def test_probes_measure_a_fixed_batch_in_eval_mode(tmp_path: Path) -> None:
    """GradientFlow and Saturation measure the first probe_size examples of the first batch, once
    before the first step and every every_n_steps steps, in eval mode (dropout off), and hand the
    model back in training mode."""
    datamodule = keywords()
    model = keywords_classifier(datamodule, dropout=0.5)
    model.head.dropout.p = 0.5
    recorder = ProbeRecorder(probe_size=5)
    callbacks = [GradientFlow(every_n_steps=2, probe_size=5), Saturation(every_n_steps=3, probe_size=5), recorder]
    trainer = fit(tmp_path, datamodule, model, callbacks)
    events = read_events(trainer.logger.log_dir)

    assert recorder.training == [True] * 12  # at every batch's start and end, after the probes
    assert [e.step for e in events.Images("grad_flow/norm_by_step")] == [0, 2, 4, 6]
    ratios = [scalars(events, f"grad_flow/first_last_ratio{suffix}") for suffix in ("", "_reverse")]
    assert list(ratios[0]) == list(ratios[1]) == [0, 2, 4, 6]
    logs = [scalars(events, f"grad_flow/log10_first_last_ratio{suffix}") for suffix in ("", "_reverse")]
    for step in (0, 2, 4, 6):
        assert [values[step] for values in ratios] == pytest.approx(recorder.expected[step], rel=1e-4), step
        assert [values[step] for values in logs] == pytest.approx([math.log10(r) for r in recorder.expected[step]], abs=1e-4)
    assert scalar_steps(events, "saturation/l1_reverse/forget_mean") == [0, 3, 6]
    saturation_tags = {tag for tag in events.Tags()["scalars"] if tag.startswith("saturation/")}
    gates = ("input", "forget", "output")
    assert saturation_tags == {f"saturation/{d}/{g}_{m}" for d in DIRECTIONS for g in gates for m in ("mean", "saturated")}


def test_probes_need_a_recurrent_backbone_and_rnnlab_batches() -> None:
    """Without a recurrent backbone: a warning naming the option, and the probe stands aside; a
    batch that is not an rnnlab Batch: a one-line UserError, not a crash deep inside the probe."""

    class NotRecurrent(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Linear(2, 2)

    for probe in (GradientFlow(), Saturation()):
        with pytest.warns(UserWarning, match=rf"callbacks\.{probe.config_key} measures the recurrent backbone.*Linear: nothing to measure"):
            probe.on_fit_start(None, NotRecurrent())  # type: ignore[arg-type]
        assert not probe.enabled
        probe.on_train_batch_start(None, NotRecurrent(), (torch.zeros(2), torch.zeros(2)), 0)  # type: ignore[arg-type]
        probe.enabled = True
        with pytest.raises(UserError, match=rf"callbacks\.{probe.config_key} needs rnnlab batches; got tuple"):
            probe.on_train_batch_start(None, NotRecurrent(), (torch.zeros(2), torch.zeros(2)), 0)  # type: ignore[arg-type]


# -- the real CLI --------------------------------------------------------------------------------


def test_cli_with_every_diagnostic(tmp_path: Path) -> None:
    """experiment=adding callbacks=diagnostics: figures, ratios, saturation, histograms, gradient
    health and throughput all in the run's TensorBoard files."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "train", "experiment=adding", "data.length=12", "data.num_train=64", "data.num_val=16", "data.num_test=16",
        "data.batch_size=16", "model.backbone.hidden_size=8", "model.backbone.bidirectional=true",
        "trainer.max_epochs=1", "trainer.log_every_n_steps=2", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "logger=tensorboard", "callbacks=diagnostics",
        "callbacks.gradient_flow.every_n_steps=2", "callbacks.saturation.every_n_steps=2",
        "callbacks.gradient_flow.probe_size=8", f"hydra.run.dir={run_dir}",
        cwd=tmp_path, env=ENV,
    )
    assert result.returncode == 0, describe(result)
    events = read_events(run_dir / "tensorboard")
    tags = events.Tags()
    assert [e.step for e in events.Images("grad_flow/norm_by_step")] == [0, 2, 4]
    probed = (
        "grad_flow/first_last_ratio",
        "grad_flow/first_last_ratio_reverse",
        "saturation/l0/forget_mean",
        "saturation/l0_reverse/input_saturated",
    )
    for tag in probed:
        assert scalar_steps(events, tag) == [0, 2, 4], tag
    assert all(value > 0 for value in scalars(events, "grad_flow/first_last_ratio").values())
    assert all(0 < value < 1 for value in scalars(events, "saturation/l0/forget_mean").values())
    assert {"weights/backbone.rnn.weight_hh_l0", "gradients/head.projection.weight"} <= set(tags["histograms"])
    for tag in ("grad/norm", "grad/norm_clipped", "grad/clipped_fraction", "grad_norm/backbone.rnn.l0_reverse"):
        assert scalar_steps(events, tag) == [1, 3], tag
    expected = {f"throughput/{stage}_tokens_per_s" for stage in ("train", "val", "test")} | {"resources/peak_rss_mib"}
    assert expected <= set(tags["scalars"])


def test_cli_gradient_flow_without_a_recurrent_backbone_warns_and_trains(tmp_path: Path) -> None:
    """experiment=digits_names encodes with an MLP: callbacks=gradient_flow (as in
    callbacks=diagnostics) warns that there is nothing to measure, and the run trains as usual."""
    result = run_cli(
        "train", "experiment=digits_names", "callbacks=gradient_flow", "model.backbone.hidden_size=8",
        "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "logger=tensorboard", f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path, env=ENV,
    )
    assert result.returncode == 0, describe(result)
    assert "callbacks.gradient_flow measures the recurrent backbone" in result.stderr, describe(result)
    assert "VectorEncoder: nothing to measure" in result.stderr, describe(result)


# -- bad options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: GradientHealth(every_n_steps=0), "callbacks.gradient_health.every_n_steps"),
        (lambda: GradientHealth(every_n_steps=True), "callbacks.gradient_health.every_n_steps"),
        (lambda: Throughput(every_n_steps=-1), "callbacks.throughput.every_n_steps"),
        (lambda: Throughput(every_n_steps=2.5), "callbacks.throughput.every_n_steps"),
        (lambda: GradientFlow(probe_size=0), "callbacks.gradient_flow.probe_size"),
        (lambda: GradientFlow(every_n_steps=0), "callbacks.gradient_flow.every_n_steps"),
        (lambda: Saturation(every_n_steps=-3), "callbacks.saturation.every_n_steps"),
        (lambda: Saturation(probe_size=False), "callbacks.saturation.probe_size"),
        (lambda: ParameterHistograms(every_n_epochs=0), "callbacks.histograms.every_n_epochs"),
        (lambda: ParameterHistograms(every_n_epochs=None), "callbacks.histograms.every_n_epochs"),
    ],
)
def test_bad_options_raise_user_error(build: Any, key: str) -> None:
    with pytest.raises(UserError, match=rf"^{re.escape(key)} must be a positive integer"):
        build()


def test_null_intervals_follow_the_trainer() -> None:
    """every_n_steps=null is valid: the trainer's log_every_n_steps."""
    for kind in (GradientHealth, Throughput, GradientFlow, Saturation):
        assert kind(every_n_steps=None).every_n_steps is None


# -- Batch.first ---------------------------------------------------------------------------------


def test_batch_first_cuts_every_per_example_field() -> None:
    """inputs, lengths, mask, targets and per-example extras (B-row tensors, B-item lists) are cut to
    n; other extras are kept as they are; n >= B gives everything."""
    lengths = torch.tensor([3, 1, 2])
    batch = Batch(
        torch.arange(9).view(3, 3),
        lengths,
        lengths_to_mask(lengths, 3),
        torch.tensor([0, 1, 0]),
        {
            "index": torch.tensor([7, 8, 9]),  # (B,): per example
            "words": [["a"], ["b"], ["c"]],  # B items: per example
            "scale": torch.tensor(2.0),  # 0-dim: kept
            "table": torch.ones(5, 2),  # not B rows: kept
            "name": "x",
        },
    )
    first = batch.first(2)
    assert len(first) == 2
    assert first.inputs.tolist() == [[0, 1, 2], [3, 4, 5]]  # (2, T): T unchanged
    assert first.lengths.tolist() == [3, 1] and first.mask.tolist() == [[True, True, True], [True, False, False]]
    assert first.targets.tolist() == [0, 1]
    assert first.extras["index"].tolist() == [7, 8] and first.extras["words"] == [["a"], ["b"]]
    assert first.extras["scale"] is batch.extras["scale"] and first.extras["table"] is batch.extras["table"]
    assert first.extras["name"] == "x"
    assert batch.first(1).inputs.shape == (1, 3)

    for n in (3, 10):
        everything = batch.first(n)
        assert torch.equal(everything.inputs, batch.inputs) and torch.equal(everything.targets, batch.targets)
        assert torch.equal(everything.extras["index"], batch.extras["index"]) and everything.extras["words"] == batch.extras["words"]
    unlabelled = Batch(batch.inputs, lengths, batch.mask).first(2)
    assert unlabelled.targets is None and unlabelled.extras == {}
