"""The prepare stage's logic: validate a raw table, split it, fit preprocessing on train, write it.

`out_dir` holds `{X,y}_{train,val,test}.npy` and `meta.json`; it is written into a hidden sibling
directory and renamed into place, so readers never see a half-written one.

Only numpy is imported at module level: the train stage imports `load_split`/`load_meta` and
should not pay for pandas or scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpflow.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from mlpflow.data.sources import RawTable

SPLITS = ("train", "val", "test")
NAN_POLICIES = ("error", "drop", "median")
ARRAY_FILES = tuple(f"{kind}_{split}.npy" for split in SPLITS for kind in ("X", "y"))
META_FILE = "meta.json"
MAX_AUTO_CLASSES = 20  # task=auto: an integer target with at most this many values is classes
PREPARE_HINT = "run the prepare stage first (`mlpflow prepare` or `dvc repro prepare`)"


def prepare_dataset(data_cfg: Mapping[str, Any], seed: int, out_dir: str | Path) -> dict[str, Any]:
    """Load, validate, split, standardize, write out_dir atomically; return meta.

    meta is also written as `out_dir/meta.json`. Every problem with the data or the data config
    raises DataError before anything is written.
    """
    from mlpflow.data import sources

    cfg = _plain_config(data_cfg)
    sources.check_source_config(cfg)
    _check_split_config(cfg, seed)
    table = sources.load_table(cfg, seed)
    arrays, meta = _prepare(table, cfg, seed)
    return _write_atomically(Path(out_dir), arrays, meta)


def load_meta(prepared_dir: str | Path) -> dict[str, Any]:
    """Read `meta.json` of a prepared directory."""
    path = Path(prepared_dir).expanduser().absolute() / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DataError(f"no prepared data: {path} is missing; {PREPARE_HINT}") from error
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} ({error}); {PREPARE_HINT}") from error


def load_split(
    prepared_dir: str | Path, split: str, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Return (X, y) of one split: X float32 C-contiguous, y int64 classes or float32 targets."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    directory = Path(prepared_dir).expanduser().absolute()
    mode = "r" if mmap else None
    try:
        X = np.load(directory / f"X_{split}.npy", mmap_mode=mode, allow_pickle=False)
        y = np.load(directory / f"y_{split}.npy", mmap_mode=mode, allow_pickle=False)
    except FileNotFoundError as error:
        raise DataError(f"no prepared data: {error.filename} is missing; {PREPARE_HINT}") from error
    return X, y


def _plain_config(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict; a DictConfig keeps missing mandatory values as "???" instead of raising."""
    if isinstance(data_cfg, dict):
        return dict(data_cfg)
    from omegaconf import OmegaConf

    if OmegaConf.is_config(data_cfg):
        return OmegaConf.to_container(data_cfg, resolve=True)  # type: ignore[return-value]
    return dict(data_cfg)


def _check_split_config(cfg: Mapping[str, Any], seed: int) -> None:
    policy = cfg.get("nan_policy", "error")
    if policy not in NAN_POLICIES:
        raise DataError(
            f"unknown data.nan_policy={policy!r}; use one of: {', '.join(NAN_POLICIES)}"
        )
    for key in ("val_size", "test_size"):
        value = cfg.get(key, 0.15)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise DataError(f"data.{key} must be a fraction in [0, 1) of all rows (got {value!r})")
    total = cfg.get("val_size", 0.15) + cfg.get("test_size", 0.15)
    if total >= 1:
        raise DataError(
            f"data.val_size + data.test_size = {total:g} leaves no train data; make the sum < 1"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DataError(f"seed must be an integer in [0, 2**32) (got {seed!r}); set seed=...")


@dataclass
class _Target:
    task: str
    y: np.ndarray  # int64 class indices or float32 values
    classes: list[str] | None


def _prepare(
    table: RawTable, cfg: Mapping[str, Any], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Validate and split the table; return the six arrays and meta (without fingerprint)."""
    import pandas as pd

    from mlpflow.data.sources import preview

    features, target = table.features, table.target
    target_name = str(target.name)
    if features.shape[1] == 0:
        raise DataError(f"no feature columns besides the target {target_name!r}; add features")
    non_numeric = [str(c) for c in features.columns if not _is_numeric(features[c])]
    if non_numeric:
        raise DataError(
            f"non-numeric feature columns: {preview(non_numeric)}; "
            "encode them as numbers or drop them from the table"
        )
    feature_names = [str(c) for c in features.columns]
    X = features.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(X)
    bad_target = _missing_target(target)
    nan_counts = {name: int(n) for name, n in zip(feature_names, bad.sum(axis=0), strict=True) if n}
    if bad_target.any():
        nan_counts[target_name] = int(bad_target.sum())
    duplicate_rows = int(pd.concat([features, target], axis=1).duplicated().sum())

    policy = cfg.get("nan_policy", "error")
    if bad_target.any() and policy != "drop":
        raise DataError(
            f"target column {target_name!r} has {int(bad_target.sum())} missing values (NaN/inf); "
            "fill them in or set data.nan_policy=drop"
        )
    if bad.any() and policy == "error":
        counts = [f"{name} ({n})" for name, n in nan_counts.items() if name != target_name]
        raise DataError(
            f"NaN/inf in feature columns: {preview(counts)}; set data.nan_policy=drop "
            "(drop those rows) or data.nan_policy=median (impute train medians)"
        )
    keep = ~(bad.any(axis=1) | bad_target) if policy == "drop" else np.ones(len(X), dtype=bool)
    dropped_rows = int((~keep).sum())
    X = np.where(bad, np.nan, X)[keep]  # inf counts as missing from here on

    n_val, n_test = (_n_rows(cfg.get(key, 0.15), len(X)) for key in ("val_size", "test_size"))
    if len(X) - n_val - n_test < 2:
        after = f" (after dropping {dropped_rows} rows with NaN/inf)" if dropped_rows else ""
        raise DataError(
            f"only {len(X)} rows{after}: too few for data.val_size={cfg.get('val_size', 0.15)} and "
            f"data.test_size={cfg.get('test_size', 0.15)} (train needs >= 2 rows, val and test "
            ">= 1 each); add rows or lower the fractions"
        )
    encoded = _encode_target(target[keep], cfg.get("task", "auto"), table.task)
    index = _split_rows(encoded, n_val, n_test, seed)

    imputer = None
    if policy == "median":
        X, imputer = _impute_median(X, index["train"], feature_names)
    X, scaler = _standardize(X, index["train"], feature_names)

    arrays: dict[str, np.ndarray] = {}
    for split, rows in index.items():
        arrays[f"X_{split}.npy"] = np.ascontiguousarray(X[rows])
        arrays[f"y_{split}.npy"] = encoded.y[rows]
    class_counts = None
    if encoded.classes is not None:
        class_counts = {
            split: dict(zip(encoded.classes, _bincount(encoded, rows).tolist(), strict=True))
            for split, rows in index.items()
        }
    meta = {
        "task": encoded.task,
        "n_features": len(feature_names),
        "feature_names": feature_names,
        "feature_dtypes": {str(c): str(features[c].dtype) for c in features.columns},
        "target": target_name,
        "classes": encoded.classes,
        "n_outputs": len(encoded.classes) if encoded.task == "multiclass" else 1,
        "scaler": scaler,
        "imputer": imputer,
        "nan_policy": policy,
        "rows": {split: len(rows) for split, rows in index.items()},
        "class_counts": class_counts,
        "schema": {
            "constant_columns": _constant_columns(X, index["train"], feature_names),
            "duplicate_rows": duplicate_rows,
            "nan_counts": nan_counts,
            "dropped_rows": dropped_rows,
        },
        "source": table.source,
        "seed": seed,
        "val_size": float(cfg.get("val_size", 0.15)),
        "test_size": float(cfg.get("test_size", 0.15)),
    }
    return arrays, meta


def _is_numeric(column: pd.Series) -> bool:
    from pandas.api import types

    return types.is_bool_dtype(column) or (
        types.is_numeric_dtype(column) and not types.is_complex_dtype(column)
    )


def _missing_target(target: pd.Series) -> np.ndarray:
    """NaN/None in any target; ±inf too in a numeric one."""
    if _is_numeric(target) and not _is_bool(target):
        return ~np.isfinite(target.to_numpy(dtype=np.float64, na_value=np.nan))
    return target.isna().to_numpy()


def _is_bool(column: pd.Series) -> bool:
    from pandas.api import types

    return types.is_bool_dtype(column)


def _encode_target(target: pd.Series, task: str, fixed_task: str | None) -> _Target:
    """Resolve task=auto and check an explicit task against the target; encode classes 0..K-1."""
    import pandas as pd

    name = str(target.name)
    numeric = _is_numeric(target) and not _is_bool(target)
    values = target.to_numpy(dtype=np.float64) if numeric else None
    task = fixed_task or task
    if task == "auto":
        integer_valued = values is not None and bool(np.all(values == np.round(values)))
        few = values is not None and len(np.unique(values)) <= MAX_AUTO_CLASSES
        task = "regression" if numeric and not (integer_valued and few) else "classification"
    if task == "regression":
        if values is None:
            raise DataError(
                f"data.task=regression but target {name!r} is not numeric (dtype {target.dtype}); "
                "use data.task=auto, binary or multiclass"
            )
        y = values.astype(np.float32)
        if not np.isfinite(y).all():
            raise DataError(f"target {name!r} has values beyond float32 range; rescale it")
        return _Target("regression", y, None)

    if isinstance(target.dtype, pd.CategoricalDtype):
        target = target.cat.remove_unused_categories()
        classes = [str(c) for c in target.cat.categories]
        codes = target.cat.codes.to_numpy(dtype=np.int64)
    elif values is not None:
        uniques, codes = np.unique(values, return_inverse=True)
        as_int = bool(np.all(uniques == np.round(uniques)))
        classes = [str(int(v)) if as_int else str(v) for v in uniques]
    else:
        names, codes = np.unique(target.astype(str).to_numpy(dtype=object), return_inverse=True)
        classes = [str(c) for c in names]
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    if len(classes) == 1:
        raise DataError(
            f"target {name!r} has a single class {classes[0]!r}; a classifier needs at least 2"
        )
    if task == "classification":
        task = "binary" if len(classes) == 2 else "multiclass"
    elif task == "binary" and len(classes) != 2:
        raise DataError(
            f"data.task=binary but target {name!r} has {len(classes)} classes ({shown}); "
            "use data.task=multiclass or auto"
        )
    elif task == "multiclass" and len(classes) == 2:
        raise DataError(
            f"data.task=multiclass but target {name!r} has 2 classes ({shown}); "
            "use data.task=binary or auto"
        )
    return _Target(task, np.asarray(codes, dtype=np.int64).reshape(-1), classes)


def _n_rows(fraction: float, n: int) -> int:
    """Rows a split gets: ceil like scikit-learn, minus float noise (0.15 * 100 = 15.000...02)."""
    return math.ceil(fraction * n - 1e-9) if fraction > 0 else 0


def _split_rows(encoded: _Target, n_val: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices per split: test first, then val from the rest; stratified for classes."""
    from sklearn.model_selection import train_test_split

    labels = encoded.y if encoded.classes is not None else None

    def split(rows: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        if n_out == 0:
            return rows, rows[:0]
        stratify = None if labels is None else labels[rows]
        return train_test_split(rows, test_size=n_out, random_state=seed, stratify=stratify)

    sizes = (len(encoded.y) - n_val - n_test, n_val, n_test)
    try:
        rest, test = split(np.arange(len(encoded.y)), n_test)
        train, val = split(rest, n_val)
    except ValueError as error:  # scikit-learn: a class too small to stratify
        if labels is None:
            raise
        raise _class_error(encoded, np.ones(len(encoded.classes or ()), bool), sizes) from error
    index = {"train": train, "val": val, "test": test}
    if labels is not None:
        absent = np.zeros(len(encoded.classes or ()), dtype=bool)
        for rows in index.values():
            if len(rows):
                absent |= _bincount(encoded, rows) == 0
        if absent.any():
            raise _class_error(encoded, absent, sizes)
    return index


def _class_error(
    encoded: _Target, candidates: np.ndarray, sizes: tuple[int, int, int]
) -> DataError:
    """Name the smallest class among `candidates` (those missing from a split)."""
    classes = encoded.classes or []
    totals = np.bincount(encoded.y, minlength=len(classes))
    k = int(np.argmin(np.where(candidates, totals, np.iinfo(np.int64).max)))
    return DataError(
        f"stratified train/val/test splits of {'/'.join(map(str, sizes))} rows cannot hold every "
        f"class: class {classes[k]!r} has only {int(totals[k])} rows; add rows of that class, "
        "drop them, or change data.val_size/data.test_size"
    )


def _bincount(encoded: _Target, rows: np.ndarray) -> np.ndarray:
    return np.bincount(encoded.y[rows], minlength=len(encoded.classes or ()))


def _impute_median(
    X: np.ndarray, train: np.ndarray, feature_names: list[str]
) -> tuple[np.ndarray, dict[str, list[float]]]:
    from sklearn.impute import SimpleImputer

    empty = [
        name
        for name, n in zip(feature_names, np.isfinite(X[train]).sum(axis=0), strict=True)
        if n == 0
    ]
    if empty:
        raise DataError(
            f"feature columns with no values in the train split: {', '.join(empty)}; "
            "data.nan_policy=median cannot impute them, drop these columns"
        )
    imputer = SimpleImputer(strategy="median").fit(X[train])
    return imputer.transform(X), {"median": imputer.statistics_.tolist()}


def _standardize(
    X: np.ndarray, train: np.ndarray, feature_names: list[str]
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """StandardScaler fitted on train rows; float32 output."""
    from sklearn.preprocessing import StandardScaler

    with np.errstate(over="ignore", invalid="ignore"):
        scaler = StandardScaler().fit(X[train])
        Z = scaler.transform(X).astype(np.float32)
    stats_ok = np.isfinite(scaler.mean_) & np.isfinite(scaler.scale_)
    overflow = ~stats_ok | ~np.isfinite(Z).all(axis=0)
    if overflow.any():
        names = [name for name, bad in zip(feature_names, overflow, strict=True) if bad]
        raise DataError(
            f"feature columns too large to standardize: {', '.join(names)}; rescale them"
        )
    return Z, {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}


def _constant_columns(X: np.ndarray, train: np.ndarray, feature_names: list[str]) -> list[str]:
    """Columns with a single value in train: standardized to 0, useless to the model."""
    rows = X[train]
    return [name for name, column in zip(feature_names, rows.T, strict=True) if np.ptp(column) == 0]


def _write_atomically(
    out: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> dict[str, Any]:
    out = out.expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        digest = hashlib.sha256()
        for name in ARRAY_FILES:
            np.save(tmp / name, arrays[name], allow_pickle=False)
            digest.update((tmp / name).read_bytes())
        meta = {**meta, "fingerprint": digest.hexdigest()}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
        _swap_into_place(tmp, out)
    finally:
        _remove(tmp)
    return meta


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename tmp to out, replacing an older out; parallel writers may race here.

    A directory cannot be renamed over a non-empty one, so an old out is first renamed aside. If
    another writer put an identical directory in place meanwhile, that one is kept.
    """
    new_meta = (tmp / META_FILE).read_bytes()
    aside = tmp.with_name(tmp.name + ".old")
    for _ in range(10):
        try:
            os.replace(tmp, out)
            return
        except OSError:  # out exists and is not an empty directory
            if _read_bytes(out / META_FILE) == new_meta:
                return
            try:
                os.replace(out, aside)
            except FileNotFoundError:  # another writer moved it first: retry the rename
                continue
            finally:
                _remove(aside)
    raise DataError(f"could not replace {out}: other processes keep rewriting it; run again")


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
