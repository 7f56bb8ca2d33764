"""Forecasting data: a window of past rows of a time series -> the next ``horizon`` values.

Every forecasting data module serves examples

    {"inputs": (L, F) normalised input window, "target": (H, K) normalised future values of the
     target columns, "index": int}

with one lookback L and horizon H per dataset, so batches need no padding. ``spec`` describes the
columns, the scaler and the baselines a forecaster reports (see :class:`ForecastingDataModule`).

Splitting a series: its N rows (time order, never shuffled) are cut into contiguous parts
``train | val | test``; the held-out parts are the last ``round(val_fraction * N)`` and
``round(test_fraction * N)`` rows (:func:`~rnnlab.data.splits.contiguous_split`). A window whose
first target row is t reads input rows ``t - L .. t - 1`` and target rows ``t .. t + H - 1``:

- a training window lies entirely inside the training part (inputs and targets);
- a val or test window has all its targets inside its own part; its inputs may reach back into
  earlier rows (the past is known at forecast time), never into any later row.

So no training window touches a val or test row, and no val or test target is a training row.
Consecutive windows of a part start ``stride`` rows apart, from the first t the rules allow.

Normalisation (``normalize=true``): x_norm = (x - mean) / std per input column, with mean and
(population) std of the training part only; a constant column gets std 1. Targets are the
normalised values of their columns; :func:`denormalize` brings predictions back.

Missing values (an empty field, or NA, NaN, null in any case) are filled per ``fill``:
``none`` (any gap is an error naming file:line and column), ``ffill`` (the last earlier value;
a leading gap is an error) or ``interpolate`` (linear in the row number between the known values
before and after the gap, both within the gap's own part, so no value depends on a later part;
a gap at a part's end or at the series' start is an error). A value that is not a finite number
is always an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.data.datamodule import Example, SequenceDataModule
from rnnlab.data.readers import column_index, csv_records, read_utf8
from rnnlab.data.splits import check_fraction, contiguous_split
from rnnlab.errors import UserError, check_choice, data_error

FILLS: tuple[str, ...] = ("none", "ffill", "interpolate")
#: Fields read as missing values (compared in lower case).
MISSING: frozenset[str] = frozenset({"", "na", "nan", "null"})
SPLITS: tuple[str, ...] = ("train", "val", "test")


# -- scaling -----------------------------------------------------------------------------------


def _scaler_of(spec_or_scaler: dict[str, Any] | None) -> dict[str, Any] | None:
    """The scaler ({"mean", "std"}) of a data spec, or the scaler itself; None: no normalisation."""
    if spec_or_scaler is not None and "task" in spec_or_scaler:
        return spec_or_scaler["scaler"]
    return spec_or_scaler


def _stats(scaler: dict[str, Any], columns_index: list[int] | None, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(mean (K,), std (K,)) of the columns ``columns_index`` (all when None), as ``like``'s dtype and device."""
    stats = []
    for key in ("mean", "std"):
        values = scaler[key] if columns_index is None else [scaler[key][i] for i in columns_index]
        stats.append(torch.tensor(values, dtype=like.dtype, device=like.device))
    return tuple(stats)


def normalize(
    values: torch.Tensor, spec_or_scaler: dict[str, Any] | None, columns_index: list[int] | None = None
) -> torch.Tensor:
    """(..., K) values in original units -> normalised; column k of ``values`` is input column
    ``columns_index[k]`` (all input columns in order when None). No scaler: unchanged."""
    scaler = _scaler_of(spec_or_scaler)
    if scaler is None:
        return values
    mean, std = _stats(scaler, columns_index, values)
    return (values - mean) / std


def denormalize(
    values: torch.Tensor, spec_or_scaler: dict[str, Any] | None, columns_index: list[int] | None = None
) -> torch.Tensor:
    """(..., K) normalised values -> original units, e.g. predictions (B, H, K) with
    ``spec["target_index"]``; the inverse of :func:`normalize`. No scaler: unchanged."""
    scaler = _scaler_of(spec_or_scaler)
    if scaler is None:
        return values
    mean, std = _stats(scaler, columns_index, values)
    return values * std + mean


def fit_scaler(rows: np.ndarray) -> dict[str, list[float]]:
    """Per-column mean and population std of ``rows`` (N, F); std 1 for a constant column."""
    std = rows.std(axis=0)
    # max == min, not std == 0: the std of a constant column can come out as rounding noise.
    std[np.ptp(rows, axis=0) == 0] = 1.0
    return {"mean": rows.mean(axis=0).tolist(), "std": std.tolist()}


# -- reading and filling -----------------------------------------------------------------------


@dataclass
class SeriesTable:
    """A multivariate series as read: ``values`` (N, F) float64 with NaN at missing values, one
    name per column and where each row came from ("path:line"), for error messages."""

    columns: list[str]
    values: np.ndarray
    origins: list[str]


def read_series_csv(path: str | Path, columns: list[str], time_column: str | None = None) -> SeriesTable:
    """The columns ``columns`` of a CSV file with a header row (other columns are ignored; blank
    lines are skipped). With ``time_column``, its values (numbers or ISO dates such as 2024-01-31,
    2024-01-31 12:00 or 2024-01) must increase from row to row."""
    records = csv_records(path, read_utf8(path))
    header_line, header = next(records)
    positions = [column_index(path, header_line, header, name, "data.value_columns") for name in columns]
    time_position = column_index(path, header_line, header, time_column, "data.time_column") if time_column else None
    rows: list[list[float]] = []
    origins: list[str] = []
    times: list[tuple[str, str]] = []
    for start, row in records:
        rows.append([_number(path, start, name, row[p]) for name, p in zip(columns, positions, strict=True)])
        origins.append(f"{path}:{start}")
        if time_position is not None:
            times.append((row[time_position].strip(), origins[-1]))
    if not rows:
        raise data_error(path, None, "no data rows")
    if times:
        _check_time_order(times, time_column)
    return SeriesTable(list(columns), np.array(rows, dtype=np.float64), origins)


def _number(path: str | Path, line: int, column: str, field: str) -> float:
    """One value; NaN when missing (see :data:`MISSING`)."""
    text = field.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise data_error(path, line, f"column {column!r}: {field!r} is not a number") from None
    if not math.isfinite(value):
        raise data_error(path, line, f"column {column!r}: {field!r} is not a finite number")
    return value


def _check_time_order(times: list[tuple[str, str]], column: str) -> None:
    """Each time is of the first one's kind (number, date, zoned date) and later than the one before."""
    keys = [_time_key(text) for text, _ in times]
    kind = _kind(keys[0])
    for i, (key, (text, origin)) in enumerate(zip(keys, times, strict=True)):
        if key is None or _kind(key) != kind:
            raise UserError(
                f"{origin}: data.time_column {column!r}: {text!r} is not a number or an ISO date like "
                f"{times[0][0]!r} on the first row"
            )
        if i and not key > keys[i - 1]:
            raise UserError(
                f"{origin}: data.time_column {column!r}: {text!r} does not come after {times[i - 1][0]!r} on the "
                "row before; rows must be in increasing time order"
            )


def _time_key(text: str) -> float | datetime | None:
    """A number, an ISO date (2024-01: the month's first day), or None."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        # fromisoformat does not read a bare year-month (2024-01): take the month's first day.
        return datetime.fromisoformat(f"{text}-01" if len(text) == 7 else text)
    except ValueError:
        return None


def _kind(key: float | datetime | None) -> str:
    # Dates with and without a time zone cannot be compared.
    if isinstance(key, datetime):
        return "date" if key.tzinfo is None else "zoned date"
    return "number"


def fill_missing(values: np.ndarray, fill: str, part_ends: list[int]) -> np.ndarray:
    """A copy of ``values`` (N, F) with the gaps (NaN) that ``fill`` can fill filled; the rest stay
    NaN (see :func:`check_complete`). ``part_ends``: the end row of each contiguous part, last = N;
    ``interpolate`` reads no value from a later part than the gap's."""
    values = values.copy()
    if fill == "ffill":
        rows = np.arange(len(values))[:, None]
        last_known = np.maximum.accumulate(np.where(np.isnan(values), -1, rows), axis=0)  # (N, F)
        carried = np.take_along_axis(values, np.maximum(last_known, 0), axis=0)
        return np.where(last_known >= 0, carried, np.nan)
    if fill == "interpolate":
        starts = [0, *part_ends[:-1]]
        for column in values.T:
            for start, end in zip(starts, part_ends, strict=True):
                # Values filled in earlier parts count as known: they too come from the past only.
                known = np.flatnonzero(~np.isnan(column[:end]))
                gaps = np.flatnonzero(np.isnan(column[start:end])) + start
                if known.size:
                    inside = gaps[(gaps > known[0]) & (gaps < known[-1])]
                    column[inside] = np.interp(inside, known, column[known])
    return values


def check_complete(values: np.ndarray, table: SeriesTable, fill: str, rows: range) -> None:
    """A UserError naming file:line and column of the first value of ``rows`` still missing."""
    missing = np.argwhere(np.isnan(values[rows.start : rows.stop]))
    if not missing.size:
        return
    row, column = missing[0]
    where = f"{table.origins[rows.start + row]}: column {table.columns[column]!r} has no value"
    if fill == "none":
        raise UserError(f"{where}; fill gaps with data.fill=ffill or data.fill=interpolate")
    if fill == "ffill":
        raise UserError(f"{where} and no earlier value to carry forward (data.fill=ffill)")
    raise UserError(f"{where} and no known values on both sides within its part to interpolate (data.fill=interpolate)")


# -- the data modules --------------------------------------------------------------------------


class ForecastingDataModule(SequenceDataModule):
    """Base of every forecasting dataset: windows of L rows of F input columns -> the next H
    values of K target columns. Subclasses fill ``self.datasets`` in ``setup`` and call
    :meth:`fitted_on` once the training statistics are known.

    ``spec`` (plain, JSON-able; travels in the checkpoint):

        {"task": "forecasting", "input": {"kind": "features", "num_features": F},
         "columns": [F input column names], "targets": [K target column names],
         "target_index": [position of each target among the input columns] (None when the targets
                         are not input columns, data=adding),
         "lookback": L, "horizon": H,
         "scaler": {"mean": [F], "std": [F]} (fitted on the training part) or None,
         "baselines": ["naive"(, "seasonal_naive")] or ["mean"], "seasonal_period": m or None,
         "target_mean": [K] training-target mean in original units (the "mean" baseline) or None}

    With ``spec`` (from a checkpoint) columns, lookback, horizon, seasonal period, scaler and
    target mean all come from it and nothing is refitted.
    """

    def __init__(
        self,
        columns: list[str],
        targets: list[str],
        lookback: int,
        horizon: int,
        seasonal_period: int | None = None,
        normalize: bool = True,
        fill: str = "none",
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        super().__init__(**loader_options)
        check_choice("data.fill", fill, FILLS)
        self.scaler: dict[str, list[float]] | None = None
        self.target_mean: list[float] | None = None
        self._fitted = False
        if spec is not None:
            columns, targets = spec["columns"], spec["targets"]
            lookback, horizon, seasonal_period = spec["lookback"], spec["horizon"], spec["seasonal_period"]
            normalize = spec["scaler"] is not None
            self.scaler, self.target_mean, self._fitted = spec["scaler"], spec["target_mean"], True
        if lookback < 1:
            raise UserError(f"data.lookback must be >= 1; got {lookback}")
        if horizon < 1:
            raise UserError(f"data.horizon must be >= 1; got {horizon}")
        if seasonal_period is not None:
            if seasonal_period < 1:
                raise UserError(f"data.seasonal_period must be >= 1 or null; got {seasonal_period}")
            if lookback < seasonal_period:
                raise UserError(
                    f"data.lookback={lookback} is shorter than data.seasonal_period={seasonal_period}: the "
                    "seasonal_naive baseline needs one full season of history; raise data.lookback or set "
                    "data.seasonal_period=null"
                )
        self.columns = list(columns)
        self.targets = list(targets)
        # None: the targets are not input columns (data=adding).
        self.target_index = (
            [self.columns.index(name) for name in self.targets] if set(self.targets) <= set(self.columns) else None
        )
        self.lookback = lookback
        self.horizon = horizon
        self.seasonal_period = seasonal_period
        self.normalize_inputs = normalize
        self.fill = fill

    @property
    def baselines(self) -> list[str]:
        """The baselines a forecaster scores itself against."""
        return ["naive", "seasonal_naive"] if self.seasonal_period else ["naive"]

    @property
    def fitted(self) -> bool:
        return self._fitted

    def fitted_on(self, scaler: dict[str, list[float]] | None, target_mean: list[float] | None) -> None:
        """Record what was fitted on the training split."""
        self.scaler, self.target_mean, self._fitted = scaler, target_mean, True

    @property
    def spec(self) -> dict[str, Any]:
        if not self.fitted:
            raise RuntimeError("call setup('fit') before asking for the spec")
        return {
            "task": "forecasting",
            "input": {"kind": "features", "num_features": len(self.columns)},
            "columns": list(self.columns),
            "targets": list(self.targets),
            "target_index": self.target_index,
            "lookback": self.lookback,
            "horizon": self.horizon,
            "scaler": self.scaler,
            "baselines": self.baselines,
            "seasonal_period": self.seasonal_period,
            "target_mean": self.target_mean,
        }

    def load_predict_file(self, path: str) -> list[dict[str, Any]]:
        """A CSV file with the input columns (header row; other columns ignored), gaps filled per
        ``fill``; its last L rows are the history to forecast from -> the ``predict`` split (one
        example, inputs (L, F)) and ``[{"history_rows": rows in the file, "last": {column: value}}]``
        (the last row, in original units)."""
        if not self.fitted:
            raise RuntimeError("call setup('fit') or pass spec before loading a predict file")
        table = read_series_csv(path, self.columns)
        rows = len(table.values)
        if rows < self.lookback:
            raise data_error(path, None, f"{rows} data rows, fewer than data.lookback={self.lookback}")
        values = fill_missing(table.values, self.fill, [rows])
        history = range(rows - self.lookback, rows)
        check_complete(values, table, self.fill, history)
        inputs = normalize(torch.from_numpy(values[history.start :]), self.scaler).float()  # (L, F)
        self.datasets["predict"] = [{"inputs": inputs, "index": 0}]
        return [{"history_rows": rows, "last": dict(zip(self.columns, values[-1].tolist(), strict=True))}]


class SeriesDataModule(ForecastingDataModule):
    """One multivariate series, split and windowed as the module docstring says. Subclasses
    implement :meth:`load_series`.

    Options: ``lookback`` L, ``horizon`` H, ``stride``, ``val_fraction`` / ``test_fraction``
    (of rows), ``seasonal_period`` (adds the seasonal_naive baseline), ``normalize``, ``fill``.
    After ``setup``, ``parts`` holds the row range of each part and :meth:`window_rows` the rows
    of each window.
    """

    def __init__(
        self,
        columns: list[str],
        targets: list[str],
        lookback: int = 24,
        horizon: int = 1,
        stride: int = 1,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seasonal_period: int | None = None,
        normalize: bool = True,
        fill: str = "none",
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        super().__init__(
            columns, targets, lookback, horizon, seasonal_period, normalize, fill, spec, **loader_options
        )
        if stride < 1:
            raise UserError(f"data.stride must be >= 1; got {stride}")
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction)
        self.stride = stride
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.parts: dict[str, range] = {}
        self.origins: dict[str, list[int]] = {}
        self._series: np.ndarray | None = None

    def load_series(self) -> SeriesTable:
        """The whole series with the columns ``self.columns``, in time order."""
        raise NotImplementedError

    def series(self) -> np.ndarray:
        """The whole series (N, F) in original units, gaps filled; read once (and ``parts`` set)."""
        if self._series is None:
            table = self.load_series()
            sizes = [len(rows) for rows in contiguous_split(range(len(table.values)), self.fractions).values()]
            ends = np.cumsum(sizes).tolist()
            self.parts = {split: range(end - size, end) for split, size, end in zip(SPLITS, sizes, ends, strict=True)}
            values = fill_missing(table.values, self.fill, ends)
            check_complete(values, table, self.fill, range(len(values)))
            self._series = values
        return self._series

    def window_origins(self, split: str) -> list[int]:
        """The first target row t of each window of ``split`` (inputs t - L .. t - 1, targets t .. t + H - 1)."""
        part = self.parts[split]
        # Training inputs stay in the training part (t - L >= 0 = its start); held-out inputs may
        # reach back into earlier parts, but not before row 0.
        origins = list(range(max(part.start, self.lookback), part.stop - self.horizon + 1, self.stride))
        if not origins:
            raise UserError(f"the {split} split has no windows: {self._too_small(split)}")
        return origins

    def _too_small(self, split: str) -> str:
        rows, need = len(self.parts[split]), self.lookback + self.horizon
        if split == "train":
            return (
                f"its {rows} rows are fewer than data.lookback + data.horizon = {need}; lower data.lookback or "
                "data.horizon, or data.val_fraction / data.test_fraction"
            )
        return (
            f"data.{split}_fraction={self.fractions[split]} gives {rows} rows, fewer than data.horizon="
            f"{self.horizon} (or fewer than data.lookback={self.lookback} rows before it); raise "
            f"data.{split}_fraction or lower data.horizon"
        )

    def window_rows(self, split: str) -> list[tuple[range, range]]:
        """(input rows, target rows) of each example of ``split``, in example order."""
        return [(range(t - self.lookback, t), range(t, t + self.horizon)) for t in self.origins[split]]

    def setup(self, stage: str | None = None) -> None:
        pending = self.pending_splits(stage)
        if not pending:
            return
        series = self.series()
        origins = {split: self.window_origins(split) for split in pending}
        if not self.fitted:
            scaler = fit_scaler(series[: self.parts["train"].stop]) if self.normalize_inputs else None
            self.fitted_on(scaler, None)
        values = normalize(torch.from_numpy(series), self.scaler).float()  # (N, F)
        targets = values[:, self.target_index]  # (N, K)
        L, H = self.lookback, self.horizon
        for split in pending:
            self.origins[split] = origins[split]
            # Views of one tensor: windows overlap, so copies would cost L times the memory.
            self.datasets[split] = [
                {"inputs": values[t - L : t], "target": targets[t : t + H], "index": index}
                for index, t in enumerate(origins[split])
            ]


class SeriesCSVDataModule(SeriesDataModule):
    """``data=series_csv``: the user's own series, a CSV file with a header row and one row per
    time step in time order.

    ``value_columns`` are the inputs (a single name is one column); ``target_columns`` (null: all
    of them) the columns to forecast, each also an input. ``time_column`` (optional, not an input)
    must increase from row to row.
    """

    def __init__(
        self,
        file: str,
        value_columns: list[str] | str,
        target_columns: list[str] | str | None = None,
        time_column: str | None = None,
        lookback: int = 24,
        horizon: int = 1,
        **options: Any,
    ) -> None:
        columns = [value_columns] if isinstance(value_columns, str) else list(value_columns)
        targets = columns if target_columns is None else (
            [target_columns] if isinstance(target_columns, str) else list(target_columns)
        )
        if not columns:
            raise UserError("data.value_columns must name at least one column")
        if len(set(columns)) != len(columns):
            raise UserError(f"data.value_columns names a column twice: {columns}")
        if not targets or not set(targets) <= set(columns):
            raise UserError(
                f"data.target_columns must be a non-empty subset of data.value_columns {columns}; got {targets}"
            )
        if time_column is not None and time_column in columns:
            raise UserError(f"data.time_column {time_column!r} is in data.value_columns too; the time is not an input")
        super().__init__(columns, targets, lookback, horizon, **options)
        self.file = file
        self.time_column = time_column

    def load_series(self) -> SeriesTable:
        return read_series_csv(self.file, self.columns, self.time_column)


class SunspotsDataModule(SeriesDataModule):
    """``data=sunspots``: yearly mean sunspot numbers 1700-2008 (309 rows) from statsmodels
    (``statsmodels.datasets.sunspots``, column SUNACTIVITY); one column, "sunspots". The solar
    cycle is about 11 years long, hence ``seasonal_period=11``."""

    def __init__(
        self, lookback: int = 30, horizon: int = 1, seasonal_period: int | None = 11, **options: Any
    ) -> None:
        super().__init__(["sunspots"], ["sunspots"], lookback, horizon, seasonal_period=seasonal_period, **options)

    def load_series(self) -> SeriesTable:
        try:
            from statsmodels.datasets import sunspots
        except ImportError:
            raise UserError("data=sunspots needs the package statsmodels: pip install statsmodels") from None
        data = sunspots.load_pandas().data
        values = data["SUNACTIVITY"].to_numpy(dtype=np.float64)[:, None]
        return SeriesTable(self.columns, values, [f"sunspots:{int(year)}" for year in data["YEAR"]])


class AirlineDataModule(SeriesDataModule):
    """``data=airline``: monthly international airline passengers (thousands), 1949-01 to 1960-12
    (144 rows; Box & Jenkins), from ``sktime.datasets.load_airline``; one column, "passengers"."""

    def __init__(
        self, lookback: int = 24, horizon: int = 12, seasonal_period: int | None = 12, **options: Any
    ) -> None:
        super().__init__(["passengers"], ["passengers"], lookback, horizon, seasonal_period=seasonal_period, **options)

    def load_series(self) -> SeriesTable:
        try:
            from sktime.datasets import load_airline
        except ImportError:
            raise UserError("data=airline needs the package sktime: pip install sktime") from None
        series = load_airline()
        values = series.to_numpy(dtype=np.float64)[:, None]
        return SeriesTable(self.columns, values, [f"airline:{period}" for period in series.index])


class AddingDataModule(ForecastingDataModule):
    """``data=adding``: the adding problem (Hochreiter & Schmidhuber 1997), in the form used since
    Le et al. (2015): a sequence of ``length`` T steps of (value, marker), values uniform in [0, 1],
    markers 0 except exactly two 1s, the first in the first half (steps 0 .. T//2 - 1) and the
    second in the second half. Target: the sum of the two marked values, (1, 1).

    Generated (``generator_seed``, one stream per split); inputs are not normalised. The only
    baseline is "mean": always predicting the training-target mean (about 1) gives MSE about
    1/6 = 0.167 (the variance of a sum of two uniforms); a model must get well below it.
    """

    def __init__(
        self,
        length: int = 100,
        num_train: int = 10000,
        num_val: int = 1000,
        num_test: int = 1000,
        generator_seed: int = 0,
        spec: dict[str, Any] | None = None,
        **loader_options: Any,
    ) -> None:
        if length < 2:
            raise UserError(f"data.length must be >= 2 (one marker in each half); got {length}")
        super().__init__(["value", "marker"], ["sum"], length, 1, normalize=False, spec=spec, **loader_options)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.generator_seed = generator_seed

    @property
    def baselines(self) -> list[str]:
        return ["mean"]

    def generate(self, split: str) -> list[Example]:
        """The examples of ``split``: inputs (T, 2) = (value, marker), target (1, 1) = the sum."""
        count, T = self.sizes[split], self.lookback
        rng = np.random.default_rng([self.generator_seed, SPLITS.index(split)])
        values = rng.uniform(0.0, 1.0, size=(count, T))
        first = rng.integers(0, T // 2, size=count)
        second = rng.integers(T // 2, T, size=count)
        markers = np.zeros((count, T))
        rows = np.arange(count)
        markers[rows, first] = markers[rows, second] = 1.0
        inputs = torch.from_numpy(np.stack([values, markers], axis=-1)).float()  # (count, T, 2)
        sums = torch.from_numpy(values[rows, first] + values[rows, second]).float()  # (count,)
        return [{"inputs": inputs[i], "target": sums[i].reshape(1, 1), "index": i} for i in range(count)]

    def setup(self, stage: str | None = None) -> None:
        for split in self.pending_splits(stage):
            if self.sizes[split] < 1:
                raise UserError(f"the {split} split is empty: data.num_{split} must be >= 1")
            self.datasets[split] = self.generate(split)
            if not self.fitted:
                targets = torch.stack([example["target"] for example in self.datasets[split]])  # (N, 1, 1)
                self.fitted_on(None, [targets.double().mean().item()])
