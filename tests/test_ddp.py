"""Data parallel training: ``data.batch_size`` is the global batch, divided across the processes.

The sampler tests pass ``num_replicas``/``rank`` explicitly (no process group). The one CLI test
trains the same tiny classifier with ``trainer=ddp_cpu`` (2 gloo processes) and with one process
and checks that they take the same steps to the same metrics, and that the DDP run writes its
run directory once.
"""

from __future__ import annotations

import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES, cli_env, describe, last_line, run_cli
from rnnlab.data.sampler import BucketBatchSampler
from rnnlab.errors import UserError


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 60) for _ in range(n)]


@pytest.mark.parametrize(("shuffle", "n"), [(True, 200), (True, 203), (False, 203)])
def test_two_ranks_together_take_the_single_process_batch_of_every_step(shuffle: bool, n: int) -> None:
    """For each step, rank 0's and rank 1's batches are the two halves of the batch one process
    takes at that step (interleaved: the batch is length-sorted, so both halves span its lengths)."""
    lengths = _lengths(n)
    options = dict(batch_size=16, shuffle=shuffle, pool_size=4, seed=3)
    single = BucketBatchSampler(lengths, **options)
    ranks = [BucketBatchSampler(lengths, num_replicas=2, rank=rank, **options) for rank in (0, 1)]
    for epoch in (0, 1):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        whole = list(single)
        shares = [list(sampler) for sampler in ranks]
        assert [len(s) for s in shares] == [len(s) for s in ranks] == [len(whole)] * 2
        for batch, first, second in zip(whole, *shares):
            assert sorted(first + second) == sorted(batch)
            assert (first, second) == (batch[0::2], batch[1::2])
            assert len(first) - len(second) in (0, 1)
        assert sorted(i for s in shares for b in s for i in b) == list(range(n))  # nothing repeated


def test_odd_global_batch_is_a_user_error_under_ddp() -> None:
    with pytest.raises(UserError, match=r"data.batch_size=9 .*divisible by the number of processes \(2\)"):
        list(BucketBatchSampler(_lengths(50), batch_size=9, num_replicas=2, rank=0))


# -- the command line ------------------------------------------------------------------------

#: The same tiny, dropout-free classifier for both runs (dropout draws differ between processes).
DDP_OVERRIDES: tuple[str, ...] = (
    "data=keywords",
    "data.num_train=256",
    "data.num_val=61",  # odd: the ranks' shares of the last val/test batch differ by one example
    "data.num_test=63",
    *TINY_OVERRIDES,  # data.batch_size=8: the global batch in both runs
    "model.backbone.dropout=0",
    "model.backbone.embedding_dropout=0",
    "model.head_dropout=0",
    "model.optimizer.lr=0.01",  # large steps: a gradient that differs from one process's shows
    "trainer.max_epochs=2",
    "trainer.num_sanity_val_steps=0",
)


def _event_files(run_dir: Path) -> list[Path]:
    """Every TensorBoard event file under ``run_dir``: named ``events.out.tfevents.<time>.<host>.<pid>.<n>``."""
    return sorted(run_dir.rglob("events.out.tfevents*"))


def test_ddp_cpu_matches_a_single_process_with_the_same_global_batch(tmp_path: Path) -> None:
    """trainer=ddp_cpu (2 gloo processes, one with DataLoader workers on) against trainer=cpu: the
    same number of steps of the global batch 8, the same val/test metrics to float noise, and one
    run directory written once by rank 0."""
    runs = {"ddp": ("trainer=ddp_cpu", "data.num_workers=1"), "single": ("trainer=cpu",)}
    env = cli_env(OMP_NUM_THREADS="1")  # two cores: one thread per process

    def train(name: str) -> subprocess.CompletedProcess[str]:
        return run_cli("train", *DDP_OVERRIDES, *runs[name], f"hydra.run.dir={tmp_path / name}", cwd=tmp_path, env=env)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(runs, pool.map(train, runs)))

    metrics = {}
    for name, result in results.items():
        run_dir = tmp_path / name
        assert result.returncode == 0, describe(result)
        assert "Traceback" not in result.stderr, describe(result)
        assert result.stdout.count(str(run_dir)) == 1 and last_line(result.stdout) == str(run_dir), describe(result)
        metrics[name] = json.loads((run_dir / "metrics.json").read_text())
        assert metrics[name]["status"] == "completed"
        assert json.loads((run_dir / "run_info.json").read_text())["status"] == "completed"
        assert (run_dir / "checkpoints/best.ckpt").is_file()
        events = _event_files(run_dir)
        assert events and {path.parent for path in events} == {run_dir / "tensorboard"}, events
        assert len({path.name.split(".")[-2] for path in events}) == 1, events  # all from one process
    # One set of events: rank 0's, as many files as the single process writes (fit, test, hparams).
    assert len(_event_files(tmp_path / "ddp")) == len(_event_files(tmp_path / "single"))
    # One run directory each: the second DDP process made none of its own (its cwd is tmp_path).
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ddp", "single"]
    assert [path.name for path in (tmp_path / "ddp").glob(".hydra*")] == [".hydra"]

    ddp, single = metrics["ddp"], metrics["single"]
    assert ddp["global_step"] == single["global_step"] == 2 * 256 // 8  # two epochs of global batch 8
    assert ddp["best_epoch"] == single["best_epoch"]
    for key in ("val/loss", "test/loss"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-4), key
    for key in ("val/acc", "test/acc"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key
