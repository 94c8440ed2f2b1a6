"""The prepare logic: sources, validation, splits, preprocessing, atomic output."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlpflow.data import prepared
from mlpflow.data.columns import names_a_code
from mlpflow.data.prepared import ARRAY_FILES, SPLITS, Meta, load_codes, load_meta, load_split
from mlpflow.data.transforms import RARE
from mlpflow.errors import ConfigError, DataError, MlpflowError
from mlpflow.serving.raw_rows import network_inputs

from conftest import DATA_DEFAULTS, prepare_data

RID_OFFSET = 1000
BUILTINS = [
    ("breast_cancer", "binary", 569, 30, 2),
    ("digits", "multiclass", 1797, 64, 10),
    ("wine", "multiclass", 178, 13, 3),
    ("diabetes", "regression", 442, 10, None),
]


def csv_cfg(path: Path, target: str = "y", **overrides: Any) -> dict[str, Any]:
    return {
        "name": "csv",
        "task": "auto",
        "path": str(path),
        "target": target,
        "val_size": 0.15,
        "test_size": 0.15,
        "nan_policy": "error",
        "soft_clip": None,  # the tests invert the transform to find their rows again
        **overrides,
    }


def write_csv(directory: Path, frame: pd.DataFrame, name: str = "table.csv") -> Path:
    path = directory / name
    frame.to_csv(path, index=False)
    return path


def rng_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A serial number (to find rows again after splitting; offset, so that it is no row-number
    column), numeric features, a boolean, a 3-class target."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "serial": np.arange(n) + RID_OFFSET,
            "a": rng.normal(5.0, 3.0, n),
            "b": rng.integers(0, 100, n),
            "flag": rng.random(n) < 0.3,
            "y": rng.choice(["cat", "dog", "eel"], n),
        }
    )


def raw_rows(meta: Meta, X: np.ndarray) -> np.ndarray:
    """The continuous columns' raw values: the fitted transform, inverted."""
    continuous = X[:, : meta.numeric.n_continuous].astype(np.float64)
    return meta.numeric.estimator().inverse_transform(continuous)


def split_ids(out: Path, meta: Meta, split: str) -> np.ndarray:
    """The row numbers (`serial` - RID_OFFSET) of the rows in a split."""
    X, _ = load_split(out, split)
    column = raw_rows(meta, X)[:, meta.numeric.names.index("serial")]
    return np.rint(column).astype(int) - RID_OFFSET


def hidden_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --- built-in and synthetic sources ------------------------------------------------------------


@pytest.mark.parametrize(("name", "task", "n_rows", "n_features", "n_classes"), BUILTINS)
def test_builtin_dataset_prepares(tmp_path, name, task, n_rows, n_features, n_classes):
    meta = prepare_data({"name": name, "task": task}, 0, tmp_path / "out")
    assert meta.task == task
    assert len(meta.columns) == n_features  # every raw column has a plan
    kept = [column.name for column in meta.columns if column.role != "drop"]
    assert sorted(meta.numeric.names) == sorted(kept) and meta.n_features == len(kept)
    dropped = {column.action for column in meta.columns if column.role == "drop"}
    assert dropped <= {"dropped: constant"}  # digits: pixels that are 0 in every image
    assert meta.n_outputs == (n_classes if task == "multiclass" else 1)
    assert sum(meta.rows.values()) == n_rows
    assert meta == load_meta(tmp_path / "out")
    for split in SPLITS:
        X, y = load_split(tmp_path / "out", split)
        assert X.dtype == np.float32 and X.flags.c_contiguous
        assert X.shape == (meta.rows[split], meta.n_features) and len(y) == len(X)
        if task == "regression":
            assert y.dtype == np.float32 and meta.classes is None
        else:
            assert y.dtype == np.int64 and set(np.unique(y)) == set(range(n_classes))
            assert len(meta.classes) == n_classes
    if name == "breast_cancer":  # scikit-learn's class order with readable names
        assert meta.classes == ["malignant", "benign"]


def test_builtin_task_auto_is_accepted_and_a_contradicting_task_is_not(tmp_path):
    assert prepare_data({"name": "wine", "task": "auto"}, 0, tmp_path / "a").task == ("multiclass")
    with pytest.raises(ConfigError, match=r"data\.task=multiclass"):
        prepare_data({"name": "digits", "task": "regression"}, 0, tmp_path / "b")


@pytest.mark.parametrize(
    ("task", "n_classes", "n_outputs"),
    [("binary", 2, 1), ("multiclass", 4, 4), ("regression", None, 1)],
)
def test_synthetic(tmp_path, task, n_classes, n_outputs):
    cfg = {
        "name": "synthetic",
        "task": task,
        "n_samples": 400,
        "n_features": 6,
        "n_classes": n_classes,
    }
    meta = prepare_data(cfg, 3, tmp_path / "out")
    assert meta.task == task and meta.n_outputs == n_outputs
    assert meta.numeric.names == [f"f{i}" for i in range(6)]
    assert sum(meta.rows.values()) == 400
    _, y = load_split(tmp_path / "out", "train")
    assert y.dtype == (np.float32 if task == "regression" else np.int64)


# --- splits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "val", "test"), [(1000, 0.2, 0.1), (101, 0.15, 0.15), (50, 0.05, 0.3)]
)
def test_row_counts_add_up_and_follow_fractions_of_all_rows(tmp_path, n, val, test):
    cfg = {"name": "synthetic", "task": "regression", "n_samples": n, "n_features": 3}
    meta = prepare_data({**cfg, "val_size": val, "test_size": test}, 0, tmp_path / "out")
    rows = meta.rows
    assert sum(rows.values()) == n
    assert rows["val"] == int(np.ceil(val * n - 1e-9)) and rows["test"] == int(
        np.ceil(test * n - 1e-9)
    )
    assert abs(rows["val"] - val * n) < 1 and abs(rows["test"] - test * n) < 1


def test_splits_are_disjoint_and_cover_every_row(tmp_path):
    out = tmp_path / "out"
    meta = prepare_data(csv_cfg(write_csv(tmp_path, rng_table(150))), 0, out)
    ids = np.concatenate([split_ids(out, meta, split) for split in SPLITS])
    assert sorted(ids) == list(range(150))


def test_stratification_keeps_class_proportions(tmp_path):
    frame = pd.DataFrame({"x": np.arange(1000.0) / 2, "y": ["a"] * 700 + ["b"] * 200 + ["c"] * 100})
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame)), 5, tmp_path / "out")
    for split, counts in meta.class_counts.items():
        total = meta.rows[split]
        for name, share in {"a": 0.7, "b": 0.2, "c": 0.1}.items():
            assert abs(counts[name] / total - share) < 0.01, (split, name)
        _, y = load_split(tmp_path / "out", split)
        assert np.bincount(y).tolist() == [counts["a"], counts["b"], counts["c"]]


def test_scaler_is_fitted_on_train_rows_only(tmp_path):
    frame = rng_table(300)
    out = tmp_path / "out"
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame)), 0, out)
    X_train, _ = load_split(out, "train")
    assert meta.numeric.names == ["serial", "a", "b", "flag"] and meta.numeric.n_continuous == 3
    np.testing.assert_allclose(X_train[:, :3].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(X_train[:, :3].std(axis=0), 1, atol=1e-4)
    assert set(np.unique(X_train[:, 3])) == {0.0, 1.0}  # the boolean as 0/1

    features = frame.drop(columns=["y", "flag"]).astype(float)
    train = features.set_index("serial").loc[split_ids(out, meta, "train") + RID_OFFSET]
    train = train.reset_index()
    mean, scale = meta.numeric.fitted["mean_"], meta.numeric.fitted["scale_"]
    np.testing.assert_allclose(mean, train.mean().to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(scale, train.std(ddof=0).to_numpy(), rtol=1e-6)
    assert not np.allclose(mean, features.mean().to_numpy(), rtol=1e-6)

    # val and test use the train statistics: their raw values come back exactly
    for split in ("val", "test"):
        X, _ = load_split(out, split)
        ids = split_ids(out, meta, split) + RID_OFFSET
        expected = features.set_index("serial").loc[ids, ["a", "b"]].to_numpy()
        np.testing.assert_allclose(raw_rows(meta, X)[:, 1:3], expected, rtol=1e-5, atol=1e-4)


def test_constant_and_empty_columns_are_dropped_and_reported(tmp_path):
    frame = rng_table(60).assign(const=7.0, label="same", empty=np.nan)
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame)), 0, tmp_path / "out")
    roles = {column.name: (column.role, column.action) for column in meta.columns}
    assert roles["const"] == roles["label"] == ("drop", "dropped: constant")
    assert roles["empty"] == ("drop", "dropped: empty")
    assert meta.numeric.names == ["serial", "a", "b", "flag"] and not meta.categorical.names


def test_fingerprint_tracks_data_seed_and_split(tmp_path):
    cfg = {"name": "wine", "task": "multiclass"}
    first = prepare_data(cfg, 0, tmp_path / "a").fingerprint
    assert prepare_data(cfg, 0, tmp_path / "b").fingerprint == first
    assert prepare_data(cfg, 1, tmp_path / "c").fingerprint != first
    assert prepare_data({**cfg, "val_size": 0.2}, 0, tmp_path / "d").fingerprint != first
    digest = hashlib.sha256()
    for name in ARRAY_FILES:
        digest.update((tmp_path / "a" / name).read_bytes())
    assert digest.hexdigest() == first


def test_load_split_mmap_and_bad_split(tmp_path):
    prepare_data({"name": "wine", "task": "multiclass"}, 0, tmp_path / "out")
    X, _ = load_split(tmp_path / "out", "val", mmap=True)
    assert isinstance(X, np.memmap) and X.dtype == np.float32 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, load_split(tmp_path / "out", "val")[0])
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_split(tmp_path / "out", "dev")


def test_load_meta_and_load_split_without_prepared_data(tmp_path):
    with pytest.raises(DataError, match=r"meta\.json is missing.*prepare"):
        load_meta(tmp_path / "nothing")
    with pytest.raises(DataError, match=r"X_train\.npy is missing.*prepare"):
        load_split(tmp_path / "nothing", "train")


# --- files and task inference --------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_file_round_trip_keeps_feature_names_and_dtypes(tmp_path, suffix):
    frame = rng_table(80)
    path = tmp_path / f"table{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    meta = prepare_data(csv_cfg(path), 0, tmp_path / "out")
    columns = {c.name: (c.role, c.dtype) for c in meta.columns}
    assert columns == {
        "serial": ("numeric", "int64"),
        "a": ("numeric", "double"),
        "b": ("numeric", "int64"),
        "flag": ("boolean", "bool"),
    }
    assert meta.target == "y" and meta.classes == ["cat", "dog", "eel"]
    assert meta.source == {"name": "csv", "path": str(path)}
    assert meta.task == "multiclass" and meta.n_outputs == 3


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("school_id", True), ("StoreID", True), ("schid", True), ("nr", True), ("fcode", True),
        ("countyfips", True), ("zip", True), ("schoolid1", True), ("NumCompaniesWorked", False),
        ("idlnchld", False), ("age", False), ("kids", False), ("number_of_rooms", False),
        ("days_paid", False), ("n_kid", False), ("malic_acid", False), ("Thyroid", False),
        ("is_valid", False), ("userid", True), ("hhid", True),
    ],
)  # fmt: skip
def test_a_name_reads_as_an_identifier_by_its_last_word(name, code):
    assert names_a_code(name) is code


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_whole_numbers_named_as_codes_are_embedded_and_unique_ones_dropped(tmp_path, suffix):
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "school_id": rng.integers(1000, 1030, n),  # 30 schools, repeated: codes
            "person_id": rng.permutation(n) + 5000,  # unique: an ID
            "StoreID": rng.choice([1, 2, 7], n).astype(float),  # 1.0, 2.0, 7.0: codes too
            "site_code": rng.normal(size=n),  # not whole numbers: numeric
            "NumVisits": rng.integers(0, 12, n),  # a count, not a code
            "is_valid": rng.integers(0, 2, n),  # named like a code, but 0/1
            "y": rng.normal(size=n),
        }
    )
    path = tmp_path / f"table{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    meta = prepare_data(csv_cfg(path, task="regression"), 0, tmp_path / "out")
    plans = {c.name: (c.role, c.action.split(";")[0]) for c in meta.columns}
    assert plans == {
        "school_id": ("categorical", "categorical: integer codes, by its name"),
        "person_id": ("drop", "dropped: ID, by its name (300 distinct)"),
        "StoreID": ("categorical", "categorical: integer codes, by its name"),
        "site_code": ("numeric", "numeric"),
        "NumVisits": ("numeric", "numeric"),
        "is_valid": ("boolean", "boolean: 0/1"),
    }
    assert meta.categorical.names == ["school_id", "StoreID"]
    # the served model reads a code however a frame stores it: int, float or text
    served = [frame.head(5), frame.head(5).astype({"school_id": float, "StoreID": str})]
    codes = [network_inputs(meta, rows, meta.numeric.estimator())[1] for rows in served]
    np.testing.assert_array_equal(codes[0], codes[1])
    assert (codes[0] > RARE).all()  # each code a train level of its own: none unknown or rare

    # data.numeric keeps a code column a number
    meta = prepare_data(
        csv_cfg(path, task="regression", numeric=["school_id"]), 0, tmp_path / "numeric"
    )
    assert {c.name: c.role for c in meta.columns}["school_id"] == "numeric"


@pytest.mark.parametrize(
    ("target", "task", "classes"),
    [
        (["no", "yes"] * 20, "binary", ["no", "yes"]),
        ([True, False] * 20, "binary", ["False", "True"]),
        ([3, 1, 2, 1] * 10, "multiclass", ["1", "2", "3"]),
        ([1.0, 2.0] * 20, "binary", ["1", "2"]),
        (list(range(40)), "regression", None),  # integers, but more than 20 values
        ([0.5, 1.5, 2.5, 3.5] * 10, "regression", None),  # few values, but not integers
    ],
)
def test_task_auto_inference(tmp_path, target, task, classes):
    frame = pd.DataFrame({"x": np.arange(40.0) / 3, "y": target})
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame)), 0, tmp_path / "out")
    assert (meta.task, meta.classes) == (task, classes)


def test_explicit_regression_on_integer_target(tmp_path):
    frame = pd.DataFrame({"x": np.arange(40.0) / 3, "y": [0, 1] * 20})
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame), task="regression"), 0, tmp_path / "o")
    assert meta.task == "regression" and load_split(tmp_path / "o", "train")[1].dtype == np.float32


# --- missing values ------------------------------------------------------------------------------


def frame_with_gaps() -> pd.DataFrame:
    frame = rng_table(100)
    frame["a"] = frame["a"].astype(float)
    frame.loc[[3, 10, 50], "a"] = np.nan
    frame.loc[7, "a"] = np.inf
    frame["b"] = frame["b"].astype(float)
    frame.loc[[10, 20], "b"] = -np.inf
    return frame


def test_nan_policy_drop(tmp_path):
    out = tmp_path / "out"
    frame = frame_with_gaps()
    frame.loc[30, "y"] = None
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame), nan_policy="drop"), 0, out)
    assert meta.schema["nan_counts"] == {"a": 4, "b": 2, "y": 1}
    assert meta.schema["dropped_rows"] == 6  # rows 3, 7, 10, 20, 30, 50
    assert sum(meta.rows.values()) == 94 and meta.numeric.medians is None
    kept = np.concatenate([split_ids(out, meta, s) for s in SPLITS])
    assert not set(kept) & {3, 7, 10, 20, 30, 50} and len(kept) == 94


def test_nan_policy_median_imputes_with_train_medians(tmp_path):
    out = tmp_path / "out"
    frame = frame_with_gaps()
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame), nan_policy="median"), 0, out)
    assert meta.schema["dropped_rows"] == 0 and sum(meta.rows.values()) == 100
    train = frame.set_index("serial").loc[split_ids(out, meta, "train") + RID_OFFSET]
    medians = [np.nanmedian(train[c].replace([np.inf, -np.inf], np.nan)) for c in ("a", "b")]
    np.testing.assert_allclose(meta.numeric.medians[1:3], medians)
    assert meta.numeric.medians[1] != frame["a"].median()  # not the all-rows median
    gappy = [c for c in ("a", "b") if not np.isfinite(train[c]).all()]
    assert "a" in gappy and meta.numeric.indicators == gappy  # per column with gaps in train
    for split in SPLITS:
        X, _ = load_split(out, split)
        assert np.isfinite(X).all()
        raw = frame.set_index("serial").loc[split_ids(out, meta, split) + RID_OFFSET]
        gaps = ~np.isfinite(raw["a"].to_numpy())
        np.testing.assert_allclose(raw_rows(meta, X)[gaps, 1], medians[0], rtol=1e-5)
        assert (X[:, meta.numeric.features.index("a_na")] == gaps).all()


def test_nan_policy_median_rejects_a_column_empty_in_train(tmp_path):
    frame = rng_table(40)
    first = prepare_data(csv_cfg(write_csv(tmp_path, frame)), 0, tmp_path / "first")
    test_row = split_ids(tmp_path / "first", first, "test")[0]  # the split follows the target
    frame["sparse"] = np.where(np.arange(40) == test_row, 1.5, np.nan)
    with pytest.raises(DataError, match="no values in the train split: sparse"):
        prepare_data(csv_cfg(write_csv(tmp_path, frame), nan_policy="median"), 0, tmp_path / "o")


def test_rows_without_a_target_are_dropped_and_counted(tmp_path):
    frame = rng_table(100)
    frame.loc[[5, 6, 70], "y"] = None
    meta = prepare_data(csv_cfg(write_csv(tmp_path, frame)), 0, tmp_path / "out")
    assert meta.schema["missing_target_rows"] == 3 == meta.schema["dropped_rows"]
    kept = np.concatenate([split_ids(tmp_path / "out", meta, s) for s in SPLITS])
    assert sorted(kept) == sorted(set(range(100)) - {5, 6, 70})


# --- every DataError ------------------------------------------------------------------------------

Case = Callable[[Path], dict[str, Any]]


def table_case(frame: pd.DataFrame, **overrides: Any) -> Case:
    return lambda d: csv_cfg(write_csv(d, frame), **overrides)


def raw_file_case(name: str, content: bytes) -> Case:
    def build(directory: Path) -> dict[str, Any]:
        (directory / name).write_bytes(content)
        return csv_cfg(directory / name)

    return build


def no_column_parquet(directory: Path) -> dict[str, Any]:
    pd.DataFrame(index=range(3)).to_parquet(directory / "t.parquet")
    return csv_cfg(directory / "t.parquet")


GOOD = rng_table(60)
ERROR_CASES: dict[str, tuple[Case, list[str]]] = {
    "unknown name": (
        lambda d: {"name": "iris", "task": "auto"},
        ["'iris'", "breast_cancer", "csv"],
    ),
    "unknown task": (lambda d: {"name": "wine", "task": "clasification"}, ["'clasification'"]),
    "csv without path": (lambda d: {"name": "csv", "target": "y"}, ["data.path="]),
    "csv without target": (lambda d: {"name": "csv", "path": "x.csv"}, ["data.target="]),
    "csv path left ???": (
        lambda d: OmegaConf.create({"name": "csv", "task": "auto", "path": "???", "target": "y"}),
        ["data.path="],
    ),
    "synthetic task auto": (
        lambda d: {"name": "synthetic", "task": "auto", "n_samples": 10, "n_features": 2},
        ["data.task=binary"],
    ),
    "synthetic without n_samples": (
        lambda d: {"name": "synthetic", "task": "binary", "n_features": 2},
        ["data.n_samples"],
    ),
    "synthetic binary with 3 classes": (
        lambda d: {
            "name": "synthetic",
            "task": "binary",
            "n_samples": 50,
            "n_features": 4,
            "n_classes": 3,
        },
        ["data.n_classes=3", "data.task=binary"],
    ),
    "synthetic classes beyond its features": (
        lambda d: {
            "name": "synthetic",
            "task": "multiclass",
            "n_samples": 50,
            "n_features": 1,
            "n_classes": 3,
        },
        ["data.name=synthetic", "raise data.n_features"],
    ),
    "missing file": (lambda d: csv_cfg(d / "nope.csv"), ["not found", "/nope.csv"]),
    "directory": (lambda d: csv_cfg(d), ["not a file"]),
    "unsupported extension": (raw_file_case("t.txt", b"a,y\n1,2\n"), ["'.txt'", ".parquet"]),
    "empty file": (raw_file_case("t.csv", b""), ["empty"]),
    "header only": (raw_file_case("t.csv", b"a,y\n"), ["no rows"]),
    "unreadable parquet": (raw_file_case("t.parquet", b"not parquet at all"), ["cannot read"]),
    "no columns": (no_column_parquet, ["no columns"]),
    "target missing": (table_case(GOOD, target="label"), ["'label'", "serial, a, b, flag, y"]),
    "no features": (table_case(GOOD[["y"]]), ["no feature columns"]),
    "every column dropped": (
        table_case(
            GOOD.assign(serial=range(60), a=1.0, b=np.nan, flag="x", i=[f"u{k}" for k in range(60)])
        ),
        ["no usable feature column", "serial (dropped: row number)", "a (dropped: constant)"],
    ),
    "one class left once rows without a target go": (
        table_case(GOOD.assign(y=["cat"] * 30 + [None] * 30)),
        ["single class 'cat'"],
    ),
    "categorical names no column": (
        table_case(GOOD, categorical=["colour"]),
        ["data.categorical names no column of the table: colour", "serial, a, b, flag"],
    ),
    "numeric and categorical at once": (
        table_case(GOOD, categorical=["a"], numeric=["a", "b"]),
        ["data.categorical and data.numeric both list a"],
    ),
    "numeric on a mostly-text column": (
        table_case(GOOD.assign(city=["rome", "oslo", "7"] * 20), numeric=["city"]),
        ["data.numeric lists 'city'", "40 of its 60 cells are not numbers"],
    ),
    "min_category_count below 1": (
        table_case(GOOD, min_category_count=0),
        ["data.min_category_count=0", ">= 1"],
    ),
    "nan in features": (
        table_case(frame_with_gaps()),
        ["a (4), b (2)", "data.nan_policy=drop", "data.nan_policy=median"],
    ),
    "unknown nan_policy": (table_case(GOOD, nan_policy="zap"), ["nan_policy='zap'", "median"]),
    "val_size 1": (table_case(GOOD, val_size=1.0), ["data.val_size", "> 0 and < 1"]),
    "val_size 0": (table_case(GOOD, val_size=0.0), ["data.val_size=0.0", "> 0"]),
    "negative test_size": (table_case(GOOD, test_size=-0.1), ["data.test_size"]),
    "no train data": (table_case(GOOD, val_size=0.5, test_size=0.5), ["leaves no train data"]),
    "too few rows": (table_case(GOOD.head(3)), ["only 3 rows"]),
    "too few rows after drop": (
        table_case(
            pd.DataFrame({"x": [1, None, None, None, np.inf, 6], "y": [0, 1] * 3}),
            nan_policy="drop",
        ),
        ["only 2 rows", "after dropping 4 rows"],
    ),
    "single class": (table_case(GOOD.assign(y="cat")), ["single class 'cat'"]),
    "class too small to stratify": (
        table_case(GOOD.assign(y=["rare"] * 2 + ["common"] * 58)),
        ["class 'rare' has only 2 rows", "data.val_size"],
    ),
    "class missing from a split": (
        table_case(pd.DataFrame({"x": np.arange(1000) / 2, "y": ["a"] * 997 + ["b"] * 3})),
        ["class 'b' has only 3 rows"],
    ),
    "binary with 3 classes": (table_case(GOOD, task="binary"), ["data.task=binary", "3 classes"]),
    "multiclass with 2 classes": (
        table_case(GOOD.assign(y=["p", "q"] * 30), task="multiclass"),
        ["data.task=multiclass", "2 classes"],
    ),
    "regression on strings": (table_case(GOOD, task="regression"), ["'y' is not numeric"]),
    "values too large": (
        table_case(GOOD.assign(a=[1e308, -1e308] * 30)),
        ["too large to standardize: a"],
    ),
    "values beyond float32 once scaled": (  # finite in float64, inf as a float32 feature
        table_case(GOOD.assign(a=[0.0] * 59 + [1e39]), numeric_transform="robust", soft_clip=None),
        ["too large to transform: a"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_data_errors_name_the_problem(tmp_path, case):
    build, fragments = ERROR_CASES[case]
    cfg = build(tmp_path)
    out = tmp_path / "prepared"
    with pytest.raises(MlpflowError) as caught, warnings.catch_warnings():
        warnings.simplefilter("error")  # the error is the one line a user sees: no numpy warning
        prepare_data(cfg, 0, out)  # ConfigError or DataError
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not out.exists() and not hidden_entries(tmp_path)


# --- atomic output -------------------------------------------------------------------------------


def test_failed_write_leaves_no_out_dir_and_no_temp_dir(tmp_path, monkeypatch):
    real_save, calls = np.save, []

    def failing_save(*args: Any, **kwargs: Any) -> None:
        calls.append(args[0])
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare_data({"name": "wine", "task": "multiclass"}, 0, tmp_path / "out")
    assert len(calls) == 3 and Path(calls[0]).parent.name.startswith(".out.")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_out_dir(tmp_path, monkeypatch):
    out = tmp_path / "out"
    before = prepare_data({"name": "wine", "task": "multiclass"}, 0, out)

    def fail(tmp: Path, target: Path) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(prepared, "swap_into_place", fail)
    with pytest.raises(OSError, match="rename failed"):
        prepare_data({"name": "wine", "task": "multiclass"}, 1, out)
    assert load_meta(out) == before and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_rerun_replaces_out_dir(tmp_path):
    out = tmp_path / "out"
    prepare_data({"name": "wine", "task": "multiclass"}, 0, out)
    (out / "stale.txt").write_text("old")
    meta = prepare_data({"name": "wine", "task": "multiclass"}, 1, out)
    assert load_meta(out) == meta and meta.seed == 1
    assert sorted(p.name for p in out.iterdir()) == sorted([*ARRAY_FILES, "meta.json"])
    assert not hidden_entries(tmp_path)


def test_concurrent_writers_leave_one_complete_out_dir(tmp_path):
    out = tmp_path / "prepared"
    cfg = {"name": "synthetic", "task": "binary", "n_samples": 300, "n_features": 4}
    with ThreadPoolExecutor(max_workers=8) as pool:
        metas = list(pool.map(lambda _: prepare_data(cfg, 0, out), range(16)))
    assert len({m.fingerprint for m in metas}) == 1
    assert load_meta(out) == metas[0]
    assert sorted(p.name for p in out.iterdir()) == sorted([*ARRAY_FILES, "meta.json"])
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_prepare_imports_no_heavy_library():
    heavy = ("torch", "pytorch_lightning", "lightning", "torchmetrics", "mlflow")
    code = f"""
import json, sys, tempfile
from mlpflow.config.schema import DataConfig
from mlpflow.data.build import prepare_dataset
at_import = [m for m in {(*heavy, "sklearn", "pandas")!r} if m in sys.modules]
data = DataConfig.parse({{**{DATA_DEFAULTS!r}, "name": "wine", "task": "multiclass"}})
prepare_dataset(data, 0, tempfile.mkdtemp() + "/out")
print(json.dumps([at_import, [m for m in {heavy!r} if m in sys.modules]]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    at_import, after_prepare = json.loads(result.stdout)
    assert at_import == [] and after_prepare == []


# --- property: any table prepares consistently or raises DataError --------------------------------

# Hypothesis draws the shape (rows, columns, task, policy, fractions) and a seed; numpy fills in
# mostly usable values from the seed, so that many examples get through to the split, while the
# "any" kinds keep Hypothesis's own edge values (subnormals, 1e308, odd text).
FEATURE_KINDS = ["float", "int", "bool", "float", "int", "float", "text", "any float", "any text"]
TARGET_KINDS = ["classes", "classes", "int", "int", "float", "bool", "any float"]


def fill(draw: st.DrawFn, rng: np.random.Generator, kind: str, n: int) -> list[Any]:
    if kind == "any float":
        return draw(
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n, max_size=n)
        )
    if kind == "any text":
        return draw(st.lists(st.text('ab1.,e "\n', max_size=3), min_size=n, max_size=n))
    k = int(rng.choice([1, 2, 2, 3, 3, 4]))  # distinct values of the small kinds
    values = {
        "float": lambda: rng.normal(0, 10.0 ** rng.integers(-3, 6), n),
        "int": lambda: rng.integers(0, k, n),
        "bool": lambda: rng.random(n) < 0.5,
        "text": lambda: rng.choice(["a", "b", "c,d", '"q"'][:k], n),
        "classes": lambda: rng.choice(["x", "y", "z", "w"][:k], n),
    }[kind]()
    return values.tolist()


@st.composite
def tables(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, Any]]:
    n = draw(st.integers(0, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = rng.choice(FEATURE_KINDS, size=draw(st.integers(1, 4)))
    frame = pd.DataFrame({f"c{i}": fill(draw, rng, kind, n) for i, kind in enumerate(kinds)})
    frame["target"] = fill(draw, rng, str(rng.choice(TARGET_KINDS)), n)
    for name in frame.columns:
        if n and rng.random() < (0.1 if name == "target" else 0.2):  # a few NaN/inf cells
            rows = rng.choice(n, size=rng.integers(1, 4))
            frame[name] = frame[name].astype(object)
            frame.loc[rows, name] = rng.choice(np.array([np.nan, np.inf, -np.inf, None]))
    cfg = {
        "task": draw(st.sampled_from(["auto", "auto", "binary", "multiclass", "regression"])),
        "nan_policy": draw(st.sampled_from(["drop", "median", "error"])),
        "val_size": draw(st.sampled_from([0.1, 0.2, 0.05, 0.34])),
        "test_size": draw(st.sampled_from([0.15, 0.25, 0.05])),
    }
    return frame, cfg


def check_prepared(directory: Path, meta: dict[str, Any], n_rows: int) -> None:
    """Everything a prepared directory promises, checked against its own meta."""
    out = directory / "out"
    assert not hidden_entries(directory) and load_meta(out) == meta
    assert sum(meta.rows.values()) == n_rows - meta.schema["dropped_rows"]
    assert meta.rows["train"] >= 2
    classes = meta.classes
    assert meta.n_outputs == (len(classes) if meta.task == "multiclass" else 1)
    digest = hashlib.sha256()
    for split in SPLITS:
        X, y = load_split(out, split)
        assert X.shape == (meta.rows[split], meta.n_features) and len(y) == len(X)
        codes = load_codes(out, split)
        assert codes.shape == (len(y), len(meta.categorical.names))
        assert (codes >= 0).all() and (codes < meta.categorical.cardinalities).all()
        assert X.dtype == np.float32 and X.flags.c_contiguous and np.isfinite(X).all()
        if classes is None:
            assert y.dtype == np.float32 and np.isfinite(y).all()
        else:
            assert y.dtype == np.int64
            counts = np.bincount(y, minlength=len(classes)).tolist()
            assert counts == list(meta.class_counts[split].values())
            assert len(y) == 0 or min(counts) >= 1  # every class in every non-empty split
    for name in ARRAY_FILES:
        digest.update((out / name).read_bytes())
    assert digest.hexdigest() == meta.fingerprint


@settings(max_examples=50, deadline=None)
@given(tables(), st.integers(0, 2**32 - 1))
def test_any_table_prepares_consistently_or_raises_data_error(table, seed):
    frame, overrides = table
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cfg = csv_cfg(write_csv(directory, frame), target="target", **overrides)
        try:
            meta = prepare_data(cfg, seed, directory / "out")
        except DataError as error:
            assert "\n" not in str(error)
            assert not (directory / "out").exists() and not hidden_entries(directory)
            return
        assert [column.name for column in meta.columns] == list(frame.columns[:-1])
        check_prepared(directory, meta, len(frame))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(30, 80),
    n_features=st.integers(1, 5),
    k=st.sampled_from([None, 2, 3]),  # None: a float target (regression)
    gaps=st.booleans(),
    val_size=st.sampled_from([0.1, 0.2, 0.3]),
    test_size=st.sampled_from([0.1, 0.15, 0.3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_usable_tables_always_prepare(n, n_features, k, gaps, val_size, test_size, seed):
    """Numeric features (some missing, imputed) and balanced classes never raise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(0, 100, (n, n_features))).add_prefix("f")
    if gaps:
        frame = frame.mask(rng.random(frame.shape) < 0.1)
    frame["target"] = rng.normal(size=n) if k is None else rng.permutation(np.arange(n) % k)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cfg = csv_cfg(
            write_csv(directory, frame),
            target="target",
            nan_policy="median",
            val_size=val_size,
            test_size=test_size,
        )
        meta = prepare_data(cfg, seed, directory / "out")
        check_prepared(directory, meta, n)
    assert meta.task == {None: "regression", 2: "binary", 3: "multiclass"}[k]
    assert meta.rows["test"] == math.ceil(test_size * n - 1e-9)
    assert meta.rows["val"] == math.ceil(val_size * n - 1e-9)
