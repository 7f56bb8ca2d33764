"""The files of a run directory that rnnlab writes itself: metrics.json and run_info.json."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("rnnlab", "torch", "lightning", "hydra-core", "omegaconf", "torchmetrics", "tensorboard", "numpy")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(handle.name, path)


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def git_state(directory: Path) -> dict[str, Any]:
    """Commit, dirty flag and (when dirty) ``git diff HEAD`` of the git checkout holding
    ``directory`` (nulls outside a checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    dirty = bool(status) if status is not None else None
    # The uncommitted changes themselves, so that a dirty run can be reproduced (tracked files).
    diff = git("diff", "HEAD", "--binary") if dirty else None
    return {"commit": commit, "dirty": dirty, "diff": diff}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_name() -> str | None:
    """The CPU model ("AMD EPYC 7B13"): /proc/cpuinfo on Linux, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


#: Beside run_info.json when the checkout had uncommitted changes.
GIT_DIFF_FILE = "git_diff.patch"


def write_run_info(
    run_dir: Path, seed: int, started: str, ended: str, status: str, wall_seconds: float, code_dir: Path | None = None, **extra: Any
) -> None:
    """run_info.json, and git_diff.patch beside it when the code had uncommitted changes.

    ``code_dir``: the checkout whose state is recorded (default: rnnlab's own). ``extra`` adds
    sections (e.g. ``sweep_job``: a sweep job's threads and device).
    """
    git = git_state(code_dir or Path(__file__).resolve().parent)
    diff = git.pop("diff")
    if diff:
        (run_dir / GIT_DIFF_FILE).write_text(diff + "\n", encoding="utf-8")
        git["diff_file"] = GIT_DIFF_FILE
    write_json(
        run_dir / "run_info.json",
        {
            "git": git,
            "packages": package_versions(),
            "python": sys.version.split()[0],
            "hardware": hardware(),
            "seed": seed,
            "command": sys.argv,
            "start_time": started,
            "end_time": ended,
            "wall_seconds": round(wall_seconds, 3),
            "status": status,
            **extra,
        },
    )
