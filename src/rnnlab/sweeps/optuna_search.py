"""Optuna hyperparameter search as a Hydra sweeper: resumable, pruning, failure-tolerant.

The sweeper (``hydra/sweeper=optuna``, plugin class in ``hydra_plugins.rnnlab_sweeps``) asks
Optuna for ``n_jobs`` trials at a time, launches them as ordinary sweep jobs (job number = trial
number, so job directory ``<sweep dir>/<n>`` is trial n) and tells Optuna each job's outcome from
its metrics.json: the optimized metric (completed), pruned, or failed (an exception, a diverged
loss, a job that never wrote its record).

- Storage: ``sqlite:///<sweep dir>/optuna.db`` by default, any SQLAlchemy URL otherwise (e.g.
  PostgreSQL, to run the same search from several machines). The search directory is named after
  the study, so re-running an interrupted search opens the same study and continues: ``n_trials``
  counts the study's finished trials (complete, pruned, failed), not the trials of one command.
- Interrupted trials: the sweeper keeps a heartbeat for every trial it launched. A trial whose
  sweeper died (killed, machine lost) stops beating; the next sweeper on the study fails it and
  queues one retry with the same parameters. Ctrl-C does that at once.
- Pruning: the job reports ``optimized_metric`` after every validation to its trial
  (:class:`OptunaPruning`) and stops early when the study's pruner says so.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import UserError, check_choice
from rnnlab.sweeps.summary import JobResult

log = logging.getLogger(__name__)

#: The sweeper's class, as jobs see it in their hydra.sweeper config.
SWEEPER_CLASS = "hydra_plugins.rnnlab_sweeps.optuna_sweeper.OptunaSweeper"
DIRECTIONS = ("minimize", "maximize")
#: metrics.json ``optimized_mode`` -> Optuna direction.
MODE_DIRECTIONS = {"min": "minimize", "max": "maximize"}


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """The study's SQLAlchemy URL: ``storage``, or an SQLite file in the sweep directory."""
    return str(storage) if storage else f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"


def open_storage(url: str, heartbeat_seconds: int | None = None, max_retry: int = 1) -> Any:
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # parallel jobs write too
    if heartbeat_seconds is None:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=heartbeat_seconds,
        grace_period=2 * heartbeat_seconds,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
    )


def distribution(override: Override) -> Any:
    """An Optuna distribution from a Hydra sweep override: choice(...), range(...), interval(...),
    with ``tag(log, interval(...))`` for a log scale."""
    import optuna.distributions as dist

    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        choices = [choice for choice in override.sweep_iterator(transformer=lambda x: x)]
        if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in choices):
            raise UserError(f"search space {key}: choice() values must be numbers, strings or booleans")
        return dist.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(x, int) for x in (start, stop, step)):
            return dist.IntDistribution(int(start), int(stop) - 1, step=int(step))  # range() excludes stop
        return dist.FloatDistribution(float(start), float(stop) - float(step), step=float(step))  # Optuna's high is included
    if isinstance(value, IntervalSweep):  # Hydra makes interval bounds floats
        return dist.FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
    raise UserError(f"search space {key}: use choice(...), range(...) or interval(...); got {override.input_line}")


def search_space(params: dict[str, Any] | None, arguments: Sequence[str], parser: OverridesParser) -> tuple[dict[str, Any], list[str]]:
    """(Optuna distributions by override key, fixed overrides) from ``hydra.sweeper.params`` and
    the command line; a command-line sweep replaces the same key's entry in ``params``."""
    lines = {key: f"{key}={value}" for key, value in (params or {}).items()}
    for override in parser.parse_overrides(list(arguments)):
        lines[override.get_key_element()] = override.input_line
    distributions, fixed = {}, []
    for override in parser.parse_overrides(list(lines.values())):
        if override.is_sweep_override():
            distributions[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    if not distributions:
        raise UserError("hydra/sweeper=optuna: the search space is empty; set hydra.sweeper.params or give sweep overrides such as model.optimizer.lr='interval(1e-4,1e-2)'")
    return distributions, fixed


def trial_overrides(trial: Any, fixed: Sequence[str]) -> list[str]:
    return [*fixed, *(f"{key}={value}" for key, value in trial.params.items())]


@dataclass
class Outcome:
    """How one trial ended, read from its job's return and metrics.json."""

    state: str  # complete | pruned | fail
    value: float | None = None
    status: str = "missing"
    error: str | None = None


def read_outcome(job_return: JobReturn | None, job_dir: Path) -> Outcome:
    """The trial's outcome from its job; ``job_return`` None: the job of an earlier sweeper."""
    if job_return is not None and job_return.status == JobStatus.FAILED:
        exc = job_return._return_value  # the exception; .return_value would re-raise it
        return Outcome("fail", status="failed", error=f"{type(exc).__name__}: {exc}")
    try:
        metrics = json.loads((job_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Outcome("fail", error="the job wrote no metrics.json")
    job = JobResult(job_dir.name, job_dir, [], metrics)
    if job.status == "pruned":
        return Outcome("pruned", status="pruned")
    metric = metrics.get("optimized_metric")
    value = job.value(metric) if metric else None
    if job.status == "completed" and value is not None:
        return Outcome("complete", value=value, status="completed")
    error = metrics.get("error") or (f"{metric} was not finite or not logged" if job.status == "completed" else job.status)
    return Outcome("fail", status=job.status, error=str(error))


class Heartbeat:
    """Beat for every trial this sweeper has launched and not yet told, so that other sweepers of
    the study (and this one, re-run after a kill) can tell live trials from dead ones."""

    def __init__(self, storage: Any, trial_ids: Sequence[int], seconds: float) -> None:
        self.storage, self.trial_ids, self.seconds = storage, list(trial_ids), seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # a busy database: beat again next time
                    log.warning(f"heartbeat of trial id {trial_id} not recorded: {exc}")
            if self._stop.wait(self.seconds):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def consecutive_runs(trials: Sequence[Any]) -> Iterator[list[Any]]:
    """Split trials into runs of consecutive numbers: a launch numbers its jobs from one start.

    (Trials are consecutive unless another process asks trials of the same study meanwhile.)"""
    run: list[Any] = []
    for trial in trials:
        if run and trial.number != run[-1].number + 1:
            yield run
            run = []
        run.append(trial)
    if run:
        yield run


class OptunaSearch:
    """The search loop behind the Hydra plugin; every option is a ``hydra.sweeper.*`` key."""

    def __init__(
        self,
        study_name: str,
        storage: str | None,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: DictConfig | None,
        pruner: DictConfig | None,
        params: DictConfig | None,
        heartbeat_seconds: int,
        max_retry: int,
    ) -> None:
        check_choice("hydra.sweeper.direction", direction, DIRECTIONS)
        if n_trials < 1 or n_jobs < 1:
            raise UserError(f"hydra.sweeper.n_trials and n_jobs must be >= 1; got {n_trials} and {n_jobs}")
        self.study_name = study_name
        self.storage = storage
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.pruner = pruner
        self.params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
        self.heartbeat_seconds = heartbeat_seconds
        self.max_retry = max_retry
        self.sampler_exhausted = False

    def create_study(self, sweep_dir: Path) -> Any:
        import optuna

        url = storage_url(self.storage, sweep_dir)
        storage = open_storage(url, self.heartbeat_seconds, self.max_retry)
        existing = next((s for s in optuna.get_all_study_summaries(storage) if s.study_name == self.study_name), None)
        if existing is not None and existing.direction.name.lower() != self.direction:
            raise UserError(f"study {self.study_name} in {url} was created to {existing.direction.name.lower()}; hydra.sweeper.direction={self.direction}")
        # Re-seed by the trials already run, so a resumed search does not re-draw the same points.
        offset = existing.n_trials if existing is not None else 0
        sampler = self._instantiate(self.sampler, seed_offset=offset)
        pruner = self._instantiate(self.pruner)
        log.info(f"Optuna study {self.study_name} ({'resumed, %d trials' % offset if existing else 'new'}) in {url}")
        return optuna.create_study(
            study_name=self.study_name, storage=storage, sampler=sampler, pruner=pruner, direction=self.direction, load_if_exists=True
        )

    @staticmethod
    def _instantiate(config: DictConfig | None, seed_offset: int = 0) -> Any:
        if config is None:
            return None
        options = {}
        if seed_offset and config.get("seed") is not None:
            options["seed"] = int(config.seed) + seed_offset
        return instantiate(config, **options)

    def budget(self, study: Any) -> tuple[int, int]:
        """(trials still to start, trials running elsewhere): finished trials count, except those
        retried after an interruption."""
        from optuna.storages import RetryHeartbeatStaleTrialCallback
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        retried = {number for t in trials for number in RetryHeartbeatStaleTrialCallback.retry_history(t)}
        finished = sum(t.state.is_finished() and t.number not in retried for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return self.n_trials - finished - running, running

    def run(self, launcher: Launcher, arguments: Sequence[str], sweep_dir: Path, parser: OverridesParser) -> None:
        import optuna

        # Heartbeats and retries are marked experimental since Optuna 2.8; we rely on them knowingly.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # Heartbeats with ask/tell: the sweeper beats for its trials itself (Heartbeat below).
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        distributions, fixed = search_space(self.params, arguments, parser)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        study = self.create_study(sweep_dir)
        while True:
            self.settle_stale_trials(study, sweep_dir)
            to_start, running = self.budget(study)
            if self.sampler_exhausted:
                log.info(f"study {self.study_name}: the sampler has no more points to try")
                break
            if to_start <= 0:
                if running == 0:
                    break
                time.sleep(self.heartbeat_seconds)  # trials of another process: wait for them to end or go stale
                continue
            self.run_trials(study, launcher, distributions, min(self.n_jobs, to_start), fixed, sweep_dir)
        self.log_best(study)

    def settle_stale_trials(self, study: Any, sweep_dir: Path) -> None:
        """Trials of a dead sweeper: a trial whose job had finished is recorded from its
        metrics.json (not redone); the others are failed and queued for a retry."""
        import optuna

        storage = study._storage
        # Optuna exposes only fail_stale_trials, which would fail (and redo) finished jobs too.
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            self.record_finished_job(study, optuna.trial.Trial(study, trial_id), sweep_dir)
        optuna.storages.fail_stale_trials(study)

    def record_finished_job(self, study: Any, trial: Any, sweep_dir: Path) -> bool:
        """Tell a still-RUNNING trial's outcome from its job's metrics.json when that job had
        finished (its sweeper died before telling); False when it had not."""
        outcome = read_outcome(None, sweep_dir / str(trial.number))
        if outcome.status not in ("completed", "pruned", "diverged"):
            return False
        self.tell(study, trial, outcome)
        return True

    def run_trials(self, study: Any, launcher: Launcher, distributions: dict[str, Any], count: int, fixed: Sequence[str], sweep_dir: Path) -> None:
        """Ask ``count`` trials, run them as one launch (per run of consecutive numbers), tell each."""
        trials: list[Any] = []
        with self.interrupted_trials_retried(study, trials, sweep_dir):
            for _ in range(count):
                trials.append(study.ask(distributions))
                study._storage.record_heartbeat(trials[-1]._trial_id)  # live from its first moment
            with Heartbeat(study._storage, [t._trial_id for t in trials], self.heartbeat_seconds):
                self.launch_and_tell(study, launcher, trials, fixed, sweep_dir)

    def launch_and_tell(self, study: Any, launcher: Launcher, trials: list[Any], fixed: Sequence[str], sweep_dir: Path) -> None:
        for run in consecutive_runs(trials):
            returns = launcher.launch([trial_overrides(t, fixed) for t in run], initial_job_idx=run[0].number)
            for trial, job_return in zip(run, returns):
                self.tell(study, trial, read_outcome(job_return, sweep_dir / str(trial.number)))

    @contextmanager
    def interrupted_trials_retried(self, study: Any, trials: Sequence[Any], sweep_dir: Path) -> Iterator[None]:
        """On Ctrl-C (or any error of the sweeper itself) settle the unfinished trials now rather
        than leaving them to go stale: those whose job had finished are recorded from its
        metrics.json, the others failed and queued for a retry."""
        from optuna.storages import RetryHeartbeatStaleTrialCallback
        from optuna.trial import TrialState

        try:
            yield
        except BaseException:
            retry = RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)
            for trial in trials:
                if study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
                    continue
                if not self.record_finished_job(study, trial, sweep_dir):
                    self.tell(study, trial, Outcome("fail", status="interrupted", error="the search was interrupted"))
                    retry(study, study._storage.get_trial(trial._trial_id))
            raise

    def tell(self, study: Any, trial: Any, outcome: Outcome) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        try:
            trial.set_user_attr("status", outcome.status)
            if outcome.error:
                trial.set_user_attr("error", outcome.error[:500])
            if outcome.state == "complete":
                study.tell(trial, outcome.value, skip_if_finished=True)
            else:
                study.tell(trial, state=TrialState.PRUNED if outcome.state == "pruned" else TrialState.FAIL, skip_if_finished=True)
        except UpdateFinishedTrialError:  # another sweeper of the study settled it first
            return
        except RuntimeError as exc:
            # A sampler that has covered its space (GridSampler) calls study.stop(), which only works
            # inside study.optimize; the trial is recorded by then.
            if "Study.stop" not in str(exc):
                raise
            self.sampler_exhausted = True
        log.info(f"trial {trial.number}: {outcome.state}" + (f" {outcome.value:.6g}" if outcome.value is not None else "") + (f" ({outcome.error})" if outcome.error else ""))

    def log_best(self, study: Any) -> None:
        try:
            best = study.best_trial
        except ValueError:
            log.warning(f"study {self.study_name}: no trial completed")
            return
        log.info(f"study {self.study_name}: best trial {best.number}: {best.value:.6g} with {best.params}")


# -- inside a job: the trial it runs, and pruning ---------------------------------------------


def job_trial(hydra_config: DictConfig, job_number: int) -> Any | None:
    """The Optuna trial that this sweep job runs, or None when the sweeper is not Optuna's."""
    sweeper = hydra_config.get("sweeper") or {}
    if sweeper.get("_target_") != SWEEPER_CLASS:
        return None
    import optuna

    url = storage_url(sweeper.get("storage"), Path(str(hydra_config.sweep.dir)))
    # The pruner is not stored with the study: the job builds the sweeper's own.
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") is not None else optuna.pruners.NopPruner()
    study = optuna.load_study(study_name=str(sweeper.study_name), storage=open_storage(url), pruner=pruner)
    # Storage API by (study id, number): Optuna has no public lookup of a trial by number.
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, job_number)
    return optuna.trial.Trial(study, trial_id)


class OptunaPruning(L.Callback):
    """Report ``monitor`` after every validation to the trial; stop training when it is pruned."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned_at_epoch: int | None = None

    @property
    def pruned(self) -> bool:
        return self.pruned_at_epoch is not None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])  # synced: the same on every rank
        prune = False
        if trainer.is_global_zero and math.isfinite(value):
            self.trial.report(value, step=trainer.current_epoch)
            prune = self.trial.should_prune()
        # Under DDP (a SLURM job) every rank must stop together, or the others wait forever.
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_at_epoch = trainer.current_epoch
            trainer.should_stop = True


def check_direction(trial: Any, monitor: str, mode: str) -> None:
    """Before a trial trains: its metric must go the study's way (val/acc: maximize)."""
    wanted = MODE_DIRECTIONS[mode]
    direction = trial.study.direction.name.lower()
    if wanted != direction:
        raise UserError(
            f"the search {direction}s but optimized_metric={monitor} is a metric to {wanted}: set "
            f"hydra.sweeper.direction={wanted} (with a new hydra.sweeper.study_name: a study keeps its direction)"
        )
