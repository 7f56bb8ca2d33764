"""Exact match of trained ``data=reverse`` models on fresh test sets of one source length each: the
curve that shows why attention matters (without it, the whole source must fit in one vector).

    rnnlab-train -m data=reverse model=seq2seq model.attention=none,general data.max_length=40 ...
    python scripts/reverse_vs_length.py outputs/multiruns/<sweep>/*/checkpoints/best.ckpt \
        --lengths 5 10 20 30 40 [--examples 500] [--beam-size 1] [--output reverse_vs_length.md]

Prints (and writes with --output) a Markdown table: one row per checkpoint (its attention
setting), one column per length. Test sets come from the checkpoint's own data config with
``min_length = max_length = L`` and a generator seed that the training never used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L

from rnnlab.cli.common import datamodule_for, load_checkpoint_task

#: Differs from every split the training generated (its seeds are f"{generator_seed}-{split}").
TEST_GENERATOR_SEED = 9_999


def exact_match_by_length(ckpt_path: str, lengths: list[int], examples: int, beam_size: int) -> dict[int, float]:
    task, run_config = load_checkpoint_task(ckpt_path)
    if run_config["data"]["_target_"].split(".")[-1] not in ("ReverseDataModule", "CopyDataModule"):
        sys.exit(f"{ckpt_path}: not a data=reverse or data=copy model")
    task.configure_search(beam_size=beam_size)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    scores = {}
    for length in lengths:
        data = datamodule_for(
            task, run_config, min_length=length, max_length=length, num_test=examples, generator_seed=TEST_GENERATOR_SEED
        )
        scores[length] = trainer.test(task, datamodule=data, verbose=False)[0]["test/exact_match"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--lengths", nargs="+", type=int, default=[5, 10, 20, 30, 40])
    parser.add_argument("--examples", type=int, default=500, help="test examples per length")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--output", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    header = "| attention | " + " | ".join(f"L={length}" for length in args.lengths) + " |"
    lines = [header, "|---" * (len(args.lengths) + 1) + "|"]
    for ckpt in args.checkpoints:
        scores = exact_match_by_length(ckpt, args.lengths, args.examples, args.beam_size)
        attention = load_checkpoint_task(ckpt)[1]["model"]["attention"]
        lines.append(f"| {attention} | " + " | ".join(f"{scores[length]:.3f}" for length in args.lengths) + " |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
