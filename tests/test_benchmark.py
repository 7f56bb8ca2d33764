"""scripts/benchmark.py --quick: a smoke test that the benchmark runs end to end and writes valid
output (no timing is asserted: speed targets live in BENCHMARKS.md, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import cli_env, describe

REPO = Path(__file__).resolve().parent.parent


def run_quick(out: Path, device: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts/benchmark.py"), "--quick", "--out", str(out), "--device", device],
        capture_output=True, text=True, timeout=600, env=cli_env(OMP_NUM_THREADS="1"), cwd=out,
    )


def test_quick_benchmark_writes_markdown_json_and_a_png(tmp_path: Path) -> None:
    result = run_quick(tmp_path, "cpu")
    assert result.returncode == 0, describe(result)
    results = json.loads((tmp_path / "benchmarks.json").read_text(encoding="utf-8"))
    sections = {"machine", "matmul_flops", "overhead", "batching", "kernels", "bidirectional", "decoding", "data_path", "startup", "scaling"}
    assert sections <= set(results), sections - set(results)
    assert results["matmul_flops"] > 0 and results["startup"]["to_first_step_s"] > 0
    assert results["overhead"]["throughput_ratio"] > 0
    # Drawing a whole epoch, fixed-size batches and a token budget's.
    assert set(results["data_path"]) == {"fixed_size", "token_budget"}
    assert all(p["batches_per_epoch"] > 0 and p["share_of_step"] > 0 for p in results["data_path"].values())
    assert "data.max_tokens=" in results["data_path"]["token_budget"]["config"]
    assert {row["cell"] for row in results["kernels"]["rows"]} == {"rnn", "lstm", "gru"}
    assert all(row["epoch_s"] > 0 and row["activation_mib"] > 0 for row in results["scaling"]["rows"])
    if sys.platform == "linux":  # peak RSS growth: /proc/self/status and glibc's mallopt
        assert all(row["peak_mib"] is not None and row["peak_mib"] >= 0 for row in results["scaling"]["rows"])
        assert max(row["peak_mib"] for row in results["scaling"]["rows"]) > 0
        # Timed with freed memory kept, as rnnlab-train keeps it; and rnnlab-train run both ways.
        assert results["machine"]["freed_memory_kept"] is True
        freed = results["freed_memory"]
        assert set(freed["tokens_per_s"]) == {"kept", "given_back"} and freed["kept_over_given_back"] > 0
        assert all(peak > 0 for peak in freed["peak_rss_mib"].values())
        assert "## Freed memory" in (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    # On a CPU the batching sections also time shuffled batches under impl=fused (no length groups).
    assert all(section["tokens_per_s"]["shuffled_impl_fused"] > 0 for section in results["batching"].values())
    # The most removing the shuffled batches' padding could gain: computed / real tokens.
    assert all(section["padding_bound"] == 1 / (1 - section["shuffled_padding"]) for section in results["batching"].values())
    # impl=auto on CPU: one section per thread count (1 here), each with every cell.
    assert [section["threads"] for section in results["auto"]["by_threads"]] == [1]
    assert {row["cell"] for row in results["auto"]["by_threads"][0]["rows"]} == {"rnn", "lstm", "gru"}
    lstm_points = [point for row in results["auto"]["by_threads"][0]["rows"] if row["cell"] == "lstm" for point in row["points"]]
    assert {point["auto"] for point in lstm_points} == {"grouped"} and all(point["grouped_over_packed"] > 0 for point in lstm_points)
    # The long batches (T = 256 here): impl=auto splits the mostly padded GRU batch, and its groups are timed.
    long_gru = [point for row in results["auto"]["long"]["rows"] if row["cell"] == "gru" for point in row["points"]]
    assert [point["auto"] for point in long_gru] == ["grouped"] and long_gru[0]["grouped_over_packed"] > 0
    markdown = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    for heading in ("## Targets", "## Framework overhead", "## Recurrent kernels", "## Decoding", "## Data path", "## Start-up", "## Scaling", "## impl=auto: padded, packed or length groups, 1 thread"):
        assert heading in markdown, heading
    assert (tmp_path / "benchmarks_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_benchmark_on_a_gpu_writes_its_own_files(tmp_path: Path) -> None:
    """On a GPU the results go beside the CPU's (BENCHMARKS-cuda.md, ...): CUDA memory, one impl=auto
    section (no thread counts), no freed-memory section (host memory)."""
    result = run_quick(tmp_path, "cuda")
    assert result.returncode == 0, describe(result)
    results = json.loads((tmp_path / "benchmarks-cuda.json").read_text(encoding="utf-8"))
    assert results["machine"]["gpu"] == torch.cuda.get_device_name(0) and results["freed_memory"] is None
    assert results["scaling"]["peak_memory"] == "CUDA max allocated"
    assert len(results["auto"]["by_threads"]) == 1
    assert all(point["auto"] == "padded" for row in results["auto"]["by_threads"][0]["rows"] for point in row["points"])
    assert "## Targets" in (tmp_path / "BENCHMARKS-cuda.md").read_text(encoding="utf-8")
    assert (tmp_path / "benchmarks_scaling-cuda.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "BENCHMARKS.md").exists()
