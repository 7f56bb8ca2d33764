"""rnnlab-eval ckpt_path=PATH [split=test|val] [test_file=PATH] [search.beam_size=K]: evaluate a checkpoint.

The checkpoint alone rebuilds the model, vocabulary and label set; metrics go to stdout and to
``metrics.json`` in a fresh directory under outputs/evals/ (the training run is left untouched).
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from rnnlab.cli.common import CONFIG_DIR, datamodule_for, load_checkpoint_task, report_user_errors
from rnnlab.cli.run_files import write_json
from rnnlab.errors import UserError, check_choice


def evaluate(cfg: DictConfig) -> dict[str, object]:
    check_choice("split", cfg.split, ("test", "val"))
    task, run_config = load_checkpoint_task(cfg.ckpt_path)
    search = {key: value for key, value in cfg.search.items() if value is not None}
    if search:
        if not hasattr(task, "configure_search"):
            raise UserError("search.* options apply to seq2seq models only")
        task.configure_search(**search)
    split = "test" if cfg.test_file else cfg.split
    datamodule = datamodule_for(
        task,
        run_config,
        test_file=cfg.test_file,
        batch_size=cfg.batch_size,
        eval_batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        logger=False,
        default_root_dir=cfg.paths.output_dir,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    run = trainer.test if split == "test" else trainer.validate
    metrics = {k: float(v) for k, v in run(task, datamodule=datamodule, verbose=False)[0].items()}
    record = {**metrics, "ckpt_path": str(Path(cfg.ckpt_path).resolve()), "split": split, "test_file": cfg.test_file}
    write_json(Path(cfg.paths.output_dir) / "metrics.json", record)
    return record


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
@report_user_errors("rnnlab-eval")
def main(cfg: DictConfig) -> None:
    record = evaluate(cfg)
    print(json.dumps(record, indent=2, sort_keys=True))
    print(cfg.paths.output_dir, flush=True)


if __name__ == "__main__":
    main()
