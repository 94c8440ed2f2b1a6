"""prepare, step by step: open the source, scan it, check and split the rows, fit the
preprocessing on train, write the splits and meta.json atomically.

Peak memory: a few chunks of the scratch file plus a few bytes per row (target, flags, hashes,
split labels), whatever the number of columns (benchmarks/data_scale.py measures it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.arrays import RowFile
from mlpflow.data.columns import Target, encode_target
from mlpflow.data.prepared import SPLITS, Imputer, Meta, Scaler, remove_path, write_prepared
from mlpflow.data.scan import RAW_FILE, Scan, count_duplicates, dtype_name, non_numeric_columns
from mlpflow.data.split import class_counts, split_rows, split_rows_count
from mlpflow.errors import DataError

if TYPE_CHECKING:
    from mlpflow.config.schema import DataConfig
    from mlpflow.data.sources import TableSource


def prepare_dataset(data: DataConfig, seed: int, out_dir: str | Path) -> Meta:
    """Load, check, split, standardize, write out_dir atomically; return its meta.

    meta is also written as `out_dir/meta.json`. Every problem with the data raises DataError,
    and leaves out_dir as it was and no temporary directory behind.
    """
    from mlpflow.data.sources import open_table

    table = open_table(data, seed)
    out = Path(out_dir).expanduser().absolute()
    created = [d for d in (out.parent, *out.parent.parents) if not d.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"  # the scan writes here already
    tmp.mkdir()
    try:
        raw, scan = _scan_source(table, tmp)
        try:
            meta = _split_and_write(table, scan, raw, data, seed, tmp)
        finally:
            raw.remove()
        return write_prepared(tmp, out, meta)
    except BaseException:
        remove_path(tmp)
        for directory in created:  # a failed prepare leaves no new empty parents either
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    finally:
        remove_path(tmp)


def _scan_source(table: TableSource, tmp: Path) -> tuple[RowFile, Scan]:
    """The raw values in a scratch file and what validation needs; rescans after a CSV column
    was widened mid-scan (SchemaChanged)."""
    from mlpflow.data.scan import scan_table
    from mlpflow.data.sources import SchemaChanged, preview

    while True:
        if not table.feature_names:
            raise DataError(
                f"no feature columns besides the target {table.target_name!r}; add features"
            )
        if non_numeric_columns(table):
            table.settle_types()  # name every one, also those a later CSV block reveals
            raise DataError(
                f"non-numeric feature columns: {preview(non_numeric_columns(table))}; "
                "encode them as numbers or drop them from the table"
            )
        raw = RowFile(tmp / RAW_FILE, len(table.feature_names))
        try:
            return raw, scan_table(table, raw)
        except BaseException as error:
            raw.remove()
            if not isinstance(error, SchemaChanged):
                raise


@dataclass
class _Rows:
    """Which rows are kept (nan_policy=drop) and the split of each row (-1: dropped)."""

    kept: np.ndarray
    row_split: np.ndarray
    index: dict[str, np.ndarray]

    @property
    def train(self) -> np.ndarray:
        return self.row_split == 0


def _split_and_write(
    table: TableSource, scan: Scan, raw: RowFile, data: DataConfig, seed: int, tmp: Path
) -> Meta:
    names = list(table.feature_names)
    report = _schema_report(names, scan)
    keep = _kept_rows(names, scan, data.nan_policy)
    report["dropped_rows"] = scan.rows - int(keep.sum())
    n_val, n_test = _split_sizes(int(keep.sum()), report["dropped_rows"], data)
    encoded = encode_target(scan.target, keep, data.task, table.task)
    scan.target = None  # type: ignore[assignment]  # encoded: free 8 bytes a row
    rows = _assign_splits(encoded, keep, n_val, n_test, seed)
    imputer, scaler, constant = _fit_and_write_features(raw, rows, names, data.nan_policy, tmp)
    for k, split in enumerate(SPLITS):
        np.save(
            tmp / f"y_{split}.npy", encoded.y[rows.row_split[rows.kept] == k], allow_pickle=False
        )
    report["constant_columns"] = [n for n, flat in zip(names, constant, strict=True) if flat]
    return Meta(
        task=encoded.task,
        n_features=len(names),
        feature_names=names,
        feature_dtypes={
            name: dtype_name(kind, bool(n))
            for name, kind, n in zip(names, table.feature_types, scan.bad_counts, strict=True)
        },
        target=table.target_name,
        classes=encoded.classes,
        n_outputs=len(encoded.classes) if encoded.task == "multiclass" else 1,
        scaler=scaler,
        imputer=imputer,
        nan_policy=data.nan_policy,
        rows={split: len(rows.index[split]) for split in SPLITS},
        class_counts=_class_counts(encoded, rows.index),
        schema={key: report[key] for key in SCHEMA_KEYS},
        source=table.source,
        seed=seed,
        val_size=float(data.val_size),
        test_size=float(data.test_size),
    )


SCHEMA_KEYS = ("constant_columns", "duplicate_rows", "nan_counts", "dropped_rows")


def _schema_report(names: list[str], scan: Scan) -> dict:
    """NaN/inf counts per column (the target's too) and duplicate rows."""
    nan_counts = {name: int(n) for name, n in zip(names, scan.bad_counts, strict=True) if n}
    bad_target = scan.target.missing
    if bad_target.any():
        nan_counts[scan.target.name] = int(bad_target.sum())
    duplicates = count_duplicates(scan.row_hashes, scan.target.keys())
    scan.row_hashes = np.empty(0, np.uint64)  # sorted in place, and no longer needed
    return {"nan_counts": nan_counts, "duplicate_rows": duplicates}


def _kept_rows(names: list[str], scan: Scan, policy: str) -> np.ndarray:
    """The rows prepare keeps under `policy`; a DataError for NaN/inf it does not handle."""
    from mlpflow.data.sources import preview

    bad_target = scan.target.missing
    if bad_target.any() and policy != "drop":
        raise DataError(
            f"target column {scan.target.name!r} has {int(bad_target.sum())} missing values "
            "(NaN/inf); fill them in or set data.nan_policy=drop"
        )
    if scan.bad_counts.any() and policy == "error":
        counts = [f"{name} ({n})" for name, n in zip(names, scan.bad_counts, strict=True) if n]
        raise DataError(
            f"NaN/inf in feature columns: {preview(counts)}; set data.nan_policy=drop "
            "(drop those rows) or data.nan_policy=median (impute train medians)"
        )
    return ~(scan.bad_rows | bad_target) if policy == "drop" else np.ones(scan.rows, bool)


def _split_sizes(n_kept: int, dropped: int, data: DataConfig) -> tuple[int, int]:
    n_val, n_test = (
        split_rows_count(fraction, n_kept) for fraction in (data.val_size, data.test_size)
    )
    if n_kept - n_val - n_test < 2:
        after = f" (after dropping {dropped} rows with NaN/inf)" if dropped else ""
        raise DataError(
            f"only {n_kept} rows{after}: too few for data.val_size={data.val_size} and "
            f"data.test_size={data.test_size} (train needs >= 2 rows, val and test >= 1 each); "
            "add rows or lower the fractions"
        )
    return n_val, n_test


def _assign_splits(encoded: Target, keep: np.ndarray, n_val: int, n_test: int, seed: int) -> _Rows:
    index = split_rows(encoded, n_val, n_test, seed)
    label = np.empty(len(encoded.y), dtype=np.int8)
    for k, split in enumerate(SPLITS):
        label[index[split]] = k
    row_split = np.full(len(keep), -1, dtype=np.int8)
    row_split[keep] = label
    return _Rows(keep, row_split, index)


def _fit_and_write_features(
    raw: RowFile, rows: _Rows, names: list[str], policy: str, tmp: Path
) -> tuple[Imputer | None, Scaler, np.ndarray]:
    """Fit the imputer and scaler on train, write X_{split}.npy; return which columns are
    constant on train."""
    from mlpflow.data.preprocess import train_medians, train_scaler, write_features

    medians = train_medians(raw, rows.train, names) if policy == "median" else None
    mean, scale = train_scaler(raw, rows.train, medians)
    counts = {split: len(rows.index[split]) for split in SPLITS}
    z_finite, constant = write_features(raw, rows.row_split, medians, mean, scale, counts, tmp)
    overflow = ~(np.isfinite(mean) & np.isfinite(scale)) | ~z_finite
    if overflow.any():
        bad = [name for name, over in zip(names, overflow, strict=True) if over]
        raise DataError(f"feature columns too large to standardize: {', '.join(bad)}; rescale them")
    imputer = None if medians is None else Imputer(medians.tolist())
    return imputer, Scaler(mean.tolist(), scale.tolist()), constant


def _class_counts(
    encoded: Target, index: dict[str, np.ndarray]
) -> dict[str, dict[str, int]] | None:
    if encoded.classes is None:
        return None
    return {
        split: dict(zip(encoded.classes, class_counts(encoded, members).tolist(), strict=True))
        for split, members in index.items()
    }
