"""Forecasting data: contiguous splits without leakage, windows, scaling, gaps, built-in series, adding problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rnnlab.data import (
    AddingDataModule,
    AirlineDataModule,
    SeriesCSVDataModule,
    SeriesDataModule,
    SunspotsDataModule,
    denormalize,
    normalize,
)
from rnnlab.errors import UserError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def ramp_csv(tmp_path: Path, rows: int = 20) -> Path:
    """Columns t = row number, x = 10 * row, c = 7 (constant), note = text (never an input)."""
    return write_csv(tmp_path / "ramp.csv", "t,x,c,note", [f"{i},{10 * i},7,n{i}" for i in range(rows)])


def ramp_module(path: Path, **options: Any) -> SeriesCSVDataModule:
    defaults = dict(value_columns=["t", "x"], target_columns=["x"], lookback=3, horizon=2)
    defaults.update(val_fraction=0.25, test_fraction=0.25, normalize=False)
    return SeriesCSVDataModule(str(path), **{**defaults, **options})


def assert_no_leakage(module: SeriesDataModule) -> None:
    """Training windows read only training rows; every held-out target lies in its own part, after
    its inputs; and each example holds exactly the rows its window names."""
    parts = module.parts
    series = module.series()
    assert parts["train"].start == 0 and parts["train"].stop == parts["val"].start
    assert parts["val"].stop == parts["test"].start and parts["test"].stop == len(series)
    held_out = set(parts["val"]) | set(parts["test"])
    for split in ("train", "val", "test"):
        examples, windows = module.datasets[split], module.window_rows(split)
        assert len(examples) == len(windows) > 0
        for example, (inputs, targets) in zip(examples, windows, strict=True):
            assert len(inputs) == module.lookback and len(targets) == module.horizon
            assert inputs.stop == targets.start and inputs.start >= 0
            assert set(targets) <= set(parts[split]), (split, targets)
            if split == "train":
                assert not (set(inputs) | set(targets)) & held_out, (inputs, targets)
            else:
                assert not set(targets) & set(parts["train"]), (split, targets)
            if split == "test":
                assert not set(inputs) & set(range(parts["test"].stop, len(series)))
            # The rows named are the rows served.
            original = denormalize(example["inputs"].double(), module.spec)
            assert torch.allclose(original, torch.from_numpy(series[inputs.start : inputs.stop]), atol=1e-4)
            target = denormalize(example["target"].double(), module.spec, module.target_index)
            expected = series[targets.start : targets.stop][:, module.target_index]
            assert torch.allclose(target, torch.from_numpy(expected), atol=1e-4)


# -- windows and splits ------------------------------------------------------------------------


def test_windows_equal_the_hand_computed_ones(tmp_path: Path) -> None:
    module = ramp_module(ramp_csv(tmp_path))
    module.setup()
    assert module.parts == {"train": range(0, 10), "val": range(10, 15), "test": range(15, 20)}
    # Train: targets t..t+1 <= row 9 and inputs from row 0 -> t = 3..8; val: t = 10..13; test: t = 15..18.
    assert module.origins == {"train": [3, 4, 5, 6, 7, 8], "val": [10, 11, 12, 13], "test": [15, 16, 17, 18]}
    first = module.datasets["train"][0]
    assert first["index"] == 0
    assert first["inputs"].dtype == torch.float32
    assert first["inputs"].tolist() == [[0, 0], [1, 10], [2, 20]]
    assert first["target"].tolist() == [[30], [40]]
    val = module.datasets["val"][0]
    # The first val window reads the last training rows: the past is known at forecast time.
    assert val["inputs"].tolist() == [[7, 70], [8, 80], [9, 90]]
    assert val["target"].tolist() == [[100], [110]]
    last = module.datasets["test"][-1]
    assert last["index"] == 3
    assert last["inputs"].tolist() == [[15, 150], [16, 160], [17, 170]]
    assert last["target"].tolist() == [[180], [190]]
    assert_no_leakage(module)
    strided = ramp_module(ramp_csv(tmp_path), stride=2)
    strided.setup()
    assert strided.origins == {"train": [3, 5, 7], "val": [10, 12], "test": [15, 17]}


@pytest.mark.parametrize(
    "options",
    [
        dict(lookback=3, horizon=2),
        dict(lookback=9, horizon=1, val_fraction=0.1, test_fraction=0.1),
        dict(lookback=1, horizon=4, stride=3, val_fraction=0.3, test_fraction=0.2),
        dict(lookback=5, horizon=3, value_columns=["x", "t"], target_columns=None),
    ],
)
def test_no_window_leaks_across_parts(tmp_path: Path, options: dict[str, Any]) -> None:
    module = ramp_module(ramp_csv(tmp_path, rows=40), **options, normalize=True)
    module.setup()
    assert_no_leakage(module)


def test_the_leakage_check_catches_a_test_target_in_the_training_part(tmp_path: Path) -> None:
    module = ramp_module(ramp_csv(tmp_path))
    module.setup()
    module.origins["test"][0] = 8  # a test window forecasting rows 8-9, which are training rows
    with pytest.raises(AssertionError):
        assert_no_leakage(module)


def test_batches_need_no_padding(tmp_path: Path) -> None:
    module = ramp_module(ramp_csv(tmp_path, rows=40), batch_size=4)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch.inputs.shape == (4, 3, 2) and batch.targets.shape == (4, 2, 1)
    assert batch.lengths.tolist() == [3] * 4 and bool(batch.mask.all())


# -- normalisation and spec --------------------------------------------------------------------


def test_scaler_comes_from_the_training_part_and_round_trips(tmp_path: Path) -> None:
    module = ramp_module(ramp_csv(tmp_path), value_columns=["t", "x", "c"], target_columns=["c", "x"], normalize=True)
    module.setup()
    train = np.array([[i, 10 * i, 7] for i in range(10)], dtype=np.float64)
    scaler = module.spec["scaler"]
    assert scaler["mean"] == pytest.approx(train.mean(axis=0).tolist())
    assert scaler["std"] == pytest.approx([train[:, 0].std(), train[:, 1].std(), 1.0])  # constant column -> 1
    assert scaler["mean"][0] == pytest.approx(4.5)  # rows 0-9 only, not the whole series (9.5)
    assert module.target_index == [2, 1]
    raw = torch.tensor([[[3.0, 30.0, 7.0], [19.0, 190.0, 8.0]]], dtype=torch.float64)  # (1, 2, 3)
    assert torch.allclose(denormalize(normalize(raw, module.spec), module.spec), raw)
    targets = raw[..., [2, 1]]
    normalised = normalize(targets, scaler, module.target_index)
    assert torch.allclose(normalised[0, 0], torch.tensor([0.0, (30 - 45) / train[:, 1].std()], dtype=torch.float64))
    assert torch.allclose(denormalize(normalised, module.spec, module.target_index), targets)
    example = module.datasets["val"][0]
    expected = (torch.tensor([[7.0, 70, 7], [8, 80, 7], [9, 90, 7]]) - torch.tensor(scaler["mean"])) / torch.tensor(
        scaler["std"]
    )
    assert torch.allclose(example["inputs"], expected.float())
    assert denormalize(raw, None) is raw and normalize(raw, {"task": "forecasting", "scaler": None}) is raw


def test_spec_round_trip_refits_nothing(tmp_path: Path) -> None:
    path = ramp_csv(tmp_path)
    fitted = ramp_module(path, normalize=True, seasonal_period=2)
    fitted.setup()
    spec = json.loads(json.dumps(fitted.spec))
    assert spec == fitted.spec
    assert spec == {
        "task": "forecasting",
        "input": {"kind": "features", "num_features": 2},
        "columns": ["t", "x"],
        "targets": ["x"],
        "target_index": [1],
        "lookback": 3,
        "horizon": 2,
        "scaler": fitted.scaler,
        "baselines": ["naive", "seasonal_naive"],
        "seasonal_period": 2,
        "target_mean": None,
    }
    # The spec's columns and sizes win over the constructor's; the training rows are not read for fitting.
    rebuilt = ramp_module(path, spec=spec, value_columns=["x"], lookback=5, normalize=False)
    rebuilt.setup("test")
    assert set(rebuilt.datasets) == {"test"}
    assert rebuilt.spec == fitted.spec
    for a, b in zip(rebuilt.datasets["test"], fitted.datasets["test"], strict=True):
        assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["target"], b["target"])
    changed = write_csv(tmp_path / "changed.csv", "t,x", [f"{i * (i < 10) * 3},{10 * i}" for i in range(20)])
    other = ramp_module(changed, spec=spec)
    other.setup()
    assert other.spec["scaler"] == fitted.spec["scaler"]


def test_spec_before_setup_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="setup"):
        ramp_module(ramp_csv(tmp_path)).spec  # noqa: B018


# -- user errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(lookback=10, seasonal_period=12), r"data\.lookback=10 .* data\.seasonal_period=12"),
        (dict(seasonal_period=0), r"data\.seasonal_period"),
        (dict(target_columns=["y"]), r"data\.target_columns"),
        (dict(value_columns=["t", "t"]), r"data\.value_columns"),
        (dict(time_column="t"), r"data\.time_column"),
        (dict(fill="zero"), r"data\.fill must be one of none, ffill, interpolate"),
        (dict(stride=0), r"data\.stride"),
        (dict(horizon=0), r"data\.horizon"),
        (dict(val_fraction=1.0), r"data\.val_fraction"),
    ],
)
def test_bad_options_name_their_config_key(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        ramp_module(tmp_path / "unread.csv", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(lookback=9), r"^the train split has no windows: its 10 rows are fewer than data\.lookback \+ data\.horizon"),
        (dict(val_fraction=0.0), r"^the val split has no windows: data\.val_fraction=0\.0 gives 0 rows"),
        (dict(test_fraction=0.05, horizon=2), r"^the test split has no windows: data\.test_fraction=0\.05 gives 1 rows"),
    ],
)
def test_an_empty_split_names_the_option_to_change(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        ramp_module(ramp_csv(tmp_path), **options).setup()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["1,2", "3"], r"s\.csv:3: row has 1 columns, the header has 2"),
        (["1,2", "1,abc"], r"s\.csv:3: column 'x': 'abc' is not a number"),
        (["1,2", "1,inf"], r"s\.csv:3: column 'x': 'inf' is not a finite number"),
        ([], r"s\.csv: no data rows"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, rows: list[str], message: str) -> None:
    path = write_csv(tmp_path / "s.csv", "t,x", rows)
    with pytest.raises(UserError, match=message):
        SeriesCSVDataModule(str(path), ["t", "x"], lookback=1, fill="ffill").series()
    with pytest.raises(UserError, match=r"s\.csv:1: the header has no column 'y' \(set data\.value_columns\)"):
        SeriesCSVDataModule(str(path), ["y"], lookback=1).series()


def gappy_csv(tmp_path: Path, x: list[str]) -> Path:
    return write_csv(tmp_path / "gaps.csv", "t,x", [f"{i},{value}" for i, value in enumerate(x)])


def gappy(tmp_path: Path, x: list[str], fill: str, **options: Any) -> SeriesCSVDataModule:
    options = {"lookback": 1, "val_fraction": 0.2, "test_fraction": 0.2, **options}
    return SeriesCSVDataModule(str(gappy_csv(tmp_path, x)), ["t", "x"], fill=fill, **options)


def test_missing_values_are_errors_without_fill(tmp_path: Path) -> None:
    for gap in ("", " NA ", "nan", "NULL"):
        module = gappy(tmp_path, ["1", "2", gap, "4", "5"], "none")
        with pytest.raises(UserError, match=r"gaps\.csv:4: column 'x' has no value; fill gaps with data\.fill=ffill"):
            module.setup()


def test_ffill_carries_the_last_value(tmp_path: Path) -> None:
    x = ["1", "2", "", "", "5", "6", "", "8", "9", "10"]
    assert gappy(tmp_path, x, "ffill").series()[:, 1].tolist() == [1, 2, 2, 2, 5, 6, 6, 8, 9, 10]
    with pytest.raises(UserError, match=r"gaps\.csv:2: column 'x' has no value and no earlier value .*data\.fill=ffill"):
        gappy(tmp_path, ["", *x[1:]], "ffill").series()


def test_interpolate_is_linear_and_stays_within_a_part(tmp_path: Path) -> None:
    # Parts: train rows 0-5, val 6-7, test 8-9.
    x = ["1", "", "", "4", "5", "6", "", "8", "9", "10"]
    assert gappy(tmp_path, x, "interpolate").series()[:, 1].tolist() == list(range(1, 11))
    # Row 5 is the last training row: interpolating it would read row 6, a val row.
    with pytest.raises(UserError, match=r"gaps\.csv:7: column 'x' has no value and no known values on both sides"):
        gappy(tmp_path, ["1", "2", "3", "4", "5", "", "7", "8", "9", "10"], "interpolate").series()
    with pytest.raises(UserError, match=r"gaps\.csv:2: .*data\.fill=interpolate"):
        gappy(tmp_path, ["", *x[1:]], "interpolate").series()


@pytest.mark.parametrize(
    ("times", "line", "before"),
    [
        (["1", "2", "2", "3"], 4, "2"),
        (["2020-01-03", "2020-01-02"], 3, "2020-01-03"),
        (["1960-02", "1960-01"], 3, "1960-02"),
    ],
)
def test_time_column_must_increase(tmp_path: Path, times: list[str], line: int, before: str) -> None:
    path = write_csv(tmp_path / "times.csv", "when,x", [f"{time},{i}" for i, time in enumerate(times)])
    with pytest.raises(UserError, match=rf"times\.csv:{line}: data\.time_column 'when': .* after '{before}'"):
        SeriesCSVDataModule(str(path), ["x"], time_column="when", lookback=1).series()


def test_increasing_times_are_accepted_and_are_not_inputs(tmp_path: Path) -> None:
    accepted = (["1949-12", "1950-01", "1950-02"], ["2020-01-01 23:00", "2020-01-02", "2020-01-02T01:00"], ["0.5", "2", "10"])
    for times in accepted:
        path = write_csv(tmp_path / "times.csv", "when,x", [f"{time},{i}" for i, time in enumerate(times)])
        module = SeriesCSVDataModule(str(path), "x", time_column="when", lookback=1)
        assert module.series().tolist() == [[0.0], [1.0], [2.0]]
    for times, bad in ((["1", "soon"], "soon"), (["2020-01-01", "2020-01-02T00:00+01:00"], "2020-01-02T00:00\\+01:00")):
        path = write_csv(tmp_path / "times.csv", "when,x", [f"{time},{i}" for i, time in enumerate(times)])
        message = rf"times\.csv:3: data\.time_column 'when': '{bad}' is not a number or an ISO date like '{times[0]}'"
        with pytest.raises(UserError, match=message):
            SeriesCSVDataModule(str(path), "x", time_column="when", lookback=1).series()


# -- prediction input --------------------------------------------------------------------------


def test_load_predict_file_reads_the_last_lookback_rows(tmp_path: Path) -> None:
    module = ramp_module(ramp_csv(tmp_path), normalize=True, fill="ffill")
    module.setup("fit")
    path = write_csv(tmp_path / "history.csv", "x,extra,t", [",z,4", "50,a,5", "60,b,6", "70,c,", "80,d,8"])
    assert module.load_predict_file(str(path)) == [{"history_rows": 5, "last": {"t": 8.0, "x": 80.0}}]
    (example,) = module.datasets["predict"]
    assert example["index"] == 0 and set(example) == {"inputs", "index"}
    # The leading gap is not part of the last 3 rows; row "70,c," takes t=6 from the row before.
    history = torch.tensor([[6.0, 60], [6, 70], [8, 80]], dtype=torch.float64)
    assert torch.allclose(example["inputs"], normalize(history, module.spec).float())
    batch = next(iter(module.predict_dataloader()))
    assert batch.targets is None and batch.inputs.shape == (1, 3, 2)
    short = write_csv(tmp_path / "short.csv", "t,x", ["1,2", "3,4"])
    with pytest.raises(UserError, match=r"short\.csv: 2 data rows, fewer than data\.lookback=3"):
        module.load_predict_file(str(short))
    gap = write_csv(tmp_path / "gap.csv", "t,x", ["1,2", "3,", "5,6", "7,8"])
    strict = ramp_module(ramp_csv(tmp_path), spec=module.spec)
    with pytest.raises(UserError, match=r"gap\.csv:3: column 'x' has no value"):
        strict.load_predict_file(str(gap))


# -- built-in series ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sunspots() -> SunspotsDataModule:
    module = SunspotsDataModule()
    module.setup()
    return module


@pytest.fixture(scope="module")
def airline() -> AirlineDataModule:
    module = AirlineDataModule()
    module.setup()
    return module


def test_sunspots_sizes_and_spec(sunspots: SunspotsDataModule) -> None:
    series = sunspots.series()
    assert series.shape == (309, 1)
    assert series[0, 0] == 5.0 and series[-1, 0] == pytest.approx(2.9)  # 1700 and 2008
    assert {split: len(part) for split, part in sunspots.parts.items()} == {"train": 217, "val": 46, "test": 46}
    assert {split: len(examples) for split, examples in sunspots.datasets.items()} == {"train": 187, "val": 46, "test": 46}
    spec = sunspots.spec
    assert (spec["columns"], spec["targets"], spec["target_index"]) == (["sunspots"], ["sunspots"], [0])
    assert (spec["lookback"], spec["horizon"], spec["seasonal_period"]) == (30, 1, 11)
    assert spec["baselines"] == ["naive", "seasonal_naive"]
    assert spec["scaler"]["mean"] == pytest.approx([series[:217, 0].mean()])
    assert_no_leakage(sunspots)


def test_airline_sizes_and_spec(airline: AirlineDataModule) -> None:
    series = airline.series()
    assert series.shape == (144, 1) and series[0, 0] == 112 and series[-1, 0] == 432
    assert {split: len(part) for split, part in airline.parts.items()} == {"train": 100, "val": 22, "test": 22}
    assert {split: len(examples) for split, examples in airline.datasets.items()} == {"train": 65, "val": 11, "test": 11}
    spec = airline.spec
    assert (spec["lookback"], spec["horizon"], spec["seasonal_period"]) == (24, 12, 12)
    assert airline.datasets["test"][0]["target"].shape == (12, 1)
    assert_no_leakage(airline)


# -- adding problem ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adding() -> AddingDataModule:
    module = AddingDataModule(length=50, num_train=2000, num_val=100, num_test=1000)
    module.setup()
    return module


def test_adding_targets_are_the_sum_of_the_marked_values(adding: AddingDataModule) -> None:
    for split, size in (("train", 2000), ("val", 100), ("test", 1000)):
        examples = adding.datasets[split]
        assert len(examples) == size
        for index, example in enumerate(examples[:200]):
            inputs = example["inputs"]
            assert inputs.shape == (50, 2) and example["target"].shape == (1, 1) and example["index"] == index
            values, markers = inputs[:, 0], inputs[:, 1]
            assert ((values >= 0) & (values <= 1)).all()
            (first, second) = torch.nonzero(markers).flatten().tolist()
            assert markers.sum() == 2 and first < 25 <= second
            assert example["target"].item() == pytest.approx((values * markers).sum().item(), abs=1e-6)


def test_adding_mean_prediction_mse_is_about_one_sixth(adding: AddingDataModule) -> None:
    spec = adding.spec
    assert spec["scaler"] is None and spec["baselines"] == ["mean"] and spec["target_index"] is None
    assert (spec["columns"], spec["targets"], spec["lookback"], spec["horizon"]) == (["value", "marker"], ["sum"], 50, 1)
    train = torch.tensor([example["target"].item() for example in adding.datasets["train"]])
    assert spec["target_mean"] == [pytest.approx(train.double().mean().item())]
    assert spec["target_mean"][0] == pytest.approx(1.0, abs=0.03)
    test = torch.tensor([example["target"].item() for example in adding.datasets["test"]])
    mse = ((test - spec["target_mean"][0]) ** 2).mean().item()
    assert mse == pytest.approx(1 / 6, abs=0.015)


def test_adding_is_fixed_by_generator_seed_and_round_trips(adding: AddingDataModule) -> None:
    again = AddingDataModule(length=50, num_train=3, num_val=100, num_test=1000)
    assert torch.equal(again.generate("test")[0]["inputs"], adding.generate("test")[0]["inputs"])
    assert not torch.equal(again.generate("val")[0]["inputs"], again.generate("test")[0]["inputs"])
    other = AddingDataModule(length=50, num_train=3, num_val=3, num_test=1000, generator_seed=1)
    assert not torch.equal(other.generate("test")[0]["inputs"], again.generate("test")[0]["inputs"])
    rebuilt = AddingDataModule(length=7, num_test=1000, spec=json.loads(json.dumps(adding.spec)))
    rebuilt.setup("test")
    assert set(rebuilt.datasets) == {"test"} and rebuilt.spec == adding.spec
    assert torch.equal(rebuilt.datasets["test"][5]["inputs"], adding.datasets["test"][5]["inputs"])
    with pytest.raises(UserError, match=r"data\.length"):
        AddingDataModule(length=1)


# -- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module_class", "sizes"),
    [
        ("series_csv", SeriesCSVDataModule, (24, 1)),
        ("sunspots", SunspotsDataModule, (30, 1)),
        ("airline", AirlineDataModule, (24, 12)),
        ("adding", AddingDataModule, (100, 1)),
    ],
)
def test_configs_instantiate(name: str, module_class: type, sizes: tuple[int, int], tmp_path: Path) -> None:
    overrides = [f"data={name}", "seed=7"]
    if name == "series_csv":
        overrides += [f"data.file={ramp_csv(tmp_path)}", "data.value_columns=[t,x]", "data.target_columns=[x]"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    module = instantiate(cfg.data)
    assert type(module) is module_class
    assert (module.lookback, module.horizon) == sizes
    assert module.seed == 7
    if name == "series_csv":
        assert module.columns == ["t", "x"] and module.target_index == [1]
