"""run_info.json: provenance of a run, with the uncommitted diff saved beside it when dirty."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rnnlab.cli.run_files import GIT_DIFF_FILE, write_run_info


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=repo, check=True, capture_output=True)


def test_a_dirty_checkout_saves_its_diff_beside_run_info(tmp_path: Path) -> None:
    repo, run_dir = tmp_path / "code", tmp_path / "run"
    repo.mkdir()
    run_dir.mkdir()
    (repo / "model.py").write_text("hidden = 128\n")
    git(repo, "init", "-q")
    git(repo, "add", "model.py")
    git(repo, "commit", "-qm", "first")

    write_run_info(run_dir, 7, "start", "end", "completed", 1.5, code_dir=repo)
    clean = json.loads((run_dir / "run_info.json").read_text())
    assert clean["git"]["dirty"] is False and len(clean["git"]["commit"]) == 40
    assert not (run_dir / GIT_DIFF_FILE).exists()

    (repo / "model.py").write_text("hidden = 256\n")
    write_run_info(run_dir, 7, "start", "end", "completed", 1.5, code_dir=repo)
    dirty = json.loads((run_dir / "run_info.json").read_text())
    assert dirty["git"]["dirty"] is True and dirty["git"]["diff_file"] == GIT_DIFF_FILE
    patch = (run_dir / GIT_DIFF_FILE).read_text()
    assert "-hidden = 128" in patch and "+hidden = 256" in patch
    assert {"packages", "python", "hardware", "seed", "start_time", "end_time", "wall_seconds", "status"} <= set(dirty)
    assert dirty["seed"] == 7 and dirty["hardware"]["cpu_count"] >= 1
