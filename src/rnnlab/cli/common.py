"""What every entry point shares: config location, run-dir naming, user errors, checkpoint loading."""

from __future__ import annotations

import functools
import json
import os
import secrets
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from rnnlab.errors import UserError

R = TypeVar("R")


def config_dir() -> str:
    """``conf/`` inside an installed wheel, else the source checkout's top-level ``conf/``."""
    packaged = Path(__file__).resolve().parent.parent / "conf"
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).resolve().parents[3] / "conf")


CONFIG_DIR = config_dir()

# conf/hydra/launcher/{joblib,submitit_*}.yaml set our defaults for the launcher plugins' configs of
# the same names on purpose (the names users know); Hydra validates them against those schemas and
# warns that it does.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


def _run_suffix() -> str:
    """A random token that makes run directories unique even for runs started in the same second."""
    return secrets.token_hex(3)


# Cached per config object, so hydra.run.dir resolves to the same path everywhere in one run.
if not OmegaConf.has_resolver("run_suffix"):
    OmegaConf.register_new_resolver("run_suffix", _run_suffix, use_cache=True)


def _resume_run_dir(ckpt_path: str | None, new_run_dir: str) -> str:
    """hydra.run.dir: the run of ``ckpt_path`` (``<run>/checkpoints/x.ckpt``) when that run did not
    finish (killed or failed), so that resuming continues its directory and TensorBoard run;
    else ``new_run_dir``. Continuing from a finished run's checkpoint starts a new directory."""
    if not ckpt_path:
        return new_run_dir
    checkpoint = Path(str(ckpt_path))
    run_dir = checkpoint.parent.parent
    if checkpoint.parent.name != "checkpoints" or not (run_dir / ".hydra").is_dir():
        return new_run_dir
    try:
        status = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        status = None
    return new_run_dir if status in ("completed", "diverged", "pruned") else str(run_dir)


if not OmegaConf.has_resolver("resume_run_dir"):
    OmegaConf.register_new_resolver("resume_run_dir", _resume_run_dir, use_cache=True)


def find_user_error(exc: BaseException) -> BaseException | None:
    """The user mistake behind ``exc`` (following ``raise ... from`` chains), or None for a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (UserError, MissingMandatoryValue, MisconfigurationException)):
            return current
        if isinstance(current, InstantiationException) and isinstance(current.__cause__, TypeError):
            # A config key that the target class does not take, e.g. `+data.bogus=1`.
            return current
        current = current.__cause__ or current.__context__
    return None


def report_user_errors(command: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Turn a user mistake into one line on stderr and exit code 2; bugs keep their traceback.

    ``HYDRA_FULL_ERROR=1`` shows the traceback for user mistakes too.
    """

    def decorate(function: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                user_error = find_user_error(exc)
                if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                message = str(user_error).strip().replace("\n", " ")
                print(f"{command}: error: {message}", file=sys.stderr, flush=True)
                sys.exit(2)

        return wrapper

    return decorate


def load_checkpoint_task(ckpt_path: str, map_location: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the task from a checkpoint alone; returns (task in eval mode, the run's composed config)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"{ckpt_path}: no such checkpoint file")
    try:
        # weights_only: rnnlab checkpoints hold tensors and plain data, never pickled objects.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{ckpt_path}: not a readable rnnlab checkpoint ({type(exc).__name__}: {exc})") from exc
    run_config = (checkpoint.get("rnnlab") or {}).get("config") if isinstance(checkpoint, dict) else None
    if not run_config:
        raise UserError(f"{ckpt_path}: not an rnnlab checkpoint (no rnnlab config inside; was it written by rnnlab-train?)")
    task_class = get_class(run_config["model"]["_target_"])
    task = task_class.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    task.eval()
    return task, run_config


def datamodule_for(task: Any, run_config: dict[str, Any], **overrides: Any) -> Any:
    """The training run's data module, with the checkpoint's vocabulary and labels (nothing refitted)."""
    data_config = OmegaConf.create(run_config["data"])
    for key, value in overrides.items():
        if value is not None:
            data_config[key] = value
    return instantiate(data_config, spec=task.data_spec)
