"""rnnlab-predict ckpt_path=PATH input_file=PATH [output_file=PATH]: one JSON object per input.

Each record is the input as the data module read it (e.g. ``{"text": ...}``) joined with the task's
prediction, in input order. Classification: ``label`` and ``probs``. Language models take the
``generation`` options (temperature, top_k, max_length, seed); seq2seq models the ``search`` options
(beam_size, nbest, length_penalty, max_length_ratio, max_length_offset) and give the n-best
hypotheses with their scores.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig, OmegaConf

from rnnlab.cli.common import CONFIG_DIR, datamodule_for, load_checkpoint_task, report_user_errors
from rnnlab.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from exc


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    device = resolve_device(cfg.device)
    task, run_config = load_checkpoint_task(cfg.ckpt_path)
    datamodule = datamodule_for(task, run_config, batch_size=cfg.batch_size, eval_batch_size=cfg.batch_size, num_workers=0)
    inputs = datamodule.load_predict_file(cfg.input_file)
    options = OmegaConf.to_container(cfg[task.prediction_options]) if task.prediction_options else {}
    task.to(device)
    records: list[dict[str, Any]] = []
    with torch.inference_mode():
        for batch in datamodule.predict_dataloader():
            records.extend(task.predict_step(move_data_to_device(batch, device), **options))
    records.sort(key=lambda record: record["index"])
    return [{**inputs[r.pop("index")], **r} for r in records]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@report_user_errors("rnnlab-predict")
def main(cfg: DictConfig) -> None:
    records = predict(cfg)
    target = Path(cfg.output_file) if cfg.output_file else None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") if target else nullcontext(sys.stdout) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
