"""Padding ratio of training batches: length-bucketed sampler vs plain shuffled batches.

    python scripts/padding_ratio.py [data=bbc_news] [data.batch_size=32] [--epochs 3]

Builds the data module from the same Hydra config as rnnlab-train and counts, for each epoch of
training batches, padded steps / all computed steps (each batch padded to its longest member).
"""

from __future__ import annotations

import argparse
import json

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from rnnlab.cli.common import CONFIG_DIR
from rnnlab.data.sampler import padding_ratio


def epoch_padding_ratio(loader: DataLoader, lengths: list[int], epoch: int) -> float:
    """Padding ratio of one epoch of the loader's training batches (batch composition only, no collate)."""
    if hasattr(loader.batch_sampler, "set_epoch"):
        loader.batch_sampler.set_epoch(epoch)
    return padding_ratio(loader.batch_sampler, lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for rnnlab-train")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for bucketing in (True, False):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[*args.overrides, f"data.bucketing={bucketing}"])
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        lengths = [len(example["inputs"]) for example in datamodule.datasets["train"]]
        name = "bucketed" if bucketing else "shuffled"
        results[name] = [round(epoch_padding_ratio(loader, lengths, epoch), 4) for epoch in range(args.epochs)]
    results["config"] = {"data": cfg.data._target_, "batch_size": cfg.data.batch_size, "max_length": cfg.data.get("max_length")}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
