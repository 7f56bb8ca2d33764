"""Where a GPU run would make the host wait: every task's steps on the meta device.

On a GPU, any op that reads device data on the host (``item()``, ``bool()``, ``nonzero``, boolean
indexing, ``bincount``, a copy to the CPU, a blocking copy from it) waits for every kernel queued
so far, and the GPU then idles while the host queues the next ones. Meta tensors have shapes but
no data, like a GPU's seen from the host, and sit on a device other than the CPU: a step run on
them with the host batch kept on the CPU (as ``Batch.to`` keeps it) meets the same waits, and the
same device mismatches, as on a GPU. :class:`HostWaits` records each wait with the rnnlab
function that made it and fakes a result so the step runs on.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from conftest import compose_config
from rnnlab.batch import Batch

aten = torch.ops.aten
#: Ops whose result's size or value the host needs from the device's data.
DATA_DEPENDENT = (aten.nonzero, aten.masked_select, aten.bincount, aten._unique2, aten.unique_consecutive, aten.unique_dim, aten.equal)


def waiting_function() -> str:
    """The innermost rnnlab function on the stack (or a third party's, named by its file)."""
    frames = traceback.extract_stack()[:-3]
    ours = [frame for frame in frames if "/rnnlab/" in frame.filename and "/tests/" not in frame.filename]
    frame = (ours or frames)[-1]
    return f"{Path(frame.filename).stem}.{frame.name}"


class HostWaits(TorchDispatchMode):
    """Records every op on meta tensors that a GPU would make the host wait for."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        tensors = [value for value in tree_leaves((args, kwargs)) if isinstance(value, torch.Tensor)]
        if not any(t.device.type == "meta" for t in tensors):
            return func(*args, **kwargs)
        packet = func.overloadpacket
        if packet is aten._local_scalar_dense:  # item(), bool(), int(), float()
            return self._wait(False if args[0].dtype == torch.bool else 0.0 if args[0].is_floating_point() else 1)
        if packet is aten._to_copy and torch.device(kwargs.get("device") or args[0].device).type == "cpu":
            return self._wait(torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype))
        if packet is aten.copy_ and args[0].device != args[1].device:
            return self._wait(args[0])
        if packet is aten.index and any(index is not None and index.dtype == torch.bool for index in args[1]):
            mask = next(index for index in args[1] if index is not None and index.dtype == torch.bool)
            return self._wait(args[0].new_empty((mask.numel(), *args[0].shape[mask.dim() :])))
        if packet in DATA_DEPENDENT:
            self.waits.append(waiting_function())
            raise AssertionError(f"{packet.__name__} in {self.waits[-1]}: no fake result for it")
        return func(*args, **kwargs)

    def _wait(self, fake: Any) -> Any:
        self.waits.append(waiting_function())
        return fake


TINY = ["model.backbone.hidden_size=8"]
TASKS = {
    "classifier": ["data=keywords", "data.num_train=64", "data.num_val=32", "data.num_test=32", *TINY],
    "classifier_bigru_2_layers": ["data=keywords", "data.num_train=64", "model/backbone=gru", *TINY,
                                  "model.backbone.bidirectional=true", "model.backbone.num_layers=2"],
    "classifier_reference": ["data=keywords", "data.num_train=64", "model.backbone.impl=reference", *TINY],
    "tagger": ["data=conll", "model=tagger", *TINY],
    "tagger_crf_chars": ["data=conll", "model=tagger", "model.decoder=crf", "model/char_encoder=lstm", *TINY],
    "seq2seq": ["data=reverse", "model=seq2seq", "data.num_train=64", "data.num_val=32", "data.num_test=8", *TINY],
    "seq2seq_own_predictions_fed": ["data=reverse", "model=seq2seq", "data.num_train=64", "model.teacher_forcing.start=0.5",
                                    "model.teacher_forcing.end=0.5", "model.attention=additive", "model/decoder=gru", *TINY],
    "forecaster": ["data=sunspots", "model=forecaster", *TINY],
    "forecaster_autoregressive": ["data=sunspots", "model=forecaster", "model.strategy=autoregressive", "model.teacher_forcing.start=0.5", *TINY],
    "language_model": ["data=text_lm", "model=language_model", *TINY],
    "language_model_stream": ["data=text_lm", "model=language_model", "data.unit=stream", "data.batch_size=4", *TINY],
}
#: The waits an evaluation step makes by design: decoding stops once every row has ended (a check
#: per generated token), and the sequence metrics score token lists on the host.
EVALUATION_WAITS = dict.fromkeys(("seq2seq", "seq2seq_own_predictions_fed"), {"search.greedy_search", "search.sequences"})


def task_and_batch_on(name: str, data_files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch, device: str = "meta") -> tuple[Any, Batch]:
    """The task built from its config, moved to ``device`` (the meta device here; tests/test_cuda.py:
    a GPU), and a training batch moved there by the task's transfer hook; Lightning's logging is
    stubbed out (no trainer)."""
    overrides = TASKS[name]
    data = overrides[0].removeprefix("data=")
    cfg = compose_config(*overrides, *data_files.get(data, []))
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    task = instantiate(cfg.model, data_spec=datamodule.spec).to(device)
    monkeypatch.setattr(task, "log", lambda *args, **kwargs: None)
    optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}])
    task._trainer = SimpleNamespace(optimizers=[optimizer], current_epoch=0, global_step=0, state=SimpleNamespace(fn=TrainerFn.FITTING))
    batch = next(iter(datamodule.train_dataloader()))
    return task, task.transfer_batch_to_device(batch, torch.device(device), 0)


@pytest.mark.parametrize("name", TASKS)
def test_a_training_step_makes_the_host_wait_for_nothing(name: str, data_files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    task, batch = task_and_batch_on(name, data_files, monkeypatch)
    task.train()
    with HostWaits() as recorder:
        loss = task.training_step(batch, 0)
        loss.backward()
    assert loss.device.type == "meta"
    assert recorder.waits == []


@pytest.mark.parametrize("stage", ["validation", "test"])
@pytest.mark.parametrize("name", TASKS)
def test_an_evaluation_step_waits_only_where_it_must(name: str, stage: str, data_files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    task, batch = task_and_batch_on(name, data_files, monkeypatch)
    task.eval()
    if hasattr(task, "logged_examples"):
        task.logged_examples = 0  # no example of this batch is kept for TensorBoard
    if hasattr(task, "logged_windows"):
        task.logged_windows = 0
    with HostWaits() as recorder, torch.no_grad():
        getattr(task, f"{stage}_step")(batch, 0)
    assert set(recorder.waits) <= EVALUATION_WAITS.get(name, set()), recorder.waits


def test_the_tagger_copies_a_kept_example_s_predictions_once(data_files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    task, batch = task_and_batch_on("tagger_crf_chars", data_files, monkeypatch)
    task.eval()
    task.logged_examples = 10**9  # every sentence of the batch is kept
    with HostWaits() as recorder, torch.no_grad():
        task.validation_step(batch, 0)
    assert recorder.waits == ["tagging._keep_examples"]
    assert len(task._examples) == len(batch)


def test_without_the_host_batch_the_backbone_waits_for_the_lengths(data_files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder sees a wait where one is: lengths read back from the device."""
    task, batch = task_and_batch_on("classifier", data_files, monkeypatch)
    batch.host = None
    with HostWaits() as recorder:
        task.training_step(batch, 0)
    assert recorder.waits == ["recurrent._run_fused"]


def test_the_transfer_keeps_the_loader_s_batch_on_the_cpu(data_files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's batch transfer (the task's default hook) calls Batch.to, which keeps the host batch."""
    task, moved = task_and_batch_on("classifier", data_files, monkeypatch)
    assert moved.inputs.device.type == "meta" and moved.lengths.device.type == "meta"
    assert moved.extras["index"].device.type == "meta"
    assert moved.host is not None and moved.on_host.lengths.device.type == "cpu"
    assert torch.equal(moved.on_host.mask.sum(1), moved.on_host.lengths)
    assert moved.to("meta").on_host is moved.on_host  # moved again: still the loader's batch
    again = task.transfer_batch_to_device(moved.on_host, torch.device("cpu"), 0)
    assert again.host is None and again.on_host is again  # a batch that stays on the CPU is its own host batch
