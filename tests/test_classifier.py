"""SequenceClassifier built from the real Hydra configs: training, learning, checkpoints, options, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn

import rnnlab.tasks.base
from conftest import compose_config
from rnnlab.batch import Batch
from rnnlab.data import KeywordsDataModule
from rnnlab.errors import UserError
from rnnlab.tasks import SequenceClassifier
from rnnlab.tasks.base import WeightedMean


# Small and fast: a tiny keywords task and a tiny model.
SMALL = [
    "data=keywords",
    "data.num_train=64",
    "data.num_val=40",
    "data.num_test=40",
    "data.batch_size=16",
    "data.max_length_generated=20",
    "model.backbone.hidden_size=8",
    "model.backbone.embedding_dim=8",
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """Tiny models train many times faster on one thread than on contended ones (2-core CI machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(cfg: DictConfig) -> tuple[KeywordsDataModule, SequenceClassifier]:
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, KeywordsDataModule)
    datamodule.setup("fit")
    model = instantiate(cfg.model, data_spec=datamodule.spec)
    assert isinstance(model, SequenceClassifier)
    return datamodule, model


def make_trainer(cfg: DictConfig, **options: Any) -> L.Trainer:
    return instantiate(cfg.trainer, logger=False, enable_checkpointing=False, **options)


def accuracy_on(model: SequenceClassifier, batches: Any) -> float:
    model.eval()
    correct = count = 0
    with torch.no_grad():
        for batch in batches:
            predicted = model(batch.inputs, batch.lengths, batch.mask).argmax(dim=-1)
            correct += int((predicted == batch.targets).sum())
            count += len(batch)
    return correct / count


# -- training runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fast_dev_run_every_backbone(cell: str, impl: str) -> None:
    cfg = compose_config(*SMALL, f"model/backbone={cell}", f"model.backbone.impl={impl}", "trainer.fast_dev_run=true")
    L.seed_everything(0)
    datamodule, model = build(cfg)
    assert model.backbone.cell == cell
    assert model.backbone.impl == impl
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = make_trainer(cfg)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.state.finished
    assert trainer.global_step == 1
    metrics = trainer.callback_metrics
    for name in ("train/loss", "val/loss", "val/acc", "val/f1_macro", "val/padding_ratio"):
        assert name in metrics, name
        assert torch.isfinite(metrics[name])
    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())]
    assert any(name.startswith("backbone.rnn") for name in changed)
    assert any(name.startswith("head.") for name in changed)


def test_lstm_learns_keywords() -> None:
    cfg = compose_config(
        "data=keywords",
        "data.num_train=600",
        "data.num_val=200",
        "model/backbone=lstm",
        "model.backbone.hidden_size=32",
        "model.backbone.embedding_dim=32",
        "model.pooling=max",
        "model.optimizer.lr=0.01",
        "trainer=cpu",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
    )
    L.seed_everything(0)
    datamodule, model = build(cfg)
    untrained = accuracy_on(model, datamodule.val_dataloader())
    trainer = make_trainer(cfg)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.current_epoch == 3
    accuracy = float(trainer.callback_metrics["val/acc"])
    assert accuracy >= 0.9, f"val/acc {accuracy:.3f} after 3 epochs (untrained: {untrained:.3f})"
    assert untrained < 0.6  # 4 balanced-ish classes: chance is about 0.25


# -- checkpoints -------------------------------------------------------------------------------


def first_val_batch(datamodule: KeywordsDataModule) -> Batch:
    return next(iter(datamodule.val_dataloader()))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    cfg = compose_config(
        *SMALL, "model/backbone=gru", "model.pooling=attention", "model.class_weights=balanced", "trainer.max_epochs=1"
    )
    L.seed_everything(0)
    datamodule, model = build(cfg)
    model.run_config = OmegaConf.to_container(cfg.model, resolve=True)
    trainer = make_trainer(cfg, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    # Plain data only: loads with torch's safe unpickler.
    checkpoint = torch.load(path, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    data_spec = json.loads(json.dumps(hparams["data_spec"]))
    assert data_spec == datamodule.spec
    assert checkpoint["rnnlab"]["config"] == model.run_config
    json.dumps(checkpoint["rnnlab"])

    loaded = SequenceClassifier.load_from_checkpoint(path)
    assert loaded.labels == model.labels
    assert loaded.backbone.cell == "gru"
    assert loaded.head.pooling.method == "attention"
    assert loaded.run_config == model.run_config
    torch.testing.assert_close(loaded.class_weights, model.class_weights)

    batch = first_val_batch(datamodule)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        expected = model(batch.inputs, batch.lengths, batch.mask)
        got = loaded(batch.inputs, batch.lengths, batch.mask)
    assert torch.equal(got, expected)


def test_data_spec_is_json_serialisable() -> None:
    cfg = compose_config(*SMALL)
    datamodule, model = build(cfg)
    spec = json.loads(json.dumps(model.data_spec))
    assert spec == model.data_spec
    assert spec["labels"]["labels"] == model.labels == ["class0", "class1", "class2", "class3"]


# -- options -----------------------------------------------------------------------------------


def spec_for(label_counts: list[int], vocab_size: int = 10) -> dict[str, Any]:
    return {
        "task": "classification",
        "input": {"kind": "tokens", "vocab_size": vocab_size, "pad_id": 0},
        "labels": {"labels": [f"c{i}" for i in range(len(label_counts))]},
        "label_counts": label_counts,
    }


@pytest.fixture(scope="module")
def model_config() -> dict[str, Any]:
    cfg = compose_config(*SMALL)
    return OmegaConf.to_container(cfg.model, resolve=True)


def classifier(model_config: dict[str, Any], data_spec: dict[str, Any], **options: Any) -> SequenceClassifier:
    return SequenceClassifier(
        data_spec=data_spec,
        backbone=model_config["backbone"],
        optimizer=model_config["optimizer"],
        pooling="mean",
        **options,
    )


def test_balanced_class_weights_are_n_over_classes_times_count(model_config: dict[str, Any]) -> None:
    model = classifier(model_config, spec_for([10, 30, 60]), class_weights="balanced")
    # n = 100, C = 3
    torch.testing.assert_close(model.class_weights, torch.tensor([100 / 30, 100 / 90, 100 / 180]))


def test_balanced_class_weights_from_config_use_train_counts() -> None:
    cfg = compose_config(*SMALL, "model.class_weights=balanced")
    datamodule, model = build(cfg)
    targets = torch.tensor([example["target"] for example in datamodule.datasets["train"]])
    counts = torch.bincount(targets, minlength=len(model.labels)).float()
    expected = len(targets) / (len(model.labels) * counts)
    torch.testing.assert_close(model.class_weights, expected)
    assert not torch.allclose(model.class_weights, torch.ones_like(expected))  # the 64 examples are not balanced


def test_no_class_weights_means_ones(model_config: dict[str, Any]) -> None:
    model = classifier(model_config, spec_for([10, 30, 60]))
    assert torch.equal(model.class_weights, torch.ones(3))


def test_explicit_class_weights(model_config: dict[str, Any]) -> None:
    model = classifier(model_config, spec_for([10, 30, 60]), class_weights=[1, 2.5, 4])
    assert torch.equal(model.class_weights, torch.tensor([1.0, 2.5, 4.0]))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_class_weights_change_the_loss(model_config: dict[str, Any]) -> None:
    torch.manual_seed(0)
    plain = classifier(model_config, spec_for([5, 5]))
    weighted = classifier(model_config, spec_for([5, 5]), class_weights=[1.0, 10.0])
    weighted.load_state_dict({**plain.state_dict(), "class_weights": weighted.class_weights})
    batch = Batch(
        inputs=torch.tensor([[1, 2, 3], [4, 5, 0], [6, 0, 0]]),
        lengths=torch.tensor([3, 2, 1]),
        mask=torch.tensor([[True, True, True], [True, True, False], [True, False, False]]),
        targets=torch.tensor([0, 1, 1]),
    )
    plain.eval()
    weighted.eval()
    with torch.no_grad():
        logits = plain(batch.inputs, batch.lengths, batch.mask)
        expected = torch.nn.functional.cross_entropy(logits, batch.targets, weight=torch.tensor([1.0, 10.0]))
        got = weighted.compute(batch, "val")
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("option", [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0], "inverse"], ids=["short", "long", "word"])
def test_bad_class_weights_raise_user_error(model_config: dict[str, Any], option: Any) -> None:
    with pytest.raises(UserError, match="model.class_weights"):
        classifier(model_config, spec_for([10, 30, 60]), class_weights=option)


@pytest.mark.parametrize("counts", [[7], []], ids=["one", "none"])
def test_fewer_than_two_classes_raise_user_error(model_config: dict[str, Any], counts: list[int]) -> None:
    with pytest.raises(UserError, match="at least 2 classes"):
        classifier(model_config, spec_for(counts))


# -- metrics -----------------------------------------------------------------------------------


def test_metric_mode(model_config: dict[str, Any]) -> None:
    model = classifier(model_config, spec_for([3, 3]))
    assert model.metric_mode("val/acc") == "max"
    assert model.metric_mode("val/f1_macro") == "max"
    assert model.metric_mode("val/loss") == "min"
    assert model.default_monitor == "val/acc"


@pytest.mark.parametrize("name", ["val/accuracy", "acc", "valid/acc", "val/"])
def test_unknown_metric_raises_user_error_listing_valid_ones(model_config: dict[str, Any], name: str) -> None:
    model = classifier(model_config, spec_for([3, 3]))
    with pytest.raises(UserError) as info:
        model.metric_mode(name)
    message = str(info.value)
    assert repr(name) in message
    for valid in ("val/loss", "val/acc", "val/f1_macro"):
        assert valid in message


def test_weighted_mean_is_the_mean_over_items_and_a_nan_stays() -> None:
    """Each update a mean over its weight's items (a count or a device tensor): the result weighs
    them so, a NaN update makes it NaN (a diverged validation loss is not skipped), reset clears it."""
    mean = WeightedMean()
    mean.update(torch.tensor(2.0), weight=3)
    mean.update(torch.tensor(0.5), weight=torch.tensor(1))
    assert float(mean.compute()) == pytest.approx((2.0 * 3 + 0.5 * 1) / 4, abs=1e-7)
    mean.update(torch.tensor(float("nan")), weight=2)
    assert torch.isnan(mean.compute())
    mean.reset()
    mean.update(torch.tensor(1.5), weight=5)
    assert float(mean.compute()) == 1.5


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize(
    ("precision", "clip", "fused"),
    [("32-true", 1.0, True), ("bf16-mixed", 0.0, True), ("bf16-mixed", 1.0, None)],
    ids=["fp32-clipped", "mixed-unclipped", "mixed-clipped"],
)
def test_fused_auto_takes_the_fused_update_where_lightning_allows_it(optimizer: str, precision: str, clip: float, fused: bool | None) -> None:
    """Lightning refuses to clip the gradients of a fused optimizer under mixed precision (it
    unscales inside its step): there ``fused: auto`` leaves torch's default update."""
    cfg = compose_config(*SMALL, f"model/optimizer={optimizer}", f"trainer.precision={precision}", f"trainer.gradient_clip_val={clip}")
    _, model = build(cfg)
    assert cfg.model.optimizer.fused == "auto"
    model.trainer = make_trainer(cfg)
    assert model.configure_optimizers().param_groups[0]["fused"] is fused


def test_fused_auto_without_a_trainer_and_beside_foreach() -> None:
    """A plain loop calling configure_optimizers gets the fused update; ``foreach: true``, which
    torch will not combine with it, keeps its own."""
    _, model = build(compose_config(*SMALL))
    assert model.configure_optimizers().param_groups[0]["fused"] is True
    _, model = build(compose_config(*SMALL, "+model.optimizer.foreach=true"))
    group = model.configure_optimizers().param_groups[0]
    assert group["fused"] is None and group["foreach"] is True


def test_fused_update_trains_as_the_loop_over_parameters() -> None:
    """The same 4 steps with ``fused: auto`` and ``fused: false`` end at the same weights (to
    float32 rounding: the fused kernel orders its arithmetic its own way)."""
    weights = {}
    for fused in ("auto", "false"):
        cfg = compose_config(*SMALL, f"model.optimizer.fused={fused}", "trainer.max_steps=4", "trainer.limit_val_batches=0")
        L.seed_everything(0)
        datamodule, model = build(cfg)
        initial = model.head.output.weight.detach().clone()
        make_trainer(cfg).fit(model, datamodule=datamodule)
        weights[fused] = model.state_dict()
    assert weights["auto"].keys() == weights["false"].keys()
    for name, value in weights["auto"].items():
        torch.testing.assert_close(value, weights["false"][name], rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(weights["auto"]["head.output.weight"], initial, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["norm", None])
@pytest.mark.parametrize(("clip", "scaled"), [(1e-3, True), (1e3, False)], ids=["over", "under"])
def test_cpu_clipping_by_norm_gives_torch_gradients_and_scales_only_over_the_limit(
    monkeypatch: pytest.MonkeyPatch, algorithm: str | None, clip: float, scaled: bool
) -> None:
    """To the bit what torch's clip_grad_norm_ leaves, which scales by exactly 1 under the limit;
    rnnlab skips that pass over the gradients. ``None`` is Lightning's default algorithm, by norm."""
    calls = []
    monkeypatch.setattr(rnnlab.tasks.base, "clip_grads_with_norm_", lambda *args: calls.append(args) or torch.nn.utils.clip_grads_with_norm_(*args))
    datamodule, model = build(compose_config(*SMALL))
    model.probe_loss(next(iter(datamodule.train_dataloader()))).backward()
    expected = [nn.Parameter(p.detach().clone()) for p in model.parameters()]
    for copied, parameter in zip(expected, model.parameters()):
        copied.grad = parameter.grad.clone()
    torch.nn.utils.clip_grad_norm_(expected, clip)
    model.configure_gradient_clipping(model.configure_optimizers(), clip, algorithm)
    assert len(calls) == int(scaled)
    for (name, parameter), reference in zip(model.named_parameters(), expected):
        assert torch.equal(parameter.grad, reference.grad), name


def test_logged_padding_ratio_is_padded_steps_over_all_steps() -> None:
    cfg = compose_config(*SMALL, "data.num_val=50", "data.eval_batch_size=7")
    datamodule, model = build(cfg)
    trainer = make_trainer(cfg)
    trainer.validate(model, datamodule=datamodule, verbose=False)

    padded = total = 0
    per_batch = []
    for batch in datamodule.val_dataloader():
        padded += int((~batch.mask).sum())
        total += batch.mask.numel()
        per_batch.append(float((~batch.mask).float().mean()))
    expected = padded / total
    assert len(per_batch) == 8  # 50 examples in batches of 7
    # The batches differ in size and padding, so a plain mean of per-batch ratios would differ.
    assert abs(sum(per_batch) / len(per_batch) - expected) > 1e-4
    assert float(trainer.callback_metrics["val/padding_ratio"]) == pytest.approx(expected, abs=1e-6)
    assert 0.0 < expected < 1.0


class MemoryLogger(Logger):
    """Every point Lightning writes: (x, {name: value})."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.points.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


class StepLossesThenStop(L.Callback):
    """Each optimizer step's loss and learning rate (as the step used it); stops training after step ``stop_at``."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at = stop_at
        self.losses: dict[int, float] = {}
        self.rates: dict[int, float] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.rates[trainer.global_step + 1] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])
        if trainer.global_step == self.stop_at:
            trainer.should_stop = True


def test_train_loss_and_lr_are_those_of_each_written_step() -> None:
    """train/loss and train/lr are logged only at the steps Lightning writes (every
    log_every_n_steps, and the step where a callback stops training), with that step's own values:
    never a value left over from an earlier step, and the rate as the step used it (the per-step
    scheduler has moved it on by the batch's end)."""
    cfg = compose_config(*SMALL, "trainer.log_every_n_steps=3", "trainer.max_epochs=3", "model/scheduler=cosine",
                         "model.scheduler.interval=step", "model.scheduler.T_max=20")
    datamodule, model = build(cfg)
    recorder, logger = StepLossesThenStop(stop_at=7), MemoryLogger()
    trainer = make_trainer(cfg, callbacks=[recorder])
    trainer.loggers = [logger]
    trainer.fit(model, datamodule=datamodule)
    written = {x: point for x, point in logger.points if "train/loss" in point}
    # The k-th step's values at x = k - 1: steps 3 and 6 (every 3), then 7 (the stop).
    assert sorted(written) == [2, 5, 6]
    for x, point in written.items():
        assert point["train/loss"] == pytest.approx(recorder.losses[x + 1], abs=1e-6)
        assert point["train/lr"] == pytest.approx(recorder.rates[x + 1], rel=1e-6)
    assert len({point["train/lr"] for point in written.values()}) == 3, "the scheduler moves the rate every step"
    assert float(trainer.progress_bar_metrics["train/loss"]) == pytest.approx(recorder.losses[7], abs=1e-6)


def test_validate_logs_accuracy_that_matches_the_predictions() -> None:
    cfg = compose_config(*SMALL, "data.eval_batch_size=16")
    datamodule, model = build(cfg)
    trainer = make_trainer(cfg)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    model.eval()
    correct = count = 0
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            predicted = model(batch.inputs, batch.lengths, batch.mask).argmax(dim=-1)
            correct += int((predicted == batch.targets).sum())
            count += len(batch)
    assert count == 40
    assert float(trainer.callback_metrics["val/acc"]) == pytest.approx(correct / count, abs=1e-6)


def test_predict_returns_one_record_per_text_with_its_index(tmp_path: Path) -> None:
    cfg = compose_config(*SMALL)
    datamodule, model = build(cfg)
    texts = ["w1 k2 w3", "k0", "w4 w4 w4 w4 w4 k1 w5", "w7 k3"]
    path = tmp_path / "input.txt"
    path.write_text("\n".join(texts) + "\n")
    assert datamodule.load_predict_file(str(path)) == [{"text": text} for text in texts]
    trainer = make_trainer(cfg)
    records = [record for batch in trainer.predict(model, datamodule=datamodule) for record in batch]
    assert sorted(record["index"] for record in records) == [0, 1, 2, 3]
    for record in records:
        assert record["label"] in model.labels
        assert set(record["probs"]) == set(model.labels)
        assert sum(record["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert record["label"] == max(record["probs"], key=record["probs"].get)


def test_fit_after_validate() -> None:
    cfg = compose_config(*SMALL, "trainer.max_epochs=1")
    datamodule, model = build(cfg)
    trainer = make_trainer(cfg, limit_train_batches=1, limit_val_batches=1)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.state.finished
