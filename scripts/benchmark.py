"""Performance of rnnlab against a hand-written PyTorch loop and against the machine itself.

    python scripts/benchmark.py              # the full run (about 25 minutes on a 2-core CPU)
    python scripts/benchmark.py --quick      # a smoke run in under a minute: tiny sizes, one repeat
    python scripts/benchmark.py --out DIR    # where BENCHMARKS.md, benchmarks.json and the plot go (default: .)
    python scripts/benchmark.py --device cuda   # the default where a GPU is: BENCHMARKS-cuda.md etc.

Every comparison is a ratio of two measurements taken in this one process, A/B interleaved (the
cases alternate, in a random order, within every repeat) and summarised by the median over the
repeats, so that a machine that speeds up or slows down during the run moves both sides alike
(the one exception, the C allocator's settings, alternates processes of its own the same way).
Absolute numbers are printed for context only: compare them across runs only on the same machine.

Sections (each a function below): the machine and its measured matmul rate; framework overhead
(rnnlab-train's loop vs a plain loop, and the cost of the default callbacks); batching on real
length distributions (bucketed vs shuffled batches); recurrent kernels (fused vs reference, and
bidirectional packed vs padded vs bucketed); where impl=auto switches from the padded path to the
packed one (RNN, GRU), what its length groups gain (LSTM), and whether its choice is ever slower
than torch's packed path; decoding; the data path's share of an epoch's steps (fixed-size batches
and a token budget); start-up time; rnnlab-train with freed memory kept for reuse or given back
(keep_freed_memory); scaling of time and activation memory with sequence length, hidden size and
batch size.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import move_data_to_device
from matplotlib.figure import Figure
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnlab.backbones import RecurrentBackbone
from rnnlab.backbones.recurrent import packed_above
from rnnlab.batch import Batch
from rnnlab.callbacks import DivergenceMonitor, ExactResume, GradientHealth, Throughput
from rnnlab.callbacks.throughput import resident_kib, synchronize
from rnnlab.cli.common import CONFIG_DIR
from rnnlab.cli.malloc import M_MMAP_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, glibc, keep_freed_memory
from rnnlab.cli.run_files import cpu_name
from rnnlab.data.sampler import BucketBatchSampler, padding_ratio
from rnnlab.markdown import markdown_table
from rnnlab.sweeps.jobs import usable_cpus

REPO = Path(__file__).resolve().parent.parent
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
#: Targets of the performance issue: (ratio name, comparison, threshold).
TARGETS = {
    "overhead.throughput_ratio": (">=", 0.97, "rnnlab-train loop / plain loop throughput"),
    "overhead.default_callbacks_cost": ("<", 0.05, "default diagnostics callbacks, share of step time"),
    "kernels.reference_over_fused_max": ("<=", 2.0, "reference / fused time, worst benchmarked shape"),
    # "Never slower than torch's packed path", up to the noise of timing two near-equal paths.
    "auto.auto_over_packed_max": ("<=", 1.05, "impl=auto / torch's packed nn.* time, worst benchmarked shape"),
}


# -- measuring ------------------------------------------------------------------------------------


def timed(function: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of ``function()``, queued GPU work included; or, when it returns a
    number, that number (a case that times only part of what it runs)."""
    synchronize(device)
    start = time.perf_counter()
    measured = function()
    synchronize(device)
    return float(measured) if isinstance(measured, (int, float)) else time.perf_counter() - start


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int, device: torch.device, warmup: int = 1) -> dict[str, float]:
    """Median seconds per case (or of the number it returns, see :func:`timed`) over ``repeats``
    rounds; in each round every case runs once, in a fresh (seeded) random order, after ``warmup``
    unmeasured rounds. Random, not rotated: rotating three cases keeps each one's predecessor
    fixed, so whatever one case leaves behind (garbage, cold caches) always lands on the same
    other case."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0)
    for round_ in range(warmup + repeats):
        for name in order.sample(names, len(names)):
            seconds = timed(cases[name], device)
            if round_ >= warmup:
                samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


# -- the machine ----------------------------------------------------------------------------------


def machine(device: torch.device) -> dict[str, Any]:
    info = {
        "cpu": cpu_name(),
        "cores": usable_cpus(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def matmul_rate(device: torch.device, size: int, repeats: int) -> float:
    """FLOP/s of a (size x size) @ (size x size) float32 matmul: the yardstick for the kernels. At
    least 20 warm-up and 20 timed runs: a new process's first few took up to twice as long."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    seconds = interleaved({"matmul": lambda: a @ b}, max(repeats, 20), device, warmup=20)["matmul"]
    return 2 * size**3 / seconds


# -- framework overhead ---------------------------------------------------------------------------


class StepSpan(L.Callback):
    """Seconds from the first training batch's start to the last one's end (checkpoints, validation
    and Lightning's set-up and tear-down fall outside). The device is synchronised only at those two
    points, as the plain loop is timed: a wait after every step would keep a GPU idle while the
    host prepares the next one."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.end = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.start is None:
            synchronize(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            synchronize(pl_module.device)
            self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.end - (self.start or self.end)


def plain_loop(model: L.LightningModule, loader: Iterable[Batch], device: torch.device, batches: int, clip: float) -> None:
    """What a user would write: model and batch to device, loss, backward, clip, step."""
    model.to(device)  # Lightning's fit moves the model back to the CPU when it ends
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    model.train()
    for index, batch in enumerate(loader):
        if index == batches:
            break
        batch = move_data_to_device(batch, device)
        loss = model.probe_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()


def overhead(overrides: list[str], batches: int, repeats: int, device: torch.device, log_dir: Path) -> dict[str, Any]:
    """Epoch time of rnnlab-train's training loop (Lightning, rnnlab's always-on callbacks, the
    default diagnostics and the TensorBoard logger) against a plain loop over the same batches,
    model and optimizer; and the same rnnlab loop without the diagnostics callbacks."""
    cfg = compose_config(*overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, data_spec=datamodule.spec).to(device)
    clip = float(cfg.trainer.gradient_clip_val)
    tokens = sum(int(b.lengths.sum()) for _, b in zip(range(batches), datamodule.train_dataloader()))

    def rnnlab_loop(diagnostics: bool) -> Callable[[], float]:
        def run() -> float:
            span = StepSpan()
            callbacks: list[L.Callback] = [span, DivergenceMonitor(), ExactResume(log_dir / "last.ckpt", seed=0)]
            if diagnostics:
                callbacks += [GradientHealth(), Throughput()]
            trainer = L.Trainer(
                accelerator=device.type, devices=1, max_epochs=1, limit_train_batches=batches, limit_val_batches=0,
                num_sanity_val_steps=0, gradient_clip_val=clip, logger=TensorBoardLogger(log_dir, name="overhead"),
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                deterministic=cfg.trainer.deterministic, use_distributed_sampler=False, callbacks=callbacks,
            )
            trainer.fit(model, datamodule=datamodule)
            return span.seconds
        return run

    def plain() -> None:
        plain_loop(model, datamodule.train_dataloader(), device, batches, clip)

    runs = {"rnnlab": rnnlab_loop(True), "rnnlab_without_diagnostics": rnnlab_loop(False), "plain": plain}
    seconds = interleaved(runs, repeats, device)
    return {
        "config": " ".join(overrides),
        "batches": batches,
        "seconds": seconds,
        "tokens_per_s": {name: tokens / s for name, s in seconds.items()},
        "throughput_ratio": seconds["plain"] / seconds["rnnlab"],
        "default_callbacks_cost": seconds["rnnlab"] / seconds["rnnlab_without_diagnostics"] - 1,
    }


# -- batching on real length distributions --------------------------------------------------------


def batching(overrides: list[str], batches: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Padding ratio over a whole epoch and real tokens per second of training steps (the plain
    loop, ``batches`` batches) for plain shuffled batches, length-bucketed batches of the same
    size, and bucketed token-budget batches whose budget (``data.max_tokens``) is what a shuffled
    batch computes on average, padding included (up to 8 x the batch size per batch): the same
    work per step, but all of it on real tokens. On a CPU also the shuffled batches under
    impl=fused, each one padded batch: impl=auto (the default, and every other case) splits a
    mostly padded LSTM batch into groups of similar lengths, a bucketing of its own."""
    cfg = compose_config(*overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    lengths = [len(example["inputs"]) for example in datamodule.datasets["train"]]
    size = int(cfg.data.batch_size)
    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled_order = [perm[i : i + size] for i in range(0, len(perm), size)]
    budget = round(statistics.mean(len(b) * max(lengths[i] for i in b) for b in shuffled_order))
    cases = {
        "shuffled": ["data.bucketing=false"],
        "bucketed": ["data.bucketing=true"],
        "token_budget": ["data.bucketing=true", f"data.max_tokens={budget}", f"data.batch_size={8 * size}"],
    }
    if device.type == "cpu":
        cases["shuffled_impl_fused"] = ["data.bucketing=false", "model.backbone.impl=fused"]
    result: dict[str, Any] = {"config": " ".join(overrides), "max_tokens": budget,
                              # The least any batches of batch_size can pad: the whole split sorted by length
                              # and cut, which is what the sampler does for evaluation.
                              "fixed_size_floor_padding": padding_ratio(BucketBatchSampler(lengths, size, shuffle=False), lengths)}
    loaders, models = {}, {}
    for name, extra in cases.items():
        cfg = compose_config(*overrides, *extra)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        # A plain shuffled DataLoader's batches are a random permutation cut in batch_size.
        order = list(loader.batch_sampler) if isinstance(loader.batch_sampler, BucketBatchSampler) else shuffled_order
        result[f"{name}_padding"] = padding_ratio(order, lengths)
        loaders[name] = [move_data_to_device(b, device) for _, b in zip(range(batches), loader)]
        models[name] = instantiate(cfg.model, data_spec=datamodule.spec).to(device)

    def steps(name: str) -> Callable[[], None]:
        return lambda: plain_loop(models[name], loaders[name], device, batches, 1.0)

    seconds = interleaved({name: steps(name) for name in loaders}, repeats, device)
    rates = {name: sum(int(b.lengths.sum()) for b in loaders[name]) / seconds[name] for name in loaders}
    result.update(
        tokens_per_s=rates,
        # Computed / real tokens of the shuffled batches: what removing all their padding could gain at
        # the same cost per computed token (bigger batches of short sequences may add to it).
        padding_bound=1 / (1 - result["shuffled_padding"]),
        bucketed_ratio=rates["bucketed"] / rates["shuffled"],
        throughput_ratio=rates["token_budget"] / rates["shuffled"],
    )
    if "shuffled_impl_fused" in rates:
        result["bucketed_over_shuffled_impl_fused"] = rates["bucketed"] / rates["shuffled_impl_fused"]
        result["token_budget_over_shuffled_impl_fused"] = rates["token_budget"] / rates["shuffled_impl_fused"]
    result["token_budget_overrides"] = cases["token_budget"]
    return result


# -- recurrent kernels ----------------------------------------------------------------------------


def backbone_pair(cell: str, hidden: int, layers: int = 1, bidirectional: bool = False) -> tuple[RecurrentBackbone, RecurrentBackbone]:
    """A fused and a reference backbone over real-valued inputs of size ``hidden``, same weights."""
    options = dict(cell=cell, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional, input_size=hidden)
    fused = RecurrentBackbone(impl="fused", **options)
    reference = RecurrentBackbone(impl="reference", **options)
    reference.load_state_dict(fused.state_dict())
    return fused, reference


def forward_backward(backbone: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        outputs, _ = backbone(x, lengths)
        outputs.sum().backward()
    return run


def kernels(sizes: list[tuple[int, int, int]], repeats: int, device: torch.device, peak: float) -> dict[str, Any]:
    """Forward + backward of one layer at each (B, T, H), fused and reference: tokens/s, FLOP/s
    (the gate matmuls: 2 B T gates H (F + H) forward, twice that backward) and its share of the
    measured matmul rate."""
    rows = []
    for cell in GATES:
        for batch, steps, hidden in sizes:
            fused, reference = (m.to(device) for m in backbone_pair(cell, hidden))
            x = torch.randn(batch, steps, hidden, device=device)
            lengths = torch.full((batch,), steps, dtype=torch.long)
            seconds = interleaved({"fused": forward_backward(fused, x, lengths), "reference": forward_backward(reference, x, lengths)}, repeats, device)
            flops = 3 * 2 * batch * steps * GATES[cell] * hidden * (hidden + hidden)
            for impl, s in seconds.items():
                rows.append({"cell": cell, "B": batch, "T": steps, "H": hidden, "impl": impl, "seconds": s,
                             "tokens_per_s": batch * steps / s, "flops": flops / s, "share_of_matmul": flops / s / peak})
            rows.append({"cell": cell, "B": batch, "T": steps, "H": hidden, "impl": "reference/fused", "ratio": seconds["reference"] / seconds["fused"]})
    worst = max(row["ratio"] for row in rows if "ratio" in row)
    return {"rows": rows, "reference_over_fused_max": worst}


def lognormal_lengths(count: int, rng: random.Random, high: int) -> list[int]:
    return [max(1, min(high, round(rng.lognormvariate(3.0, 0.8)))) for _ in range(count)]


def bidirectional_paths(count: int, batch: int, hidden: int, repeats: int, device: torch.device, longest: int = 400) -> dict[str, Any]:
    """A bidirectional LSTM over ``count`` sequences of log-normal lengths (a median of 20 steps, a
    long tail), one forward + backward pass over all of them: torch's packed sequences and rnnlab's
    padded path (impl=fused) and impl=auto on shuffled batches, and both on length-bucketed batches."""
    rng = random.Random(0)
    lengths = lognormal_lengths(count, rng, longest)
    fused, _ = backbone_pair("lstm", hidden, bidirectional=True)
    fused = fused.to(device)
    auto = RecurrentBackbone(cell="lstm", hidden_size=hidden, bidirectional=True, input_size=hidden, impl="auto").to(device)
    auto.load_state_dict(fused.state_dict())
    shuffled = list(range(count))
    rng.shuffle(shuffled)
    naive = [shuffled[i : i + batch] for i in range(0, count, batch)]
    bucketed = list(BucketBatchSampler(lengths, batch, shuffle=True, seed=0))

    def tensors(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = torch.tensor([lengths[i] for i in indices])
        return torch.randn(len(indices), int(sizes.max()), hidden, device=device), sizes

    naive_batches, bucketed_batches = [tensors(b) for b in naive], [tensors(b) for b in bucketed]

    def ours(backbone: RecurrentBackbone, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], None]:
        return lambda: [forward_backward(backbone, x, n)() for x, n in batches]

    def packed() -> None:
        for x, n in naive_batches:
            out, _ = fused.rnn(pack_padded_sequence(x, n, batch_first=True, enforce_sorted=False))
            out.data.sum().backward()

    cases = {"packed": packed, "padded_with_mask": ours(fused, naive_batches), "auto": ours(auto, naive_batches),
             "bucketed": ours(fused, bucketed_batches), "bucketed_auto": ours(auto, bucketed_batches)}
    seconds = interleaved(cases, repeats, device)
    return {
        "sequences": count,
        "batch": batch,
        "hidden": hidden,
        "naive_padding": padding_ratio(naive, lengths),
        "bucketed_padding": padding_ratio(bucketed, lengths),
        "seconds": seconds,
        "relative_to_packed": {name: s / seconds["packed"] for name, s in seconds.items()},
    }


# -- impl=auto: padded, packed or length groups --------------------------------------------------


def lengths_with_padding(share: float, batch: int, steps: int, rng: random.Random) -> torch.Tensor:
    """(batch,) lengths of one full-length sequence and the rest uniform, about ``share`` padding."""
    if share <= 0.5:
        lengths = [rng.randint(max(1, round((1 - 2 * share) * steps)), steps) for _ in range(batch)]
    else:
        lengths = [rng.randint(1, max(2, round(2 * (1 - share) * steps))) for _ in range(batch)]
    lengths[0] = steps
    return torch.tensor(lengths)


def auto_pick(backbone: RecurrentBackbone, x: torch.Tensor, lengths: torch.Tensor) -> str:
    """Which path ``backbone``'s impl=auto dispatch (``_run_fused``) takes for this batch: "padded",
    "packed" or (the LSTM) "grouped", the padded path per length group."""
    taken = []
    paths = {"padded": backbone._run_per_direction, "packed": backbone._run_packed, "grouped": backbone._run_length_groups}
    try:
        for name, path in paths.items():
            setattr(backbone, path.__name__, lambda *args, _name=name, _path=path: taken.append(_name) or _path(*args))
        with torch.no_grad():
            backbone._run_fused(x, lengths, None)
    finally:
        for path in paths.values():
            delattr(backbone, path.__name__)
    return taken[0]


def auto_sections(hiddens: list[int], shares: list[float], batch: int, steps: int, long_steps: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """:func:`auto_paths` on one thread and on torch's default thread count (impl=auto's thresholds,
    rnnlab.backbones.recurrent.PACKED_ABOVE_PADDING, differ between the two; on a GPU once), and
    once more for bidirectional layers of H = 128 over ``long_steps`` steps, the padding shares
    above 0.5 only (where torch's packed path on the CPU is quadratic in T)."""
    default = torch.get_num_threads()
    sections = []
    try:
        for threads in sorted({1, default}) if device.type == "cpu" else [default]:
            torch.set_num_threads(threads)
            sections.append(auto_paths(hiddens, shares, batch, steps, repeats, device))
    finally:
        torch.set_num_threads(default)
    long = auto_paths([128], [share for share in shares if share > 0.5], batch, long_steps, repeats, device, directions=(True,))
    return {"by_threads": sections, "long": long,
            "auto_over_packed_max": max(section["auto_over_packed_max"] for section in (*sections, long))}


def auto_paths(hiddens: list[int], shares: list[float], batch: int, steps: int, repeats: int, device: torch.device,
               directions: tuple[bool, ...] = (False, True)) -> dict[str, Any]:
    """For each cell, hidden size and direction count, on torch's current thread count, one layer's
    forward + backward (the final state in the loss) on batches of rising padding: rnnlab's padded
    path (impl=fused on CPU) over torch's packed path (what nn.* needs to be exact), the padding
    share where they cross, the padded path per length group over the packed path (the LSTM; the RNN
    and GRU where impl=auto takes it), the path impl=auto's own dispatch takes (RNN, GRU: the
    threshold rnnlab.backbones.recurrent.packed_above, length groups between the 64-step threshold
    and it; LSTM: length groups) and so its time over the packed one's and over the fastest path's.
    ``directions``: unidirectional (False) and/or bidirectional (True) layers."""
    rows = []
    for cell in GATES:
        for hidden in hiddens:
            for bidirectional in directions:
                backbone = RecurrentBackbone(cell=cell, hidden_size=hidden, bidirectional=bidirectional, input_size=hidden, impl="auto").to(device)
                rng = random.Random(0)
                points = []
                for share in shares:
                    lengths = lengths_with_padding(share, batch, steps, rng)  # on the CPU, as _run_fused passes them
                    x = torch.randn(batch, steps, hidden, device=device)

                    def run(path: Callable[..., Any]) -> Callable[[], None]:
                        def step() -> None:
                            outputs, final = path(x, lengths, None)
                            (outputs.sum() + sum(part.sum() for part in (final if isinstance(final, tuple) else (final,)))).backward()
                        return step

                    pick = auto_pick(backbone, x, lengths)
                    paths = {"padded": run(backbone._run_per_direction), "packed": run(backbone._run_packed)}
                    if cell == "lstm" or pick == "grouped" or device.type == "cuda":
                        paths["grouped"] = run(backbone._run_length_groups)
                    seconds = interleaved(paths, repeats, device)
                    point = {"padding": 1 - float(lengths.sum()) / (batch * steps), "padded_over_packed": seconds["padded"] / seconds["packed"],
                             "auto": pick, "auto_over_packed": seconds[pick] / seconds["packed"], "auto_over_best": seconds[pick] / min(seconds.values())}
                    if "grouped" in seconds:
                        point["grouped_over_packed"] = seconds["grouped"] / seconds["packed"]
                    points.append(point)
                ratios = [(point["padding"], point["padded_over_packed"]) for point in points]
                if ratios[0][1] > 1:
                    crossover = f"< {ratios[0][0]:.2f}"
                else:
                    crossover = next((f"{a + (1 - r) * (b - a) / (q - r):.2f}" for (a, r), (b, q) in zip(ratios, ratios[1:]) if r <= 1 < q), None)
                rows.append({"cell": cell, "H": hidden, "bidirectional": bidirectional, "points": points, "crossover": crossover,
                             "auto_threshold": None if cell == "lstm" or device.type == "cuda" else packed_above(cell, hidden, steps=steps), "auto_over_packed_max": max(p["auto_over_packed"] for p in points),
                             "auto_over_best_max": max(p["auto_over_best"] for p in points)})
    return {"batch": batch, "steps": steps, "threads": torch.get_num_threads(), "rows": rows, "auto_over_packed_max": max(r["auto_over_packed_max"] for r in rows)}


# -- decoding -------------------------------------------------------------------------------------


def decoding(overrides: list[str], repeats: int, device: torch.device) -> dict[str, Any]:
    """Tokens per second of greedy and beam-5 search against the teacher-forced forward pass, on
    one validation batch of an untrained seq2seq model. <eos> is banned and the length limit is
    the source length + 1 (the target's length on data=reverse), so that every pass produces the
    same tokens: an untrained model would otherwise stop at random lengths."""
    cfg = compose_config(*overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, data_spec=datamodule.spec).to(device).eval()
    batch = move_data_to_device(next(iter(datamodule.val_dataloader())), device)
    targets = int((batch.targets != -100).sum())
    model.banned[model.target_vocab.eos_id] = True
    produced: dict[str, int] = {}

    def search(beam: int) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                hypotheses = model.decode(batch, beam_size=beam, max_length_ratio=1.0, max_length_offset=1)
            produced[f"beam{beam}"] = sum(len(s) for s in hypotheses.sequences())
        return run

    def forced() -> None:
        with torch.no_grad():
            model(batch, 1.0)

    seconds = interleaved({"teacher_forced": forced, "beam1": search(1), "beam5": search(5)}, repeats, device)
    rates = {"teacher_forced": targets / seconds["teacher_forced"], "greedy": produced["beam1"] / seconds["beam1"], "beam5": produced["beam5"] / seconds["beam5"]}
    return {"config": " ".join(overrides), "batch": len(batch), "tokens_per_s": rates,
            "greedy_relative": rates["greedy"] / rates["teacher_forced"], "beam5_relative": rates["beam5"] / rates["teacher_forced"]}


# -- data path ------------------------------------------------------------------------------------


def data_path(overrides: list[str], batches: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Time to draw a whole epoch's batches from the training loader (sampler, a token budget's cut
    of the epoch, dataset, collate; the loader's own process) against the epoch's training steps,
    estimated from its first ``batches`` (a random sample: the sampler shuffles an epoch's batches).
    A whole epoch, since a token budget cuts all of an epoch's batches before its first."""
    cfg = compose_config(*overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, data_spec=datamodule.spec).to(device)
    loader = datamodule.train_dataloader()
    ready = [b for _, b in zip(range(batches), loader)]
    epochs = itertools.count(1)

    def draw_epoch() -> None:
        loader.batch_sampler.set_epoch(next(epochs))  # a new epoch: a new order, and a new cut
        for _batch in loader:
            pass

    seconds = interleaved({"data": draw_epoch, "steps": lambda: plain_loop(model, ready, device, batches, 1.0)}, repeats, device)
    per_epoch = {"data": seconds["data"], "steps": seconds["steps"] / len(ready) * len(loader)}
    return {"config": " ".join(overrides), "batches_per_epoch": len(loader), "seconds": per_epoch,
            "share_of_step": per_epoch["data"] / per_epoch["steps"]}


# -- start-up -------------------------------------------------------------------------------------


def train_run(overrides: list[str], run_dir: Path, workdir: Path) -> tuple[float, EventAccumulator]:
    """Run ``rnnlab-train overrides`` (no test, no progress bar) into ``run_dir``: the command's wall
    seconds and the run's TensorBoard events."""
    command = [sys.executable, "-m", "rnnlab.train", *overrides, "test=false", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - start
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return wall, events


def startup(overrides: list[str], repeats: int, workdir: Path) -> dict[str, Any]:
    """Seconds from starting ``rnnlab-train`` to the end of its first training step, as the run's
    Throughput callback logs it (throughput/startup_s), and the whole command's wall time."""
    values, walls = [], []
    for repeat in range(repeats):
        wall, events = train_run([*overrides, "trainer.max_steps=1"], workdir / f"startup{repeat}", workdir)
        walls.append(wall)
        values.append(events.Scalars("throughput/startup_s")[0].value)
    return {"config": " ".join(overrides), "to_first_step_s": statistics.median(values), "command_wall_s": statistics.median(walls)}


# -- freed memory ---------------------------------------------------------------------------------


def freed_memory(overrides: list[str], steps: int, repeats: int, device: torch.device, workdir: Path) -> dict[str, Any] | None:
    """rnnlab-train's training throughput (throughput/train_tokens_per_s: the median of its points
    after the first, every ``steps // 4`` steps) and its peak resident memory, with freed memory
    kept for reuse (keep_freed_memory=true, the default) and given back to the system (false, the
    C library's defaults). Each run is a process of its own: malloc's default, an mmap threshold
    that adapts to the blocks freed, cannot be restored inside one. None where the C library is
    not glibc (the setting changes nothing there) and on a GPU (training's tensors are not in
    host memory)."""
    if glibc() is None or device.type != "cpu":
        return None
    every = max(1, steps // 4)
    settings = {"kept": "keep_freed_memory=true", "given_back": "keep_freed_memory=false"}
    peaks: dict[str, list[float]] = {name: [] for name in settings}

    def tokens_per_s(name: str) -> Callable[[], float]:
        def run() -> float:
            overrides_of_run = [*overrides, settings[name], f"trainer.max_steps={steps}", f"trainer.log_every_n_steps={every}"]
            _, events = train_run(overrides_of_run, workdir / f"freed_memory_{name}{len(peaks[name])}", workdir)
            peaks[name].append(events.Scalars("resources/peak_rss_mib")[-1].value)
            return statistics.median(point.value for point in events.Scalars("throughput/train_tokens_per_s")[1:])
        return run

    rates = interleaved({name: tokens_per_s(name) for name in settings}, repeats, torch.device("cpu"), warmup=0)
    return {
        "config": " ".join(overrides),
        "steps": steps,
        "tokens_per_s": rates,
        "peak_rss_mib": {name: statistics.median(values) for name, values in peaks.items()},
        "kept_over_given_back": rates["kept"] / rates["given_back"],
    }


# -- scaling --------------------------------------------------------------------------------------


def activation_bytes(backbone: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one forward pass (each storage
    counted once: several ops may save the same tensor)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        backbone(x, lengths)
    return sum(storages.values())


def memory_returned_when_freed() -> bool:
    """Make glibc's malloc serve every new block of 64 KiB or more as its own mapping, given back to
    the system when freed (:func:`peak_memory_bytes` also trims the free heap before each call), so
    that the growth of the resident set size is the memory a call holds at its peak: otherwise
    freed memory stays resident and is reused unseen (all the more under rnnlab-train's
    keep_freed_memory, which the timings run with). False where this is not glibc. It changes
    allocation costs: call it only after every timing."""
    libc = glibc()
    if libc is None:
        return False
    # 65,536 mappings at most: glibc's default, which keep_freed_memory sets to none.
    settings = ((M_MMAP_MAX, 65536), (M_MMAP_THRESHOLD, 64 * 1024), (M_TRIM_THRESHOLD, 128 * 1024))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)


def peak_memory_bytes(run: Callable[[], Any], device: torch.device) -> int | None:
    """How far one call of ``run`` raises memory above where it stood before: CUDA's max allocated
    bytes on a GPU; else the peak resident set size (Linux's VmHWM, reset to the current RSS by
    writing 5 to /proc/self/clear_refs), meaningful after :func:`memory_returned_when_freed`.
    None where it cannot be read."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)  # free heap memory stops being resident, so that reusing it counts
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = resident_kib("VmHWM")
        run()
        return (resident_kib("VmHWM") - before) * 1024
    except OSError:
        return None


def scaling(axes: dict[str, list[int]], base: dict[str, int], tokens: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """For each cell, varying one of T, H, B at a time from ``base``: the time of forward + backward
    over ``tokens`` tokens (one "epoch"), the activation memory of one batch and the peak memory
    one forward + backward adds (:func:`peak_memory_bytes`, measured after all the timings)."""
    rows, steps = [], []
    for axis, values in axes.items():
        for cell in GATES:
            cases, shapes = {}, {}
            for value in values:
                shape = {**base, axis: value}
                backbone = RecurrentBackbone(cell=cell, hidden_size=shape["H"], input_size=shape["H"]).to(device)
                x = torch.randn(shape["B"], shape["T"], shape["H"], device=device)
                lengths = torch.full((shape["B"],), shape["T"], dtype=torch.long)
                cases[str(value)] = forward_backward(backbone, x, lengths)
                shapes[str(value)] = (shape, activation_bytes(backbone, x, lengths))
            seconds = interleaved(cases, repeats, device)
            for value, s in seconds.items():
                shape, memory = shapes[value]
                rows.append({"axis": axis, "cell": cell, **shape, "epoch_s": s * tokens / (shape["B"] * shape["T"]), "activation_mib": memory / 2**20})
                steps.append(cases[value])
    readable = device.type == "cuda" or memory_returned_when_freed()
    for row, step in zip(rows, steps):
        peak = peak_memory_bytes(step, device) if readable else None
        row["peak_mib"] = None if peak is None else peak / 2**20
    return {"tokens_per_epoch": tokens, "base": base, "peak_memory": "CUDA max allocated" if device.type == "cuda" else "peak RSS", "rows": rows}


def scaling_figure(result: dict[str, Any], path: Path) -> None:
    figure = Figure(figsize=(12, 3.6), layout="constrained")
    labels = {"T": "sequence length T", "H": "hidden size H", "B": "batch size B"}
    for axes, axis in zip(figure.subplots(1, 3), ("T", "H", "B")):
        for cell in GATES:
            points = [row for row in result["rows"] if row["axis"] == axis and row["cell"] == cell]
            axes.plot([row[axis] for row in points], [row["epoch_s"] for row in points], marker="o", label=cell)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel(labels[axis])
        axes.set_ylabel(f"seconds per {result['tokens_per_epoch']:,} tokens")
        axes.grid(True, which="both", linewidth=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(f"forward + backward, one layer; others fixed at {result['base']}")
    figure.savefig(path, dpi=100)


# -- the report -----------------------------------------------------------------------------------


def lookup(results: dict[str, Any], dotted: str) -> float | None:
    value: Any = results
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def meets(value: float | None, comparison: str, threshold: float) -> str:
    if value is None or math.isnan(value):
        return "not measured"
    ok = {">=": value >= threshold, "<": value < threshold, "<=": value <= threshold}[comparison]
    return "yes" if ok else "**no**"


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"


def report(results: dict[str, Any], plot: str | None) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python scripts/benchmark.py{' --quick' if results['quick'] else ''}` on {results['date']}: "
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "") + f", Python {m['python']}. "
        f"Measured matmul rate: {results['matmul_flops'] / 1e9:.1f} GFLOP/s. Every ratio is measured A/B interleaved "
        "in one process, median over the repeats; absolute times are for this machine only. Freed memory "
        + ("kept for reuse, as rnnlab-train's `keep_freed_memory=true` does." if m.get("freed_memory_kept") else "given back to the system (the C library's defaults).")
        + (" **--quick: tiny sizes and one repeat — a smoke run, not a measurement.**" if results["quick"] else ""),
        "",
        "## Targets",
        "",
    ]
    rows = []
    for key, (comparison, threshold, what) in TARGETS.items():
        value = lookup(results, key)
        rows.append((what, "—" if value is None else fmt(value, 4), f"{comparison} {threshold}", meets(value, comparison, threshold)))
    for name, section in results["data_path"].items():
        rows.append((f"data path, {name.replace('_', '-')} batches: collate + sampler time / step time, over an epoch", fmt(section["share_of_step"], 4),
                     "< 0.03", meets(section["share_of_step"], "<", 0.03)))
    for name, section in results.get("batching", {}).items():
        for case in ("bucketed", "token_budget"):
            rows.append((f"{name}: {case} padding ratio", fmt(section[f"{case}_padding"], 4), "<= 0.03", meets(section[f"{case}_padding"], "<=", 0.03)))
        for case, key in (("bucketed", "bucketed_ratio"), ("token-budget", "throughput_ratio")):
            rows.append((f"{name}: {case} / shuffled real tokens per second (padding alone bounds it at {section['padding_bound']:.2f})",
                         fmt(section[key], 4), ">= 3", meets(section[key], ">=", 3.0)))
    lines += [markdown_table(("measure", "value", "target", "met"), rows), ""]

    o = results["overhead"]
    lines += ["## Framework overhead", "", f"`{o['config']}`, {o['batches']} training batches, median seconds:", "",
              markdown_table(("loop", "seconds", "real tokens/s"), [(k, fmt(v), fmt(o["tokens_per_s"][k])) for k, v in o["seconds"].items()]), ""]
    for name, section in results.get("batching", {}).items():
        lines += [f"## Batching: {name}", "", f"`{section['config']}`: padding ratio over an epoch, real tokens per second of training steps "
                  f"(token budget: `data.max_tokens={section['max_tokens']}`, a shuffled batch's mean computed tokens; at most 8 × the batch size per batch). "
                  f"The least any batches of this fixed size can pad (the whole split sorted by length): {section['fixed_size_floor_padding']:.3g}. "
                  f"The shuffled batches compute {section['padding_bound']:.2f} × their real tokens: removing all padding at the same cost per "
                  "computed token would raise their real tokens per second that much, and no more.", "",
                  markdown_table(("batches", "padding", "real tokens/s"), [(k, fmt(section[f"{k}_padding"]), fmt(section["tokens_per_s"][k])) for k in section["tokens_per_s"]]), ""]
        if "bucketed_over_shuffled_impl_fused" in section:
            lines += ["shuffled_impl_fused: the shuffled batches with `model.backbone.impl=fused`, each run as one padded batch; every other row "
                      "runs impl=auto, which splits a mostly padded LSTM batch into groups of similar lengths. Against those, bucketed batches "
                      f"run at {section['bucketed_over_shuffled_impl_fused']:.2f} × and the token budget at "
                      f"{section['token_budget_over_shuffled_impl_fused']:.2f} × the real tokens per second.", ""]
    k = results["kernels"]
    kernel_rows = [(r["cell"], f"{r['B']}×{r['T']}×{r['H']}", r["impl"], fmt(r["tokens_per_s"]), f"{r['flops'] / 1e9:.2f}", f"{r['share_of_matmul']:.2f}")
                   for r in k["rows"] if "ratio" not in r]
    ratios = [(r["cell"], f"{r['B']}×{r['T']}×{r['H']}", fmt(r["ratio"])) for r in k["rows"] if "ratio" in r]
    lines += ["## Recurrent kernels", "", "One layer, forward + backward, all sequences full length:", "",
              markdown_table(("cell", "B×T×H", "impl", "tokens/s", "GFLOP/s", "share of matmul rate"), kernel_rows), "",
              markdown_table(("cell", "B×T×H", "reference / fused time"), ratios), ""]
    b = results["bidirectional"]
    lines += ["Bidirectional LSTM over {sequences} sequences of log-normal lengths (padding {naive:.0%} in shuffled batches of {batch}, "
              "{bucketed:.1%} bucketed), H = {hidden}, one forward + backward pass over all:".format(
                  sequences=b["sequences"], naive=b["naive_padding"], batch=b["batch"], bucketed=b["bucketed_padding"], hidden=b["hidden"]), "",
              markdown_table(("path", "seconds", "relative to packed"), [(k, fmt(v), fmt(b["relative_to_packed"][k])) for k, v in b["seconds"].items()]), ""]
    auto = results["auto"]
    for a in [*auto["by_threads"], auto["long"]]:
        shares = [f"{point['padding']:.0%}" for point in a["rows"][0]["points"]]
        threads = f"{a['threads']} thread{'s' if a['threads'] > 1 else ''}"
        title = f"{threads}, long sequences (T = {a['steps']})" if a is auto["long"] else threads
        lines += [f"## impl=auto: padded, packed or length groups, {title}", "",
                  f"One layer, B = {a['batch']}, T = {a['steps']}, {threads}, forward + backward with the final state in the loss. "
                  "Each cell: rnnlab's padded path (impl=fused on CPU, impl=auto on a GPU) / torch's packed path at rising padding, the padding "
                  "where they cross (— if they do not), the threshold above which impl=auto runs packed at this T (the LSTM: never, it runs "
                  "length groups; the RNN and GRU run them between the 64-step threshold and this one; on a GPU: never, it runs "
                  "the padded path), and the time of the path "
                  "impl=auto's dispatch takes / the packed path's (<= 1: never slower than "
                  "nn.* on packed sequences) and / the fastest path's (1: auto picked the fastest one), worst point:", "",
                  markdown_table(("cell", "H", "directions", *(f"padded/packed at {x}" for x in shares), "crossover", "auto packs above",
                                  "auto / packed, worst", "auto / fastest, worst"),
                                 [(r["cell"], str(r["H"]), "2" if r["bidirectional"] else "1", *(fmt(pt["padded_over_packed"], 2) for pt in r["points"]),
                                   r["crossover"] or "—", "never" if r["auto_threshold"] is None else f"{r['auto_threshold']:.2f}",
                                   fmt(r["auto_over_packed_max"], 3), fmt(r["auto_over_best_max"], 3))
                                  for r in a["rows"]]), "",
                  "Length groups (the padded path on each group of similar lengths, rnnlab.backbones.recurrent.length_groups) / "
                  "torch's packed path, for the LSTM and wherever impl=auto splits an RNN or GRU batch on a CPU, for every cell on a GPU (— elsewhere):", "",
                  markdown_table(("cell", "H", "directions", *(f"groups/packed at {x}" for x in shares)),
                                 [(r["cell"], str(r["H"]), "2" if r["bidirectional"] else "1",
                                   *(fmt(pt["grouped_over_packed"], 2) if "grouped_over_packed" in pt else "—" for pt in r["points"]))
                                  for r in a["rows"] if any("grouped_over_packed" in pt for pt in r["points"])]), ""]
    d = results["decoding"]
    lines += ["## Decoding", "", f"`{d['config']}`, one validation batch of {d['batch']}, untrained model:", "",
              markdown_table(("pass", "tokens/s"), [(k, fmt(v)) for k, v in d["tokens_per_s"].items()]), "",
              f"Greedy: {d['greedy_relative']:.2f} × the teacher-forced rate; beam 5: {d['beam5_relative']:.2f} ×.", ""]
    lines += ["## Data path", "", "Drawing an epoch's batches (sampler, a token budget's cut of the epoch, dataset, collate) against the "
              "epoch's training steps (the time of its first batches, scaled to all of them):", "",
              markdown_table(("batches", "config", "per epoch", "drawing s", "steps s", "share"),
                             [(name.replace("_", "-"), f"`{p['config']}`", str(p["batches_per_epoch"]), fmt(p["seconds"]["data"]), fmt(p["seconds"]["steps"]),
                               f"{p['share_of_step']:.1%}") for name, p in results["data_path"].items()]), ""]
    s = results["startup"]
    lines += ["## Start-up", "", f"`rnnlab-train {s['config']}`: {s['to_first_step_s']:.1f} s from the command to the end of the first "
              f"training step (the whole one-step command: {s['command_wall_s']:.1f} s).", ""]
    f = results.get("freed_memory")
    if f:
        lines += ["## Freed memory", "", f"`rnnlab-train {f['config']}`, {f['steps']} training steps, real tokens per second (the median of "
                  "its throughput points after the first) and peak resident memory, each setting in processes of its own, alternating:", "",
                  markdown_table(("keep_freed_memory", "real tokens/s", "peak RSS MiB"),
                                 [("true (kept)" if name == "kept" else "false (given back)", fmt(rate), fmt(f["peak_rss_mib"][name]))
                                  for name, rate in f["tokens_per_s"].items()]), "",
                  f"Kept / given back: {f['kept_over_given_back']:.2f} × the real tokens per second.", ""]
    sc = results["scaling"]
    lines += ["## Scaling", "", f"Seconds per {sc['tokens_per_epoch']:,} tokens (forward + backward, one fused layer), activation "
              "memory of one batch (the tensors autograd saves) and peak memory, varying one of T, H, B:", ""]
    if plot:
        lines += [f"![scaling]({plot})", ""]
    lines += [f"Peak MiB: how far one forward + backward raised the {sc['peak_memory']} above where it stood before.", "",
              markdown_table(("varied", "cell", "B", "T", "H", "s / epoch", "activations MiB", "peak MiB"),
                             [(r["axis"], r["cell"], str(r["B"]), str(r["T"]), str(r["H"]), fmt(r["epoch_s"]), fmt(r["activation_mib"]),
                               "—" if r["peak_mib"] is None else fmt(r["peak_mib"])) for r in sc["rows"]]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat: a smoke run under a minute")
    parser.add_argument("--out", type=Path, default=REPO, help="folder for BENCHMARKS.md, benchmarks.json and the scaling plot")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    # A GPU's results beside the CPU's: BENCHMARKS-cuda.md, benchmarks-cuda.json, benchmarks_scaling-cuda.png.
    suffix = "" if device.type == "cpu" else f"-{device.type}"
    quick = args.quick
    repeats = 1 if quick else 5
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    # As rnnlab-train does by default: every timing in this process runs with freed memory kept.
    freed_memory_kept = bool(compose_config().keep_freed_memory) and keep_freed_memory()
    tiny = ["data=keywords", "data.num_train=256", "data.num_val=32", "data.num_test=32", "model.backbone.hidden_size=16", "model.backbone.embedding_dim=16"]
    results: dict[str, Any] = {"quick": quick, "date": time.strftime("%Y-%m-%d"), "machine": {**machine(device), "freed_memory_kept": freed_memory_kept}}
    clock = time.perf_counter()

    def done(section: str) -> None:
        print(f"benchmark: {section} done at {time.perf_counter() - clock:.0f} s", file=sys.stderr, flush=True)
        # The sections so far, so that a stopped run keeps them; after the last, the whole JSON.
        (args.out / f"benchmarks{suffix}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        results["matmul_flops"] = matmul_rate(device, 256 if quick else 1024, repeats)
        done("matmul_flops")
        classifier = tiny if quick else ["data=bbc_news", "model.backbone.hidden_size=128", "model.backbone.embedding_dim=128", "data.batch_size=32"]
        # A difference of a few per cent: more repeats than elsewhere.
        results["overhead"] = overhead(classifier, 8 if quick else 30, 1 if quick else 13, device, work)
        done("overhead")
        results["batching"] = {}
        # BBC News as the recipe cuts it (400 tokens: shuffled batches pad only 15 %) and whole (its real length distribution).
        real = {"bbc_news": ["data=bbc_news", "data.batch_size=32"],
                "bbc_news_whole_articles": ["data=bbc_news", "data.batch_size=32", "data.max_length=null"],
                "brown_pos": ["data=brown_pos", "model=tagger", "data.batch_size=32"]}
        for name, overrides in ({"keywords": tiny} if quick else real).items():
            if name == "brown_pos" and not (REPO / "data/brown").exists():
                continue
            # Whole articles: shuffled batches of up to 32 x 4,976 steps, so fewer of them.
            results["batching"][name] = batching(overrides, 8 if quick else 16 if name == "bbc_news_whole_articles" else 30, repeats, device)
            done(f"batching {name}")
        sizes = [(8, 16, 32)] if quick else [(32, 64, 128), (64, 64, 256), (32, 128, 512)]
        results["kernels"] = kernels(sizes, repeats, device, results["matmul_flops"])
        done("kernels")
        results["bidirectional"] = bidirectional_paths(32 if quick else 512, 16 if quick else 32, 32 if quick else 128, repeats, device, 60 if quick else 400)
        done("bidirectional")
        results["auto"] = auto_sections([64] if quick else [64, 128, 256, 512], [0.2, 0.7] if quick else [0.05, 0.25, 0.45, 0.6, 0.75, 0.85, 0.95],
                                        8 if quick else 32, 16 if quick else 64, 256 if quick else 1024, repeats, device)
        done("auto")
        seq2seq = ["data=reverse", "model=seq2seq", "data.num_train=64", "data.num_val=64", "data.num_test=8"]
        results["decoding"] = decoding(seq2seq + (["model.backbone.hidden_size=16", "model.decoder.hidden_size=16"] if quick else ["data.eval_batch_size=64"]), repeats, device)
        done("decoding")
        # Fixed-size bucketed batches (the classifier above), and a token budget (the batching section's, where it ran).
        data_cases = {"fixed_size": classifier}
        budget_case = "keywords" if quick else "brown_pos"
        if budget_case in results["batching"]:
            data_cases["token_budget"] = (tiny if quick else real[budget_case]) + results["batching"][budget_case]["token_budget_overrides"]
        results["data_path"] = {name: data_path(overrides, 8 if quick else 30, repeats, device) for name, overrides in data_cases.items()}
        done("data_path")
        results["startup"] = startup(tiny + ["trainer.enable_model_summary=false"], 1 if quick else 3, work)
        done("startup")
        results["freed_memory"] = freed_memory(classifier, 8 if quick else 40, repeats, device, work)
        done("freed_memory")
        axes = {"T": [16, 32], "H": [16, 32], "B": [4, 8]} if quick else {"T": [16, 32, 64, 128, 256], "H": [64, 128, 256, 512], "B": [8, 16, 32, 64, 128]}
        base = {"B": 4, "T": 16, "H": 16} if quick else {"B": 32, "T": 64, "H": 128}
        results["scaling"] = scaling(axes, base, 4096 if quick else 65536, repeats, device)
        done("scaling")
    plot = f"benchmarks_scaling{suffix}.png"
    scaling_figure(results["scaling"], args.out / plot)
    (args.out / f"BENCHMARKS{suffix}.md").write_text(report(results, plot), encoding="utf-8")
    print(f"wrote {args.out / f'BENCHMARKS{suffix}.md'}, {args.out / f'benchmarks{suffix}.json'}, {args.out / plot}")


if __name__ == "__main__":
    main()
