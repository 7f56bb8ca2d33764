"""Sweeps: failure isolation and the summary, parallel launchers with per-job threads and leased
devices, Optuna search (resume after a kill, pruning, failed trials), DDP refused in local sweeps.

Unit tests cover the pieces (summary, device lease, search space, pruning callback); the CLI
tests run real ``rnnlab-train -m`` sweeps in subprocesses on a tiny synthetic task.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from conftest import CLI_TIMEOUT, cli_command, cli_env, describe, file_digests, last_line, read_json
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from rnnlab.errors import UserError
from rnnlab.sweeps.jobs import DeviceLease, SweepJob, check_sweep_trainer, device_pool, job_threads, launcher_concurrency, usable_cpus
from rnnlab.sweeps.optuna_search import OptunaPruning, search_space
from rnnlab.sweeps.summary import summarize

#: A tiny, fast classifier on the synthetic keyword task (each job trains in about a second).
TINY_JOB = (
    "data=keywords",
    "data.num_train=96",
    "data.num_val=32",
    "data.num_test=32",
    "data.batch_size=8",
    "model.backbone.hidden_size=8",
    "model.backbone.embedding_dim=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=none",
)
ENV = cli_env(OMP_NUM_THREADS="1")


def sweep(*args: object, cwd: Path, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command("train", "-m", *TINY_JOB, *args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


# =============================================================================================
# The sweep summary
# =============================================================================================


def write_job(sweep_dir: Path, job: str, overrides: list[str], metrics: dict[str, object] | None) -> None:
    job_dir = sweep_dir / job
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra/overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (job_dir / "metrics.json").write_text(json.dumps(metrics))


def test_summary_counts_statuses_marks_the_best_and_writes_markdown_and_csv(tmp_path: Path) -> None:
    common = ["data=keywords"]
    base = {"optimized_metric": "val/acc", "optimized_mode": "max"}
    write_job(tmp_path, "0", [*common, "seed=1"], {**base, "status": "completed", "val/acc": 0.7, "test/acc": 0.6})
    write_job(tmp_path, "1", [*common, "seed=2"], {**base, "status": "completed", "val/acc": 0.9, "test/acc": 0.8})
    write_job(tmp_path, "2", [*common, "seed=3"], {**base, "status": "failed", "error": "ValueError: boom"})
    write_job(tmp_path, "3", [*common, "seed=4"], {**base, "status": "diverged", "val/acc": 0.95})
    write_job(tmp_path, "10", [*common, "seed=5"], None)  # killed before it wrote metrics.json

    summary = summarize(tmp_path)
    assert [job.job for job in summary.jobs] == ["0", "1", "2", "3", "10"]
    assert summary.common_overrides == common
    assert summary.best is not None and summary.best.job == "1", "a diverged job is never the best"
    assert summary.line().startswith("sweep: 5 jobs: 2 completed, 1 diverged, 1 failed, 1 missing; best val/acc = 0.9 (job 1: seed=2)")
    markdown_path, csv_path = summary.write()
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["job"], r["overrides"], r["status"], r["best"]) for r in rows] == [
        ("0", "seed=1", "completed", ""),
        ("1", "seed=2", "completed", "*"),
        ("2", "seed=3", "failed", ""),
        ("3", "seed=4", "diverged", ""),
        ("10", "seed=5", "missing", ""),
    ]
    assert rows[2]["error"] == "ValueError: boom" and rows[1]["val/acc"] == "0.9" and rows[1]["test/acc"] == "0.8"
    table = markdown_path.read_text()
    assert "| 1 | seed=2 | completed | 0.9 | 0.8 | * |  |" in table and "Overrides of every job: data=keywords" in table


# =============================================================================================
# One job's share of the machine
# =============================================================================================


def sweep_job(concurrency: int, launcher: str = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher") -> SweepJob:
    return SweepJob(number=0, sweep_dir=Path("."), output_dir=Path("."), launcher=launcher, concurrency=concurrency)


def test_jobs_share_the_cores_of_the_machine() -> None:
    cpus = usable_cpus()
    assert launcher_concurrency(OmegaConf.create({"n_jobs": 3})) == 3
    assert launcher_concurrency(OmegaConf.create({"n_jobs": -1})) == cpus  # joblib's rule
    assert launcher_concurrency(OmegaConf.create({})) == 1  # the basic launcher runs jobs one by one
    assert job_threads("auto", sweep_job(2)) == max(1, cpus // 2)
    assert job_threads("auto", sweep_job(1)) is None  # a lone job keeps torch's default
    assert job_threads(3, sweep_job(2)) == 3
    with pytest.raises(UserError, match="sweep_job.threads"):
        job_threads("many", sweep_job(2))


def test_device_lease_is_exclusive_and_waits_for_a_free_device(tmp_path: Path) -> None:
    first, second = DeviceLease([5, 7], tmp_path), DeviceLease([5, 7], tmp_path)
    assert {first.acquire(), second.acquire()} == {5, 7}, "two leases of a pool of two get both devices"
    third = DeviceLease([5, 7], tmp_path, poll_seconds=0.02)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(third.acquire()))
    waiter.start()
    time.sleep(0.3)
    assert not got, "a third job must wait while both devices are leased"
    second.release()
    waiter.join(timeout=5)
    assert got == [second.device]
    first.release()
    third.release()


def test_a_device_pool_beyond_the_visible_gpus_is_a_user_error() -> None:
    """On GPUs the pool must name devices this machine shows; on the CPU any pool is a simulation."""
    beyond = torch.cuda.device_count()
    with pytest.raises(UserError, match=rf"device_pool=\[{beyond}\] names GPUs this machine does not show: it shows {beyond}"):
        device_pool([beyond], OmegaConf.create({"accelerator": "gpu"}), sweep_job(2))
    assert device_pool([beyond], OmegaConf.create({"accelerator": "cpu"}), sweep_job(2)) == [beyond]
    assert device_pool(2, OmegaConf.create({"accelerator": "cpu"}), sweep_job(2)) == [0, 1]


def test_ddp_is_refused_inside_a_local_sweep_but_not_on_slurm() -> None:
    ddp_cpu = OmegaConf.create({"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    with pytest.raises(UserError, match="cannot run inside a sweep"):
        check_sweep_trainer(ddp_cpu, sweep_job(2))
    check_sweep_trainer(ddp_cpu, sweep_job(1, "hydra_plugins.rnnlab_sweeps.submitit_launchers.SubmititSlurmLauncher"))
    check_sweep_trainer(OmegaConf.create({"accelerator": "cpu", "devices": 1, "strategy": "auto"}), sweep_job(2))


# =============================================================================================
# Optuna search space and pruning
# =============================================================================================


def test_search_space_from_hydra_sweep_syntax() -> None:
    params = {
        "model/backbone": "choice(rnn, lstm)",
        "model.backbone.num_layers": "range(1, 4)",
        "model.optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
        "model.backbone.dropout": "interval(0.0, 0.5)",
        "trainer.max_epochs": "3",
    }
    distributions, fixed = search_space(params, ["model.backbone.dropout=interval(0.1, 0.2)", "seed=7"], OverridesParser.create())
    d = optuna.distributions
    assert distributions == {
        "model/backbone": d.CategoricalDistribution(["rnn", "lstm"]),
        "model.backbone.num_layers": d.IntDistribution(1, 3),
        "model.optimizer.lr": d.FloatDistribution(1e-4, 1e-2, log=True),
        "model.backbone.dropout": d.FloatDistribution(0.1, 0.2),  # the command line wins
    }
    assert sorted(fixed) == ["seed=7", "trainer.max_epochs=3"]
    with pytest.raises(UserError, match="search space is empty"):
        search_space({}, ["seed=1"], OverridesParser.create())


def test_pruning_callback_stops_a_trial_worse_than_the_median() -> None:
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for _ in range(2):
        good = study.ask()
        good.report(0.1, step=0)
        study.tell(good, 0.1)
    def validate(value: float) -> tuple[OptunaPruning, SimpleNamespace]:
        pruning = OptunaPruning(study.ask(), "val/loss")
        strategy = SimpleNamespace(broadcast=lambda obj, src=0: obj)  # one process
        trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val/loss": value}, current_epoch=0, is_global_zero=True, strategy=strategy, should_stop=False)
        pruning.on_validation_end(trainer, None)  # type: ignore[arg-type]
        return pruning, trainer

    pruning, trainer = validate(0.05)
    assert not pruning.pruned and not trainer.should_stop, "better than the median: keep training"
    pruning, trainer = validate(5.0)
    assert pruning.pruned and pruning.pruned_at_epoch == 0 and trainer.should_stop


# =============================================================================================
# CLI: grid sweeps
# =============================================================================================


def test_grid_sweep_records_failed_and_diverged_jobs_and_goes_on(tmp_path: Path) -> None:
    """Started together in one cwd: two sweeps get two sweep dirs; in the first, a job that raises
    and a job that diverges are recorded, the other job completes, and the exit status says so."""
    args = [*TINY_JOB, "trainer.max_epochs=1"]
    sweeps = [
        subprocess.Popen(cli_command("train", "-m", *args, "model.optimizer.lr=0.01,-1,1e12"), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(cli_command("train", "-m", *args, "seed=5"), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    (mixed_out, mixed_err), (single_out, _) = (process.communicate(timeout=CLI_TIMEOUT) for process in sweeps)
    mixed = subprocess.CompletedProcess([], sweeps[0].returncode, mixed_out, mixed_err)
    assert sweeps[1].returncode == 0 and mixed.returncode == 1, describe(mixed)

    sweep_dirs = sorted((tmp_path / "outputs/multiruns").iterdir())
    assert len(sweep_dirs) == 2, sweep_dirs
    mixed_dir = Path(tmp_path, last_line(mixed.stdout))
    assert mixed_dir in sweep_dirs and Path(tmp_path, last_line(single_out)) in sweep_dirs and last_line(single_out) != last_line(mixed.stdout)

    statuses = {job: read_json(mixed_dir / job / "metrics.json") for job in ("0", "1", "2")}
    assert [statuses[job]["status"] for job in ("0", "1", "2")] == ["completed", "failed", "diverged"]
    assert "Invalid learning rate: -1" in statuses["1"]["error"]
    assert "model.optimizer.lr=-1" in (mixed_dir / "1/.hydra/overrides.yaml").read_text()
    assert isinstance(statuses["2"]["diverged_at_step"], int)
    assert "sweep: 3 jobs: 1 completed, 1 diverged, 1 failed; best val/acc" in mixed.stdout
    assert (mixed_dir / "sweep_summary.md").is_file() and len(list(csv.DictReader((mixed_dir / "sweep_summary.csv").open()))) == 3
    assert not (mixed_dir / "hparams").exists(), "logger=none: no TensorBoard table definition"
    assert "job 1 (" in mixed.stderr or "job 1 (" in mixed.stdout, "the failed job is named"


def test_sweep_runs_share_a_log_dir_and_log_their_overrides_as_hparams(tmp_path: Path) -> None:
    """TensorBoard's HParams dashboard shows a sweep as one table: every job logs the keys the
    sweep and the command line set (named as typed, with the job's values) and the seed, not the
    whole config, plus its final metrics; `tensorboard --logdir <sweep dir>` finds every job."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    result = sweep(*TINY_JOB, "trainer.max_epochs=1", "logger=tensorboard", "model/backbone=rnn,gru", "model.optimizer.lr=0.01", cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    sweep_dir = Path(tmp_path, last_line(result.stdout))

    runs = EventMultiplexer().AddRunsFromDirectory(str(sweep_dir))
    runs.Reload()
    assert sorted(runs.Runs()) == ["0/tensorboard", "1/tensorboard", "hparams"]
    content = runs.PluginRunToTagToContent("hparams")
    for run, backbone in (("0/tensorboard", "rnn"), ("1/tensorboard", "gru")):
        start = plugin_data_pb2.HParamsPluginData.FromString(content[run][metadata.SESSION_START_INFO_TAG]).session_start_info
        assert start.hparams["model/backbone"].string_value == backbone
        assert start.hparams["model.optimizer.lr"].number_value == pytest.approx(0.01)
        assert start.hparams["seed"].number_value == 42 and start.hparams["data.num_train"].number_value == 96
        assert start.hparams["status"].string_value == "completed"
        assert "model.backbone.cell" not in start.hparams and not any(key.startswith("logger") for key in start.hparams)
        assert metadata.EXPERIMENT_TAG not in content[run]
    # One table definition for the sweep: every key any job set, the best validation and test metrics.
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["hparams"][metadata.EXPERIMENT_TAG]).experiment
    assert {"model/backbone", "model.optimizer.lr", "seed", "status"} <= {info.name for info in experiment.hparam_infos}
    assert {"best/val/acc", "test/acc"} <= {info.name.tag for info in experiment.metric_infos}


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_sweep_gives_each_running_job_its_own_device(tmp_path: Path, launcher: str) -> None:
    """A simulated pool of 2 devices and 3 jobs at once (DataLoader workers on), training on the
    CPU: every job runs, with cores // 3 threads, and no two jobs hold one device at overlapping times."""
    sweep_dir = tmp_path / "sweep"
    result = sweep(
        "trainer=cpu",
        f"hydra/launcher={launcher}",
        "hydra.launcher.n_jobs=3",
        "sweep_job.device_pool=[0,1]",
        "data.num_workers=1",
        "trainer.max_epochs=1",
        "seed=1,2,3",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    records = [read_json(sweep_dir / str(job) / "run_info.json")["sweep_job"] for job in range(3)]
    assert all(read_json(sweep_dir / str(job) / "metrics.json")["status"] == "completed" for job in range(3))
    assert {r["threads"] for r in records} == {max(1, usable_cpus() // 3)} and {r["concurrency"] for r in records} == {3}
    for device in (0, 1):
        spans = sorted((r["device"]["acquired"], r["device"]["used_until"]) for r in records if r["device"]["id"] == device)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), f"device {device}: {spans}"
    assert {r["device"]["id"] for r in records} <= {0, 1}
    assert not (tmp_path / "outputs").exists(), "hydra.sweep.dir replaces outputs/multiruns/"


# =============================================================================================
# CLI: Optuna search
# =============================================================================================


def study_trials(sweep_dir: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'optuna.db'}").get_trials()


SEARCH = (
    "hydra/sweeper=optuna",
    "optimized_metric=val/loss",
    "hydra.sweeper.direction=minimize",
    "hydra.sweeper.params={model.optimizer.lr: 'tag(log, interval(1e-3, 1e-1))'}",
)


def test_optuna_search_resumes_after_a_kill_without_redoing_finished_trials(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "search"
    args = [*TINY_JOB, *SEARCH, "hydra.sweeper.study_name=resumable", "hydra.sweeper.n_trials=4", "hydra.sweeper.heartbeat_seconds=1", "hydra.sweeper.pruner=null", f"hydra.sweep.dir={sweep_dir}"]
    first = subprocess.Popen(cli_command("train", "-m", *args), cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + CLI_TIMEOUT
    while not (sweep_dir / "2/.hydra/overrides.yaml").is_file():  # trials 0 and 1 are recorded, trial 2 runs
        assert first.poll() is None and time.monotonic() < deadline, "the search ended before trial 2 started"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = study_trials(sweep_dir, "resumable")
    finished_before = {t.number: (t.state, t.value, t.params) for t in before if t.state.is_finished()}
    assert sorted(finished_before) == [0, 1] and before[2].state == optuna.trial.TrialState.RUNNING
    digests = {job: file_digests(sweep_dir / job) for job in ("0", "1")}

    time.sleep(2.5)  # two heartbeats: trial 2 is now stale
    second = subprocess.run(cli_command("train", "-m", *args), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert second.returncode == 0, describe(second)

    after = study_trials(sweep_dir, "resumable")
    assert {t.number: (t.state, t.value, t.params) for t in after if t.number in finished_before} == finished_before
    assert after[2].state == optuna.trial.TrialState.FAIL
    retries = [t for t in after if t.system_attrs.get("failed_trial") == 2]
    assert len(retries) == 1 and retries[0].params == before[2].params and retries[0].state.is_finished()
    counted = [t for t in after if t.state.is_finished() and t.number != 2]
    assert len(counted) == 4 and len(after) == 5, [(t.number, t.state) for t in after]
    assert {job: file_digests(sweep_dir / job) for job in ("0", "1")} == digests, "finished trials are not redone"
    assert "sweep: 5 jobs:" in second.stdout, second.stdout[-2500:]


def test_optuna_prunes_built_to_prune_trials_and_records_failed_ones(tmp_path: Path) -> None:
    """A grid of two learning rates: -1 fails (reported to Optuna, the search goes on); 0.01 is
    pruned after its first validation by a pruner that prunes any val/loss above 0."""
    sweep_dir = tmp_path / "search"
    result = sweep(
        *SEARCH,
        "hydra.sweeper.params={model.optimizer.lr: 'choice(0.01, -1.0)'}",
        "~hydra.sweeper.sampler",
        "+hydra.sweeper.sampler={_target_: optuna.samplers.GridSampler, search_space: {model.optimizer.lr: [0.01, -1.0]}, seed: 0}",
        "~hydra.sweeper.pruner",
        "+hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, upper: 0.0}",
        "hydra.sweeper.study_name=pruned",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=3",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)  # failed trials are part of a search's exploration
    trials = {t.params["model.optimizer.lr"]: t for t in study_trials(sweep_dir, "pruned")}
    assert trials[0.01].state == optuna.trial.TrialState.PRUNED and trials[-1.0].state == optuna.trial.TrialState.FAIL
    pruned = read_json(sweep_dir / str(trials[0.01].number) / "metrics.json")
    assert pruned["status"] == "pruned" and pruned["pruned_at_epoch"] == 0 and pruned["epoch"] == 0
    assert "test/loss" not in pruned, "a pruned trial is not tested"
    assert "Invalid learning rate" in trials[-1.0].user_attrs["error"]


# =============================================================================================
# Configs: the shipped searches and launchers compose and build
# =============================================================================================


@pytest.mark.parametrize("search", ["classifier", "seq2seq"])
def test_shipped_searches_compose_into_a_search_space(search: str) -> None:
    from hydra import compose, initialize_config_dir

    from rnnlab.cli.common import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        extra = ["experiment=cmudict_g2p"] if search == "seq2seq" else []
        cfg = compose("train", overrides=[*extra, f"hparams_search={search}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.rnnlab_sweeps.optuna_sweeper.OptunaSweeper"
    assert sweeper.study_name == search and cfg.hydra.sweep.dir == f"outputs/searches/{search}"
    assert (cfg.optimized_metric, sweeper.direction) in (("val/acc", "maximize"), ("val/ter", "minimize"))
    distributions, _ = search_space(OmegaConf.to_container(sweeper.params), [], OverridesParser.create())
    assert len(distributions) >= 4 and "model.optimizer.lr" in distributions
    assert "seed" not in distributions, "a recipe's seed sweep is not a search dimension"


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_launcher_configs_build_their_plugins(launcher: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.plugins import Plugins

    from rnnlab.cli.common import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}", "hydra.launcher.timeout_min=30" if "submitit" in launcher else "hydra.launcher.n_jobs=3"], return_hydra_config=True)
    plugin = Plugins.instance()._instantiate(cfg.hydra.launcher)  # what Hydra does at launch
    assert type(plugin).__name__ == {"joblib": "JoblibLauncher", "submitit_local": "SubmititLocalLauncher", "submitit_slurm": "SubmititSlurmLauncher"}[launcher]
    if launcher == "submitit_slurm":
        requeued = plugin.checkpoint(["seed=1", "resume=false"], "hydra.sweep.dir", 0, "id", {})
        assert requeued.args[0] == ["seed=1", "resume=true"], "a requeued job resumes from its last.ckpt"
