"""rnnlab.cli.malloc: with freed memory kept, a training step stops faulting its pages in afresh."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import describe
from rnnlab.cli.malloc import glibc

# Page faults per forward + backward of an LSTM whose gate activations (32 x 400 x 1024 floats,
# 52 MiB) are above glibc's largest mmap threshold (32 MiB): by default each step maps them afresh.
FAULTS_PER_STEP = """
import resource, sys, torch
from rnnlab.cli.malloc import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
torch.manual_seed(0)
lstm = torch.nn.LSTM(64, 256, batch_first=True)
x = torch.randn(32, 400, 64)
def faults_per_step(steps):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        lstm(x)[0].sum().backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps
faults_per_step(2)
print(faults_per_step(3))
"""


def faults_per_step(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, describe(result)
    return float(result.stdout)


@pytest.mark.skipif(glibc() is None, reason="mallopt is glibc's")
def test_keeping_freed_memory_stops_a_training_step_faulting_its_pages_in_again() -> None:
    default, kept = faults_per_step("default"), faults_per_step("kept")
    # Transparent huge pages can make a fault map 2 MiB: even then the default faults every step.
    assert default >= 20, default
    assert kept <= default / 10, (kept, default)
