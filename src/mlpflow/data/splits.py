"""The prepare stage's logic: validate a raw table, split it, fit preprocessing on train, write it.

`out_dir` holds `{X,y}_{train,val,test}.npy` and `meta.json`; it is written into a hidden sibling
directory and renamed into place, so readers never see a half-written one.

Memory does not grow with the table's width x length. The source's record batches (CSV and
Parquet files streamed by pyarrow, see `mlpflow.data.sources`) go once through `_scan`, which
keeps what validation needs, one small value per row (NaN/inf flags, a row hash for duplicates,
the target) plus per-column counts, and appends the raw feature values to a float64 scratch file
in the temporary output directory. Everything fitted on the train rows and the standardized
splits are then computed in passes over that file, a chunk of rows at a time
(`mlpflow.data.arrays`): scikit-learn's StandardScaler fitted with `partial_fit` chunk by
chunk, and exact medians, a group of columns at a time. float64 keeps the raw values exactly as
read, so the statistics are those of the data, not of a float32 rounding of them; the scratch
file is deleted before the rename. Peak memory: a few chunks (16 MiB each) plus ~25 bytes per
row (the target, flags, hashes, split indices), whatever the number of columns, and for a
moment ~40 more in scikit-learn's stratified split; the median pass also holds the train values
of as many columns as fit in `MEDIAN_BUDGET_BYTES`.

Rows keep the source's order within each split (the split itself is scikit-learn's seeded,
stratified `train_test_split`): the files are then written in one sequential pass,
and training reshuffles every epoch anyway.

Why `.npy` and not Arrow/Parquet for the splits: training slices minibatches of whole rows, so
the layout it wants is row-major float32, `X[rows]` one contiguous block per row; `.npy` is
exactly that plus a 128-byte header, `np.load(mmap_mode="r")` maps it with no copy and no
decoding, and it needs nothing beyond numpy in the train stage. Arrow IPC (Feather) is columnar:
a row is spread over 32 column buffers and a minibatch has to be gathered and stacked from all
of them. Parquet is compressed and encoded, so it cannot be memory-mapped at all.

Only numpy is imported at module level: the train stage imports `load_split`/`load_meta` and
should not pay for pyarrow or scikit-learn.
"""

from __future__ import annotations

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
    import pyarrow as pa

    from mlpflow.data.arrays import RowFile
    from mlpflow.data.sources import TableSource

SPLITS = ("train", "val", "test")
NAN_POLICIES = ("error", "drop", "median")
ARRAY_FILES = tuple(f"{kind}_{split}.npy" for split in SPLITS for kind in ("X", "y"))
META_FILE = "meta.json"
RAW_FILE = ".raw-features.f64"  # the scratch copy of the raw values, in the temporary out dir
MAX_AUTO_CLASSES = 20  # task=auto: an integer target with at most this many values is classes
MEDIAN_BUDGET_BYTES = 256 << 20  # train values held at once to take exact column medians
PREPARE_HINT = "run the prepare stage first (`mlpflow prepare` or `dvc repro prepare`)"


def prepare_dataset(data_cfg: Mapping[str, Any], seed: int, out_dir: str | Path) -> dict[str, Any]:
    """Load, validate, split, standardize, write out_dir atomically; return meta.

    meta is also written as `out_dir/meta.json`. Every problem with the data or the data config
    raises DataError, and leaves out_dir as it was and no temporary directory behind.
    """
    from mlpflow.data import sources

    cfg = _plain_config(data_cfg)
    sources.check_source_config(cfg)
    _check_split_config(cfg, seed)
    table = sources.open_table(cfg, seed)
    out = Path(out_dir).expanduser().absolute()
    created = [d for d in (out.parent, *out.parent.parents) if not d.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"  # the scan writes here already
    tmp.mkdir()
    try:
        meta = _prepare(table, cfg, seed, tmp)
        return _finish(tmp, out, meta)
    except BaseException:
        _remove(tmp)
        for directory in created:  # a failed prepare leaves no new empty parents either
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    finally:
        _remove(tmp)


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


@dataclass
class _TargetValues:
    """The target column of every row, as read: float values or codes into `names`."""

    name: str
    kind: str  # "numeric", "bool", "category" (dictionary-encoded) or "text" (anything else)
    dtype: str
    values: np.ndarray | None  # numeric, bool: float64, NaN where missing
    codes: np.ndarray | None  # category, text: int64 into names, -1 where missing
    names: list[str] | None  # category: its categories in order; text: distinct values, sorted

    @property
    def missing(self) -> np.ndarray:
        """NaN/None in any target; ±inf too in a numeric one."""
        if self.kind == "numeric":
            return ~np.isfinite(self.values)
        if self.kind == "bool":
            return np.isnan(self.values)
        return self.codes < 0

    def keys(self) -> np.ndarray:
        """One uint64 per row, equal for equal values (duplicate rows)."""
        if self.values is not None:
            return _canonical_bits(self.values)
        return self.codes.astype(np.uint64)


@dataclass
class _Scan:
    """What one pass over the source's batches keeps, besides the raw values in a RowFile."""

    rows: int
    bad_counts: np.ndarray  # NaN/inf cells per feature column
    bad_rows: np.ndarray  # bool per row: a NaN/inf feature
    row_hashes: np.ndarray  # uint64 per row, of the feature values
    target: _TargetValues


def _prepare(table: TableSource, cfg: Mapping[str, Any], seed: int, tmp: Path) -> dict[str, Any]:
    """Validate and split the table; write the six arrays into tmp; return meta (no fingerprint)."""
    from mlpflow.data.arrays import RowFile
    from mlpflow.data.sources import SchemaChanged, preview

    target_name = table.target_name
    while True:  # a CSV column widened mid-scan (SchemaChanged): check the schema and scan again
        feature_names = list(table.feature_names)
        if not feature_names:
            raise DataError(f"no feature columns besides the target {target_name!r}; add features")
        non_numeric = _non_numeric(table)
        if non_numeric:
            table.settle_types()  # name every one, also those a later CSV block reveals
            non_numeric = _non_numeric(table)
            raise DataError(
                f"non-numeric feature columns: {preview(non_numeric)}; "
                "encode them as numbers or drop them from the table"
            )
        raw = RowFile(tmp / RAW_FILE, len(feature_names))
        try:
            scan = _scan(table, raw)
            break
        except BaseException as error:
            raw.remove()
            if not isinstance(error, SchemaChanged):
                raise
    try:
        return _validate_split_write(table, scan, raw, cfg, seed, tmp)
    finally:
        raw.remove()


def _validate_split_write(
    table: TableSource, scan: _Scan, raw: RowFile, cfg: Mapping[str, Any], seed: int, tmp: Path
) -> dict[str, Any]:
    feature_names, target = list(table.feature_names), scan.target
    target_name = target.name
    bad_target = target.missing
    nan_counts = {name: int(n) for name, n in zip(feature_names, scan.bad_counts, strict=True) if n}
    if bad_target.any():
        nan_counts[target_name] = int(bad_target.sum())
    duplicate_rows = _count_duplicates(scan.row_hashes, target.keys())
    scan.row_hashes = np.empty(0, np.uint64)  # sorted in place, and no longer needed

    policy = cfg.get("nan_policy", "error")
    if bad_target.any() and policy != "drop":
        raise DataError(
            f"target column {target_name!r} has {int(bad_target.sum())} missing values (NaN/inf); "
            "fill them in or set data.nan_policy=drop"
        )
    if scan.bad_counts.any() and policy == "error":
        from mlpflow.data.sources import preview

        counts = [f"{name} ({n})" for name, n in nan_counts.items() if name != target_name]
        raise DataError(
            f"NaN/inf in feature columns: {preview(counts)}; set data.nan_policy=drop "
            "(drop those rows) or data.nan_policy=median (impute train medians)"
        )
    keep = ~(scan.bad_rows | bad_target) if policy == "drop" else np.ones(scan.rows, bool)
    del bad_target
    n_kept = int(keep.sum())
    dropped_rows = scan.rows - n_kept

    n_val, n_test = (_n_rows(cfg.get(key, 0.15), n_kept) for key in ("val_size", "test_size"))
    if n_kept - n_val - n_test < 2:
        after = f" (after dropping {dropped_rows} rows with NaN/inf)" if dropped_rows else ""
        raise DataError(
            f"only {n_kept} rows{after}: too few for data.val_size={cfg.get('val_size', 0.15)} "
            f"and data.test_size={cfg.get('test_size', 0.15)} (train needs >= 2 rows, val and "
            "test >= 1 each); add rows or lower the fractions"
        )
    encoded = _encode_target(target, keep, cfg.get("task", "auto"), table.task)
    scan.target = target = None  # type: ignore[assignment]  # encoded: free 8 bytes a row
    index = _split_rows(encoded, n_val, n_test, seed)
    # The split of every kept row, then of every row of the source (-1: dropped).
    label = np.empty(n_kept, dtype=np.int8)
    for k, split in enumerate(SPLITS):
        label[index[split]] = k
    row_split = np.full(scan.rows, -1, dtype=np.int8)
    row_split[keep] = label
    del keep

    imputer = medians = None
    if policy == "median":
        medians = _train_medians(raw, row_split == 0, feature_names)
        imputer = {"median": medians.tolist()}
    mean, scale = _train_stats(raw, row_split == 0, medians)
    rows = {split: len(index[split]) for split in SPLITS}
    z_finite, constant = _write_features(raw, row_split, medians, mean, scale, rows, tmp)
    overflow = ~(np.isfinite(mean) & np.isfinite(scale)) | ~z_finite
    if overflow.any():
        names = [name for name, bad in zip(feature_names, overflow, strict=True) if bad]
        raise DataError(
            f"feature columns too large to standardize: {', '.join(names)}; rescale them"
        )
    for k, split in enumerate(SPLITS):
        np.save(tmp / f"y_{split}.npy", encoded.y[label == k], allow_pickle=False)

    class_counts = None
    if encoded.classes is not None:
        class_counts = {
            split: dict(zip(encoded.classes, _bincount(encoded, members).tolist(), strict=True))
            for split, members in index.items()
        }
    return {
        "task": encoded.task,
        "n_features": len(feature_names),
        "feature_names": feature_names,
        "feature_dtypes": {
            name: _dtype_name(kind, bool(n))
            for name, kind, n in zip(
                feature_names, table.feature_types, scan.bad_counts, strict=True
            )
        },
        "target": target_name,
        "classes": encoded.classes,
        "n_outputs": len(encoded.classes) if encoded.task == "multiclass" else 1,
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
        "imputer": imputer,
        "nan_policy": policy,
        "rows": rows,
        "class_counts": class_counts,
        "schema": {
            "constant_columns": [
                name for name, flat in zip(feature_names, constant, strict=True) if flat
            ],
            "duplicate_rows": duplicate_rows,
            "nan_counts": nan_counts,
            "dropped_rows": dropped_rows,
        },
        "source": table.source,
        "seed": seed,
        "val_size": float(cfg.get("val_size", 0.15)),
        "test_size": float(cfg.get("test_size", 0.15)),
    }


# --- the scan: record batches -> raw values on disk + what validation needs ----------------------


def _scan(table: TableSource, raw: RowFile) -> _Scan:
    """One pass over the source; may raise SchemaChanged (start over)."""
    width = len(table.feature_names)
    bad_counts = np.zeros(width, dtype=np.int64)
    bad_rows: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    targets: list[pa.Array] = []
    for batch in table.batches():
        block = np.empty((batch.num_rows, width), dtype=np.float64)
        row_hashes = np.full(batch.num_rows, HASH_SEED, dtype=np.uint64)
        for j in range(width):
            column = _float64(batch.column(j))
            block[:, j] = column
            _mix(row_hashes, _canonical_bits(column))  # a hash of each row's values
        hashes.append(row_hashes)
        bad = ~np.isfinite(block)
        bad_counts += bad.sum(axis=0)
        bad_rows.append(bad.any(axis=1))
        block[bad] = np.nan  # inf counts as missing from here on
        raw.append(block)
        targets.append(batch.column(width))
    raw.finish()
    target = _collect_target(table.target_name, table.target_type, targets)
    return _Scan(
        rows=raw.rows,
        bad_counts=bad_counts,
        bad_rows=_concat(bad_rows, bool),
        row_hashes=_concat(hashes, np.uint64),
        target=target,
    )


def _non_numeric(table: TableSource) -> list[str]:
    kinds = zip(table.feature_names, table.feature_types, strict=True)
    return [name for name, kind in kinds if not _is_numeric(kind)]


def _concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _is_numeric(kind: pa.DataType) -> bool:
    """What pandas calls numeric: integers, floats, booleans; all-missing columns too."""
    import pyarrow as pa

    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def _dtype_name(kind: pa.DataType, has_missing: bool) -> str:
    """The numpy dtype of the column, pandas-style: integers (booleans) with missing values are
    float64 (pandas: object, which prepare used to reject as non-numeric)."""
    import pyarrow as pa

    integral = pa.types.is_integer(kind) or pa.types.is_boolean(kind)
    if pa.types.is_null(kind) or (integral and has_missing):
        return "float64"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_floating(kind):
        return f"float{kind.bit_width}"
    if pa.types.is_integer(kind):
        return f"{'u' if pa.types.is_unsigned_integer(kind) else ''}int{kind.bit_width}"
    return str(kind)


def _float64(array: pa.Array) -> np.ndarray:
    """A numeric or boolean Arrow column as float64, NaN where missing (no copy when it can)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type != pa.float64():
        array = pc.cast(array, pa.float64(), safe=False)  # int64 beyond 2**53 rounds
    return _values(array, np.float64, np.nan)


def _values(array: pa.Array, dtype: Any, fill: float) -> np.ndarray:
    """A primitive Arrow array's values as numpy (a view when nothing is null), `fill` for nulls."""
    import pyarrow.compute as pc

    if array.null_count:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


HASH_SEED = np.uint64(0x243F6A8885A308D3)
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _canonical_bits(values: np.ndarray) -> np.ndarray:
    """float64 -> uint64 bits, with -0.0 as 0.0 and one NaN (equal values, equal bits)."""
    values = values + 0.0  # -0.0 + 0.0 == +0.0
    values[np.isnan(values)] = np.nan
    return values.view(np.uint64)


def _mix(h: np.ndarray, bits: np.ndarray) -> np.ndarray:
    h ^= bits
    h *= HASH_MULTIPLIER  # wraps around: uint64 arithmetic modulo 2**64
    h ^= h >> np.uint64(32)
    return h


def _count_duplicates(row_hashes: np.ndarray, target_keys: np.ndarray) -> int:
    """Rows equal to an earlier row, features and target (pandas' `duplicated().sum()`).

    Mixes the target into `row_hashes` and sorts them, in place (no copy of 8 bytes a row).

    Counted on 64-bit row hashes: two different rows collide with probability 2**-64, so a
    table of n rows reports a duplicate that is none with probability about n**2 / 2**65
    (3e-6 for 10M rows).
    """
    h = _mix(_mix(row_hashes, target_keys), np.uint64(0))  # in place; a last round: avalanche
    h.sort()
    return int(np.count_nonzero(h[1:] == h[:-1]))


def _collect_target(name: str, kind: pa.DataType, parts: list[pa.Array]) -> _TargetValues:
    import pyarrow as pa
    import pyarrow.compute as pc

    if _is_numeric(kind):  # integers, floats, booleans, all missing
        values = _concat([_float64(part) for part in parts], np.float64)
        if pa.types.is_boolean(kind):  # pandas: object when a value is missing
            dtype = "object" if np.isnan(values).any() else "bool"
            return _TargetValues(name, "bool", dtype, values, None, None)
        return _TargetValues(name, "numeric", _dtype_name(kind, False), values, None, None)
    if pa.types.is_dictionary(kind):
        chunked = pa.chunked_array(parts, type=kind).unify_dictionaries()
        dictionary = chunked.chunk(0).dictionary if chunked.num_chunks else pa.array([])
        indices = [pc.cast(chunk.indices, pa.int64()) for chunk in chunked.chunks]
        codes = _concat([_values(i, np.int64, -1) for i in indices], np.int64)
        names = [str(value) for value in dictionary.to_pylist()]
        return _TargetValues(name, "category", "category", None, codes, names)
    try:
        text = pa.chunked_array(
            [pc.cast(part, pa.large_string()) for part in parts], pa.large_string()
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise DataError(
            f"target column {name!r} of type {kind} cannot be read as class names: {error}"
        ) from error
    distinct = pc.drop_null(pc.unique(text))
    distinct = distinct.take(pc.array_sort_indices(distinct))  # UTF-8 bytes: code point order
    names = distinct.to_pylist()
    codes = pc.index_in(text, value_set=distinct)  # int32, null where missing
    codes_np = _concat([_values(c, np.int32, -1).astype(np.int64) for c in codes.chunks], np.int64)
    shown = "str" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else str(kind)
    return _TargetValues(name, "text", shown, None, codes_np, names)


def _encode_target(
    target: _TargetValues, keep: np.ndarray, task: str, fixed_task: str | None
) -> _Target:
    """Resolve task=auto and check an explicit task against the target; encode classes 0..K-1."""
    name = target.name
    numeric = target.kind == "numeric"
    values = target.values[keep] + 0.0 if numeric else None  # -0.0 is 0.0 (one class)
    task = fixed_task or task
    # sorted distinct values (finite once kept), unless the task is regression anyway
    uniques = np.unique(values) if numeric and task != "regression" else None
    if task == "auto":
        integer_valued = uniques is not None and bool(np.all(uniques == np.round(uniques)))
        few = uniques is not None and len(uniques) <= MAX_AUTO_CLASSES
        task = "regression" if numeric and not (integer_valued and few) else "classification"
    if task == "regression":
        if values is None:
            raise DataError(
                f"data.task=regression but target {name!r} is not numeric (dtype {target.dtype}); "
                "use data.task=auto, binary or multiclass"
            )
        with np.errstate(over="ignore"):
            y = values.astype(np.float32)
        if not np.isfinite(y).all():
            raise DataError(f"target {name!r} has values beyond float32 range; rescale it")
        return _Target("regression", y, None)

    if values is not None:
        codes = np.searchsorted(uniques, values)
        as_int = bool(np.all(uniques == np.round(uniques)))
        classes = [str(int(v)) if as_int else str(v) for v in uniques]
    elif target.kind == "bool":
        uniques, codes = np.unique(target.values[keep], return_inverse=True)
        classes = [str(bool(v)) for v in uniques]  # "False" < "True", as pandas' astype(str)
    else:  # category (its order) or text (sorted): the classes present, in the names' order
        used, codes = np.unique(target.codes[keep], return_inverse=True)
        classes = [target.names[i] for i in used]
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
    """Row indices per split: test first, then val from the rest; stratified for classes.

    Each step is scikit-learn's `train_test_split`. (Stratified, it gathers indices in Python
    lists for a moment, ~40 bytes a row: 0.4 GB at 10M rows.)
    """
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
    except ValueError as error:  # a class too small to stratify
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


# --- passes over the raw values: train statistics, standardized splits ---------------------------


def _train_medians(raw: RowFile, train: np.ndarray, feature_names: list[str]) -> np.ndarray:
    """Exact median of each column's train values (NaN skipped), as SimpleImputer(median).

    The train values of as many columns as fit in MEDIAN_BUDGET_BYTES are gathered at a time.
    """
    n_train, width = int(train.sum()), raw.width
    group = max(1, min(width, MEDIAN_BUDGET_BYTES // (8 * max(n_train, 1))))
    medians = np.full(width, np.nan)
    empty: list[str] = []
    for first in range(0, width, group):
        columns = slice(first, min(width, first + group))
        values = np.empty((columns.stop - first, n_train), dtype=np.float64)
        filled = 0
        for start, block in raw.chunks():
            rows = block[train[start : start + len(block)], columns]
            values[:, filled : filled + len(rows)] = rows.T
            filled += len(rows)
        for j, column in enumerate(values, start=first):
            column = column[~np.isnan(column)]
            if len(column):
                medians[j] = np.median(column)
            else:
                empty.append(feature_names[j])
        del values
    if empty:
        raise DataError(
            f"feature columns with no values in the train split: {', '.join(empty)}; "
            "data.nan_policy=median cannot impute them, drop these columns"
        )
    return medians


def _train_stats(
    raw: RowFile, train: np.ndarray, medians: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler's mean and scale of the (imputed) train rows, fitted a chunk at a time."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: reported by the caller
        for start, block in raw.chunks():
            rows = block[train[start : start + len(block)]]
            if len(rows):
                if medians is not None:
                    rows = np.where(np.isnan(rows), medians, rows)
                scaler.partial_fit(rows)
    return scaler.mean_, scaler.scale_


def _write_features(
    raw: RowFile,
    row_split: np.ndarray,
    medians: np.ndarray | None,
    mean: np.ndarray,
    scale: np.ndarray,
    rows: dict[str, int],
    tmp: Path,
) -> tuple[np.ndarray, np.ndarray]:
    """Impute, standardize, write X_{split}.npy in one pass.

    Returns which columns stayed finite, and which are constant: a single standardized (float32)
    value over the train rows, so that the model cannot use them.
    """
    from mlpflow.data.arrays import NpyWriter

    writers: list[NpyWriter] = []
    finite = np.ones(raw.width, dtype=bool)
    low = np.full(raw.width, np.inf, dtype=np.float32)
    high = np.full(raw.width, -np.inf, dtype=np.float32)
    try:
        for split in SPLITS:
            writers.append(NpyWriter(tmp / f"X_{split}.npy", (rows[split], raw.width), np.float32))
        with np.errstate(over="ignore", invalid="ignore"):
            for start, block in raw.chunks():
                labels = row_split[start : start + len(block)]
                kept = labels >= 0
                labels, values = labels[kept], block[kept]
                if medians is not None:
                    values = np.where(np.isnan(values), medians, values)
                z = ((values - mean) / scale).astype(np.float32)
                finite &= np.isfinite(z).all(axis=0)
                for k, writer in enumerate(writers):
                    rows = z[labels == k]
                    writer.write(rows)
                    if k == 0 and len(rows):
                        low = np.minimum(low, rows.min(axis=0))
                        high = np.maximum(high, rows.max(axis=0))
            constant = (high - low) == 0  # as np.ptp(train rows) == 0
        for writer in writers:
            writer.close()
    finally:
        for writer in writers:
            writer.abort()
    return finite, constant


def _finish(tmp: Path, out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Fingerprint the arrays, write meta.json, move tmp into place as out."""
    from mlpflow.data.arrays import files_digest

    meta = {**meta, "fingerprint": files_digest(tmp / name for name in ARRAY_FILES)}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    _swap_into_place(tmp, out)
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
