"""One job of a multirun sweep: its share of the CPU, the GPU it leases, what it may not do.

Parallel launchers start several ``rnnlab-train`` jobs at once on one machine. Left alone, each
job would start as many torch threads as the machine has cores, and every GPU job would use
device 0. The job fixes both for itself, from its own Hydra config, so this works the same under
any launcher (joblib reuses its worker processes; submitit starts fresh ones):

- threads: ``sweep_job.threads`` (``auto``: the cores this process may use // jobs at once);
- devices: with a pool (``sweep_job.device_pool``), the job holds an exclusive lock on one pool
  entry for as long as it runs (an ``flock`` per device in ``sweep_job.device_locks``); a job
  that finds every device taken waits for one. Locks die with their process, so a killed job
  never keeps a device. On CPU a pool is only recorded, which is how tests simulate K GPUs.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, open_dict

from rnnlab.errors import UserError

#: Launchers (class names ending so) whose jobs a cluster scheduler starts, one process per task:
#: there DDP works (SLURM starts every rank itself), so a sweep may train with DDP.
SCHEDULED_LAUNCHERS = ("SlurmLauncher",)


@dataclass
class SweepJob:
    """Where a multirun job sits: its number, its sweep, how many jobs run beside it."""

    number: int
    sweep_dir: Path
    output_dir: Path
    launcher: str
    concurrency: int
    overrides: list[str] = field(default_factory=list)

    @property
    def scheduled(self) -> bool:
        return self.launcher.endswith(SCHEDULED_LAUNCHERS)


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, e.g. a SLURM cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def launcher_concurrency(launcher: DictConfig) -> int:
    """Jobs the launcher runs at once: ``n_jobs`` (joblib's rule: -1 all cores, -2 all but one), else 1."""
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return max(1, n_jobs if n_jobs > 0 else usable_cpus() + 1 + n_jobs)


def current_sweep_job() -> SweepJob | None:
    """The running multirun job, or None for a single run (or outside Hydra)."""
    if not HydraConfig.initialized():
        return None
    hydra_config = HydraConfig.get()
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return SweepJob(
        number=int(hydra_config.job.num),
        sweep_dir=Path(str(hydra_config.sweep.dir)),
        output_dir=Path(str(hydra_config.runtime.output_dir)),
        launcher=str(hydra_config.launcher.get("_target_", "")),
        concurrency=launcher_concurrency(hydra_config.launcher),
        overrides=[str(override) for override in hydra_config.overrides.task],
    )


def trains_on_gpu(trainer: DictConfig) -> bool:
    accelerator = str(trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def uses_ddp(trainer: DictConfig) -> bool:
    """True for a trainer that would start several processes (a ddp strategy or several devices)."""
    devices = trainer.get("devices", 1)
    several = isinstance(devices, (list, ListConfig)) and len(devices) > 1
    several = several or (isinstance(devices, int) and (devices > 1 or (devices == -1 and trains_on_gpu(trainer))))
    return "ddp" in str(trainer.get("strategy", "auto")) or several or int(trainer.get("num_nodes", 1)) > 1


def check_sweep_trainer(trainer: DictConfig, job: SweepJob) -> None:
    """DDP inside a sweep only where a scheduler starts the ranks (submitit_slurm)."""
    if job.scheduled or not uses_ddp(trainer):
        return
    raise UserError(
        "trainer=ddp/ddp_cpu (or several devices) cannot run inside a sweep (-m) started on this machine: "
        "Lightning starts the other ranks by re-running the command line, which would start the sweep again. "
        "Train each DDP configuration as its own rnnlab-train run, or sweep with hydra/launcher=submitit_slurm "
        "(SLURM starts one process per GPU); in a local sweep use one device per job and let "
        "hydra/launcher=joblib or submitit_local run jobs in parallel"
    )


def device_pool(setting: Any, trainer: DictConfig, job: SweepJob) -> list[int] | None:
    """The device indices jobs lease from: ``auto`` = every visible GPU when jobs run in parallel on GPUs."""
    if setting is None or setting == "none":
        return None
    if setting == "auto":
        if job.concurrency < 2 or job.scheduled or not trains_on_gpu(trainer):
            return None
        return list(range(torch.cuda.device_count())) or None
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        pool = list(range(setting))
    elif isinstance(setting, (list, tuple, ListConfig)) and setting and all(isinstance(d, int) for d in setting):
        pool = [int(d) for d in setting]
    else:
        raise UserError(f"sweep_job.device_pool must be auto, null, a number of devices or a list of device indices; got {setting!r}")
    visible = torch.cuda.device_count()
    if trains_on_gpu(trainer) and any(not 0 <= d < visible for d in pool):
        raise UserError(f"sweep_job.device_pool={setting!r} names GPUs this machine does not show: it shows {visible} (indices 0 to {visible - 1})")
    return pool


class DeviceLease:
    """An exclusive lock on one device of ``pool`` among the processes sharing ``lock_dir``.

    ``acquire`` tries every device once (starting at ``first`` to spread jobs), then waits and
    tries again until one is free. ``record`` is what the job writes into run_info.json; the job
    stamps ``used_until`` in it when its work ends, while it still holds the lock, so the recorded
    intervals of one device never overlap.
    """

    def __init__(self, pool: Sequence[int], lock_dir: Path, first: int = 0, poll_seconds: float = 0.2) -> None:
        self.pool = list(pool)
        self.lock_dir = lock_dir
        self.first = first
        self.poll_seconds = poll_seconds
        self.device: int | None = None
        self.record: dict[str, Any] = {}
        self._handle: IO[str] | None = None

    def acquire(self) -> int:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        waited_since = time.time()
        while True:
            for offset in range(len(self.pool)):
                device = self.pool[(self.first + offset) % len(self.pool)]
                handle = open(self.lock_dir / f"device_{device}.lock", "a+", encoding="utf-8")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                self._handle, self.device = handle, device
                self.record = {"id": device, "pool": self.pool, "waited_seconds": round(time.time() - waited_since, 3), "acquired": time.time()}
                return device
            time.sleep(self.poll_seconds)

    def release(self) -> None:
        if self._handle is None:
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


@dataclass
class JobPlacement:
    """What a sweep job was given: written to run_info.json as ``sweep_job``."""

    number: int
    concurrency: int
    threads: int | None
    device: dict[str, Any] | None = None

    def as_record(self) -> dict[str, Any]:
        return {"number": self.number, "concurrency": self.concurrency, "threads": self.threads, "device": self.device}


def job_threads(setting: Any, job: SweepJob) -> int | None:
    """Torch threads for the job: ``auto`` shares the cores among the jobs running at once."""
    if setting is None:
        return None
    if setting == "auto":
        return max(1, usable_cpus() // job.concurrency) if job.concurrency > 1 else None
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        return setting
    raise UserError(f"sweep_job.threads must be auto, null or a positive number; got {setting!r}")


def use_standard_start_method() -> None:
    """Start the job's child processes (DataLoader workers) the platform's standard way.

    joblib's worker processes set their default start method to loky's, whose processes torch's
    DataLoader cannot start ("'Process' object has no attribute 'env'"); the job's own children
    need no loky features, and loky starts its workers from the parent process, not from here.
    """
    if multiprocessing.get_start_method(allow_none=True) not in multiprocessing.get_all_start_methods():
        multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)


@contextmanager
def placed(cfg: DictConfig, job: SweepJob) -> Iterator[JobPlacement]:
    """Set this job's threads and lease its device for the duration of the block.

    On GPUs the leased index replaces ``trainer.devices`` (``[i]``: CUDA_VISIBLE_DEVICES cannot
    be changed in a reused worker process whose CUDA is already initialised; an index can).
    """
    settings = cfg.get("sweep_job") or {}
    check_sweep_trainer(cfg.trainer, job)
    use_standard_start_method()
    threads = job_threads(settings.get("threads", "auto"), job)
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the job's child processes
    placement = JobPlacement(job.number, job.concurrency, threads)
    pool = device_pool(settings.get("device_pool", "auto"), cfg.trainer, job)
    if pool is None:
        yield placement
        return
    lock_dir = Path(str(settings.get("device_locks") or job.sweep_dir / ".device_locks"))
    lease = DeviceLease(pool, lock_dir, first=job.number % len(pool))
    device = lease.acquire()
    try:
        if trains_on_gpu(cfg.trainer):
            with open_dict(cfg):
                cfg.trainer.devices = [device]
        placement.device = lease.record
        yield placement
    finally:
        lease.record["used_until"] = time.time()
        lease.release()
