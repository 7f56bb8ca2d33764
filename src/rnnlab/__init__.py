"""rnnlab: recurrent neural network experiments on PyTorch Lightning and Hydra."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_run"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import rnnlab` (and every command's start-up) stays free of torch and Lightning.
    if name == "load_run":
        from rnnlab.runs import load_run

        return load_run
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
