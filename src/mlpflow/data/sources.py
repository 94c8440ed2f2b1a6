"""Raw tables: scikit-learn's built-in sets, synthetic data, and the user's CSV/Parquet file.

Each loader returns the features as a DataFrame and the target as a Series, unvalidated:
checking the table is the prepare step's job (`mlpflow.data.splits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlpflow.config import DATASETS, TASKS
from mlpflow.errors import DataError

BUILTIN_TASKS = {name: task for name, task in DATASETS.items() if task is not None}
DATASET_NAMES = tuple(DATASETS)
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
MISSING = (None, "", "???")  # "???" is OmegaConf's mark for a mandatory value not given


def preview(names: list[str], limit: int = 12) -> str:
    """Comma-separated names, cut after `limit` so that wide tables keep the error one line."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


@dataclass(frozen=True)
class RawTable:
    """A loaded table before validation."""

    features: pd.DataFrame
    target: pd.Series
    source: dict[str, Any]
    task: str | None  # fixed by a built-in set; None when the config or the data decide


def check_source_config(data_cfg: Mapping[str, Any]) -> None:
    """Reject a bad `data.name`/`data.task` or missing csv/synthetic keys before loading."""
    name = data_cfg.get("name")
    if name not in DATASET_NAMES:
        raise DataError(f"unknown data.name={name!r}; use one of: {', '.join(DATASET_NAMES)}")
    task = data_cfg.get("task", "auto")
    if task not in (*TASKS, "auto"):
        raise DataError(f"unknown data.task={task!r}; use one of: auto, {', '.join(TASKS)}")
    if name in BUILTIN_TASKS and task not in ("auto", BUILTIN_TASKS[name]):
        raise DataError(
            f"data.name={name} is a {BUILTIN_TASKS[name]} dataset but data.task={task}; "
            f"set data.task={BUILTIN_TASKS[name]}"
        )
    if name == "csv":
        for key, example in (("path", "my_table.csv"), ("target", "label")):
            if data_cfg.get(key) in MISSING:
                raise DataError(
                    f"data.name=csv needs data.{key}; pass data.{key}={example} on the command line"
                )
    if name == "synthetic":
        _check_synthetic(data_cfg)


def _check_int(data_cfg: Mapping[str, Any], key: str, minimum: int = 1) -> None:
    value = data_cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(
            f"data.name=synthetic needs data.{key} as an integer >= {minimum} (got {value!r}); "
            f"set data.{key}=..."
        )


def _check_synthetic(data_cfg: Mapping[str, Any]) -> None:
    task = data_cfg.get("task", "auto")
    if task == "auto":
        raise DataError(
            "data.name=synthetic cannot infer its task; "
            "set data.task=binary, multiclass or regression"
        )
    _check_int(data_cfg, "n_samples")
    _check_int(data_cfg, "n_features")
    if task == "regression":
        return
    n_classes = data_cfg.get("n_classes")
    if task == "binary" and n_classes not in (None, 2):
        raise DataError(f"data.task=binary needs data.n_classes=2 (got {n_classes!r})")
    if task == "multiclass":
        _check_int(data_cfg, "n_classes", minimum=3)


def load_table(data_cfg: Mapping[str, Any], seed: int) -> RawTable:
    """Load the table `data_cfg` names (call `check_source_config` first)."""
    name = data_cfg["name"]
    if name == "csv":
        return _load_file(Path(str(data_cfg["path"])), str(data_cfg["target"]))
    if name == "synthetic":
        return _make_synthetic(data_cfg, seed)
    return _load_builtin(name)


def _load_builtin(name: str) -> RawTable:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    target = bunch.target
    if BUILTIN_TASKS[name] != "regression":
        # Keep scikit-learn's class order (breast_cancer: 0 = malignant) with readable names.
        names = [str(label) for label in bunch.target_names]
        target = pd.Series(
            pd.Categorical.from_codes(target.to_numpy(), categories=names), name=target.name
        )
    return RawTable(bunch.data, target, {"name": name}, BUILTIN_TASKS[name])


def _make_synthetic(data_cfg: Mapping[str, Any], seed: int) -> RawTable:
    from sklearn import datasets

    task = data_cfg["task"]
    n_samples, n_features = int(data_cfg["n_samples"]), int(data_cfg["n_features"])
    if task == "regression":
        X, y = datasets.make_regression(
            n_samples=n_samples, n_features=n_features, noise=10.0, random_state=seed
        )
    else:
        n_classes = int(data_cfg.get("n_classes") or 2)
        try:
            X, y = datasets.make_classification(
                n_samples=n_samples,
                n_features=n_features,
                n_informative=min(n_features, max(2, n_features // 2)),
                n_redundant=0,
                n_classes=n_classes,
                random_state=seed,
            )
        except ValueError as error:  # e.g. too many classes for the informative features
            raise DataError(
                f"data.name=synthetic: {error}; raise data.n_features or lower data.n_classes"
            ) from error
    source = {
        "name": "synthetic",
        "n_samples": n_samples,
        "n_features": n_features,
        "n_classes": None if task == "regression" else int(y.max()) + 1,
    }
    features = pd.DataFrame(X, columns=[f"f{i}" for i in range(n_features)])
    return RawTable(features, pd.Series(y, name="target"), source, None)


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; every failure becomes a one-line DataError."""
    shown = path.expanduser().resolve()
    if not shown.exists():
        raise DataError(f"data file not found: {shown}; check data.path (relative to the cwd)")
    if not shown.is_file():
        raise DataError(f"data.path is not a file: {shown}; point it at a .csv or .parquet file")
    suffix = shown.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"unsupported data file type {suffix or '(no extension)'!r} for {shown}; "
            f"use one of: {', '.join(TABLE_SUFFIXES)}"
        )
    try:
        frame = pd.read_csv(shown) if suffix == ".csv" else pd.read_parquet(shown)
    except pd.errors.EmptyDataError as error:
        raise DataError(f"data file is empty: {shown}; it needs a header and data rows") from error
    except Exception as error:  # any reader failure (parser, encoding, Arrow, I/O) means unusable
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read {shown}: {message}; check the file format") from error
    if frame.shape[1] == 0:
        raise DataError(f"data file has no columns: {shown}")
    if frame.shape[0] == 0:
        raise DataError(f"data file has no rows: {shown} (only a header?)")
    frame.columns = [str(column) for column in frame.columns]
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise DataError(f"{shown} has duplicate column names {duplicated}; rename them")
    return frame


def _load_file(path: Path, target: str) -> RawTable:
    frame = read_table(path)
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not in {path.name}; set data.target to one of: "
            f"{preview(list(frame.columns))}"
        )
    # The path as configured: an absolute one would differ between checkouts of the same data.
    source = {"name": "csv", "path": str(path)}
    return RawTable(frame.drop(columns=[target]), frame[target], source, None)
