"""``hydra/launcher=submitit_local`` and ``submitit_slurm``: the published submitit launchers with
what rnnlab sweeps need on top.

- local: submitit's local executor starts every job of a batch at once; this launcher runs them
  in rounds of ``n_jobs`` (and each job takes cores // n_jobs threads: rnnlab.sweeps.jobs).
- slurm: a job that SLURM preempts or times out is requeued by submitit (``max_num_timeout``
  times) and resumes from its own ``checkpoints/last.ckpt`` (``resume=true``), in its own job
  directory.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules before registering them
# in sys.modules, where dataclasses would look string annotations up.
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher


class SubmititLocalLauncher(LocalLauncher):
    def __init__(self, n_jobs: int = 2, **params: Any) -> None:
        if int(n_jobs) < 1:
            raise ValueError(f"hydra.launcher.n_jobs must be >= 1; got {n_jobs}")
        super().__init__(**params)
        self.n_jobs = int(n_jobs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns: list[JobReturn] = []
        for start in range(0, len(job_overrides), self.n_jobs):
            returns += super().launch(job_overrides[start : start + self.n_jobs], initial_job_idx + start)
        return returns


class SubmititSlurmLauncher(SlurmLauncher):
    def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
        """Called by submitit when SLURM preempts the job or its time runs out: requeue it so that
        it continues from its last checkpoint."""
        resumed = [override for override in sweep_overrides if not override.startswith("resume=")] + ["resume=true"]
        return super().checkpoint(resumed, *args, **kwargs)


@dataclass
class SubmititLocalConf(LocalQueueConf):
    """The schema of conf/hydra/launcher/submitit_local.yaml: submitit's plus ``n_jobs``.

    Hydra checks a config file against the structured config of the same name, so ours must
    replace the plugin's (Hydra imports this module after the submitit plugin's).
    """

    _target_: str = "hydra_plugins.rnnlab_sweeps.submitit_launchers.SubmititLocalLauncher"
    n_jobs: int = 2


ConfigStore.instance().store(group="hydra/launcher", name="submitit_local", node=SubmititLocalConf, provider="rnnlab")
