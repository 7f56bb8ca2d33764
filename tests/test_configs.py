"""Every config composes, and every `_target_` in conf/ names a real class."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, get_method

from rnnlab.cli.common import CONFIG_DIR

CONF = Path(CONFIG_DIR)


def targets(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if "_target_" in node else []
        return found + [t for value in node.values() for t in targets(value)]
    if isinstance(node, list):
        return [t for value in node for t in targets(value)]
    return []


@pytest.mark.parametrize("path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_every_target_is_importable(path: Path) -> None:
    for target in targets(yaml.safe_load(path.read_text()) or {}):
        try:
            get_class(target)
        except ValueError:
            get_method(target)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


COMBINATIONS = (
    [f"data={name}" for name in options("data")]
    + [f"model/backbone={name}" for name in options("model/backbone")]
    + [f"model/optimizer={name}" for name in options("model/optimizer")]
    + [f"model/scheduler={name}" for name in options("model/scheduler")]
    + [f"trainer={name}" for name in options("trainer")]
    + [f"logger={name}" for name in options("logger")]
    + [f"experiment={name}" for name in options("experiment")]
)


@pytest.mark.parametrize("override", COMBINATIONS)
def test_train_config_composes_with_each_option(override: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[override, "data.batch_size=7"])
    assert cfg.data.batch_size == 7
    assert cfg.model.optimizer.lr > 0
    assert cfg.model.backbone.get("cell", "mlp") in ("rnn", "lstm", "gru", "mlp")


@pytest.mark.parametrize("decoder", options("model/decoder"))
def test_seq2seq_composes_with_each_decoder(decoder: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data=reverse", "model=seq2seq", f"model/decoder={decoder}"])
    assert cfg.model.decoder.cell == decoder
    assert cfg.model.decoder.bidirectional is False


@pytest.mark.parametrize("name", ["eval", "predict"])
def test_eval_and_predict_configs_compose(name: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(name, overrides=["ckpt_path=x.ckpt"])
    assert cfg.ckpt_path == "x.ckpt"
