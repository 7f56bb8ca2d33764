"""What a GPU adds: every backbone path, the CRF and the command line on a CUDA device.

The rest of the suite runs on whatever device the trainer finds (``trainer.accelerator=auto``), so
on a GPU machine its CLI tests train, evaluate and resume there too. This module checks what only
a GPU has: cuDNN's kernels against the CPU's on the same weights and padded batches, float16 and
bfloat16 autocast through cuDNN, and the command line's GPU settings (``trainer=gpu``,
``16-mixed``, ``predict device=cuda``, the CUDA memory figure). Skipped without a CUDA device,
as on CI: run ``pytest tests/test_cuda.py`` on a GPU machine.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_OVERRIDES, describe, json_lines, read_csv_rows, read_json, run_cli, text_csv_args, write_lines
from rnnlab.backbones import RecurrentBackbone
from rnnlab.callbacks import DivergenceMonitor
from rnnlab.data.collate import SequenceCollator
from rnnlab.heads.crf import LinearChainCRF
from test_gpu_waits import TASKS, task_and_batch_on

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FEATURES, HIDDEN, STEPS = 5, 6, 9
LENGTHS = torch.tensor([9, 3, 1, 6, 9, 2])
CONFIGS = list(itertools.product(("rnn", "lstm", "gru"), (False, True), (1, 2)))
CONFIG_IDS = [f"{cell}-{'bi' if bi else 'uni'}-{layers}L" for cell, bi, layers in CONFIGS]
# What impl=auto may run on a GPU, each checked whatever the dispatch picks today.
PATHS = ("_run_packed", "_run_per_direction", "_run_length_groups")


@pytest.fixture(autouse=True)
def full_float32() -> Iterator[None]:
    """cuDNN's recurrent kernels and cuBLAS may use TF32 (10-bit mantissa) unless told not to."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def states(final: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return final if isinstance(final, tuple) else (final,)


def padded_features(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, F) float32 on the CPU with large garbage at padded steps, and the padding mask (B, T)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LENGTHS), STEPS, FEATURES, generator=generator)
    pad = torch.arange(STEPS).unsqueeze(0) >= LENGTHS.unsqueeze(1)
    return x.masked_fill(pad.unsqueeze(2), 1e4), pad


def forward_backward(model: RecurrentBackbone, x: torch.Tensor, run=None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor, dict[str, torch.Tensor]]:
    """outputs, final states, d(loss)/d(x) and each parameter's gradient, all on the CPU; the loss
    reads every output and final state. ``run``: one of the backbone's paths (default: forward)."""
    model.zero_grad()
    x = x.clone().requires_grad_()
    # forward() takes lengths on any device; its paths take them on the CPU, as forward() passes them.
    outputs, final = run(x, LENGTHS, None) if run else model(x, LENGTHS.to(x.device))
    loss = outputs.float().pow(2).sum() + sum(s.float().sin().sum() for s in states(final))
    loss.backward()
    grads = {name: p.grad.detach().float().cpu() for name, p in model.named_parameters()}
    return outputs.detach().float().cpu(), tuple(s.detach().float().cpu() for s in states(final)), x.grad.float().cpu(), grads


def assert_close_results(got, expected, atol: float) -> None:
    (out, final, x_grad, grads), (out_e, final_e, x_grad_e, grads_e) = got, expected
    torch.testing.assert_close(out, out_e, atol=atol, rtol=0)
    for a, b in zip(final, final_e, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    torch.testing.assert_close(x_grad, x_grad_e, atol=atol, rtol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_e[name], atol=atol, rtol=1e-4, msg=name)


def cpu_and_cuda(cell: str, bidirectional: bool, num_layers: int, impl: str) -> tuple[RecurrentBackbone, RecurrentBackbone]:
    """The same backbone (same weights) on the CPU and on the GPU, in training mode (cuDNN has no
    backward pass in eval mode) without dropout, so that both compute the same function."""
    torch.manual_seed(0)
    options = dict(cell=cell, hidden_size=HIDDEN, num_layers=num_layers, bidirectional=bidirectional, dropout=0.0, impl=impl, input_size=FEATURES)
    cpu = RecurrentBackbone(**options)
    gpu = RecurrentBackbone(**options)
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


@pytest.mark.parametrize("impl", ["auto", "fused", "reference"])
@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), CONFIGS, ids=CONFIG_IDS)
def test_every_impl_on_cuda_matches_the_cpu_on_a_padded_batch(cell: str, bidirectional: bool, num_layers: int, impl: str) -> None:
    """Outputs (zero at padding), final states and every gradient on the GPU equal the CPU's, with
    garbage at the padded steps; so cuDNN reads nothing past each sequence's end."""
    cpu, gpu = cpu_and_cuda(cell, bidirectional, num_layers, impl)
    x, pad = padded_features(1)
    expected = forward_backward(cpu, x)
    got = forward_backward(gpu, x.cuda())
    assert_close_results(got, expected, atol=1e-4)
    assert (got[0][pad] == 0).all()
    assert (got[2][pad] == 0).all(), "padding must get no gradient"


@pytest.mark.parametrize("impl", ["auto", "fused", "reference"])
def test_lengths_on_the_cpu_give_what_lengths_on_the_gpu_give(impl: str) -> None:
    """forward() takes lengths on either device; the decoders and generation pass them from the
    CPU (reading device lengths on the host waits for the GPU)."""
    _, gpu = cpu_and_cuda("lstm", True, 2, impl)
    x, _ = padded_features(4)
    x = x.cuda()
    on_device, on_host = gpu(x, LENGTHS.cuda()), gpu(x, LENGTHS)
    for a, b in zip((on_device[0], *states(on_device[1])), (on_host[0], *states(on_host[1])), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), [("lstm", True, 2), ("gru", True, 1), ("rnn", False, 2)])
def test_each_fused_path_on_cuda_matches_the_cpu(cell: str, bidirectional: bool, num_layers: int, path: str) -> None:
    """The fused paths impl=auto chooses among (packed, padded per direction, length groups), each
    forced on the GPU: the same function as the CPU's default path."""
    cpu, gpu = cpu_and_cuda(cell, bidirectional, num_layers, "fused")
    x, _ = padded_features(2)
    assert_close_results(forward_backward(gpu, x.cuda(), getattr(gpu, path)), forward_backward(cpu, x), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("impl", ["auto", "fused", "reference"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_autocast_on_cuda_stays_close_to_float32_and_ignores_padding(cell: str, impl: str, dtype: torch.dtype) -> None:
    """``trainer.precision=16-mixed`` / ``bf16-mixed`` on a GPU: cuDNN runs in half precision on a
    padded batch; results stay within half precision of float32, every gradient is finite and in
    the parameter's dtype, and the padding gets none."""
    _, gpu = cpu_and_cuda(cell, True, 2, impl)
    x, pad = padded_features(3)
    x = x.cuda().requires_grad_()
    expected, expected_final = gpu(x, LENGTHS.cuda())
    with torch.autocast("cuda", dtype=dtype):
        outputs, final = gpu(x, LENGTHS.cuda())
        (outputs.float().sum() + sum(s.float().sum() for s in states(final))).backward()
    assert x.grad is not None and x.grad.isfinite().all() and (x.grad[pad.cuda()] == 0).all()
    for name, parameter in gpu.named_parameters():
        assert parameter.grad is not None and parameter.grad.dtype == torch.float32 and parameter.grad.isfinite().all(), name
    atol = 0.01 if dtype == torch.float16 else 0.05
    torch.testing.assert_close(outputs.float(), expected, atol=atol, rtol=0)
    for got, want in zip(states(final), states(expected_final), strict=True):
        torch.testing.assert_close(got.float(), want, atol=atol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_lstm_padded_path_under_autocast_on_cuda(dtype: torch.dtype) -> None:
    """The padded LSTM path's saturating input column in a half-precision cuDNN kernel (autocast
    casts the weights): finite and close to the packed path. A constant of 1e5 or more gave NaN in
    bfloat16 on an H100; float16 cannot hold one past 65504."""
    _, gpu = cpu_and_cuda("lstm", True, 2, "fused")
    x, _ = padded_features(5)
    x = x.cuda()
    expected = gpu._run_packed(x, LENGTHS, None)
    with torch.autocast("cuda", dtype=dtype):
        got = gpu._run_per_direction(x, LENGTHS, None)
    for a, b in zip((got[0], *got[1]), (expected[0], *expected[1]), strict=True):
        assert a.isfinite().all()
        torch.testing.assert_close(a.float(), b, atol=0.01 if dtype == torch.float16 else 0.05, rtol=0)


def test_crf_on_cuda_matches_the_cpu() -> None:
    """The forward algorithm and Viterbi on the GPU: the same likelihoods and paths as on the CPU."""
    torch.manual_seed(4)
    crf = LinearChainCRF(5).double()
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.uniform_(-2.0, 2.0)
    mask = torch.arange(STEPS).unsqueeze(0) < LENGTHS.unsqueeze(1)
    emissions = torch.randn(len(LENGTHS), STEPS, 5, dtype=torch.float64)
    tags = torch.randint(0, 5, (len(LENGTHS), STEPS))
    cpu_nll = crf(emissions, tags, mask, reduction="none")
    cpu_paths, cpu_scores = crf.viterbi(emissions, mask)
    crf.cuda()
    gpu_nll = crf(emissions.cuda(), tags.cuda(), mask.cuda(), reduction="none")
    gpu_paths, gpu_scores = crf.viterbi(emissions.cuda(), mask.cuda())
    torch.testing.assert_close(gpu_nll.cpu(), cpu_nll)
    torch.testing.assert_close(gpu_scores.cpu(), cpu_scores)
    assert torch.equal(gpu_paths.cpu(), cpu_paths)


# -- the command line on a GPU -------------------------------------------------------------------


def scalar_tags(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return set(events.Tags()["scalars"])


def train_on_the_gpu(tmp_path: Path, sentiment_files: dict[str, Path], *overrides: str) -> Path:
    """``rnnlab-train trainer=gpu`` on the tiny sentiment files -> its run directory."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "train",
        *text_csv_args(sentiment_files["train"], sentiment_files["val"], sentiment_files["test"]),
        *TINY_OVERRIDES,
        "trainer=gpu",
        *overrides,
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    return run_dir


@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
def test_train_on_the_gpu_in_each_precision(tmp_path: Path, sentiment_files: dict[str, Path], precision: str) -> None:
    """``trainer=gpu`` with a bidirectional LSTM: the run completes with finite metrics, records the
    GPU in run_info.json and logs its CUDA memory high-water mark."""
    overrides = ("trainer.max_epochs=2", "model.backbone.cell=lstm", "model.backbone.bidirectional=true")
    run_dir = train_on_the_gpu(tmp_path, sentiment_files, f"trainer.precision={precision}", *overrides)
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "completed"
    assert math.isfinite(metrics["test/loss"]) and 0.0 <= metrics["test/acc"] <= 1.0
    info = read_json(run_dir / "run_info.json")
    assert info["hardware"]["cuda_devices"] == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    assert "resources/cuda_max_allocated_mib" in scalar_tags(run_dir)


def test_predict_on_the_gpu_equals_predict_on_the_cpu(tmp_path: Path, sentiment_files: dict[str, Path]) -> None:
    """A checkpoint trained on the GPU predicts the same labels and probabilities on either device."""
    run_dir = train_on_the_gpu(tmp_path, sentiment_files, "trainer.max_epochs=1")
    texts = [text for text, _ in read_csv_rows(sentiment_files["test"])]
    inputs = write_lines(tmp_path / "inputs.txt", texts)
    records = {}
    for device in ("cpu", "cuda"):
        result = run_cli("predict", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", f"input_file={inputs}", f"device={device}", cwd=tmp_path)
        assert result.returncode == 0, describe(result)
        records[device] = json_lines(result.stdout)
    assert len(records["cuda"]) == len(texts)
    for on_gpu, on_cpu in zip(records["cuda"], records["cpu"], strict=True):
        assert on_gpu["label"] == on_cpu["label"]
        for label, probability in on_cpu["probs"].items():
            assert on_gpu["probs"][label] == pytest.approx(probability, abs=1e-4)


def test_divergence_on_a_gpu_is_read_a_step_later_but_reported_at_its_own() -> None:
    """DivergenceMonitor never waits for a GPU step's kernels: step 2's check is read at step 3's end
    (or at the epoch's), and the run is reported diverged at step 2."""
    monitor, trainer = DivergenceMonitor(), SimpleNamespace(global_step=0, should_stop=False)
    for step, loss in enumerate((1.0, float("nan"), 2.0), start=1):
        trainer.global_step = step
        monitor.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss, device="cuda")}, None, step - 1)
        assert monitor.diverged == (step == 3)
    assert monitor.diverged_at_step == 2 and trainer.should_stop
    late, trainer = DivergenceMonitor(), SimpleNamespace(global_step=1, should_stop=False)
    late.on_train_batch_end(trainer, None, torch.tensor(float("inf"), device="cuda"), None, 0)
    late.on_train_epoch_end(trainer, None)
    assert late.diverged_at_step == 1


def test_a_pinning_loader_hands_on_pinned_batches() -> None:
    """data.pin_memory=true: every tensor of every batch arrives in page-locked memory."""
    data = [{"inputs": torch.arange(1, n + 1), "target": torch.arange(n), "index": i} for i, n in enumerate([3, 1, 2, 5])]
    loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=SequenceCollator(), pin_memory=True)
    for batch in loader:
        for tensor in (batch.inputs, batch.lengths, batch.mask, batch.targets, batch.extras["index"]):
            assert tensor.is_pinned()


@pytest.mark.parametrize("name", TASKS)
def test_a_training_step_on_the_gpu_never_synchronises(name: str, data_files: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """What tests/test_gpu_waits.py proves on the meta device, on a real one: CUDA's sync debug
    mode raises at any op that makes the host wait for the GPU (after a first step, whose library
    set-up may)."""
    task, batch = task_and_batch_on(name, data_files, monkeypatch, device="cuda")
    task.train()
    task.training_step(batch, 0).backward()
    torch.cuda.set_sync_debug_mode("error")
    try:
        task.training_step(batch, 0).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
