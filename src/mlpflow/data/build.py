"""prepare, step by step: open the source, scan it, give each column a role, check and split the
rows, fit the preprocessing on train, write the splits and meta.json atomically.

Peak memory: a few chunks of the scratch file plus a few bytes per row (target, flags, hashes,
split labels), whatever the number of columns (benchmarks/data_scale.py measures it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.arrays import RowFile
from mlpflow.data.columns import ColumnPlan, Decoder, plan_columns
from mlpflow.data.duplicates import count_duplicates
from mlpflow.data.leakage import determining_columns
from mlpflow.data.prepared import SPLITS, Meta, remove_path, write_prepared
from mlpflow.data.preprocess import Chunks
from mlpflow.data.scan import RAW_FILE, Scan, slot_count, slot_layout
from mlpflow.data.split import class_counts, split_rows, split_rows_count
from mlpflow.data.target import Target, encode_target
from mlpflow.data.transforms import CategoricalColumns, NumericColumns
from mlpflow.errors import DataError
from mlpflow.notice import warn

if TYPE_CHECKING:
    from mlpflow.config.schema import DataConfig
    from mlpflow.data.sources import TableSource


def prepare_dataset(data: DataConfig, seed: int, out_dir: str | Path) -> Meta:
    """Load, check, split, preprocess, write out_dir atomically; return its meta.

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
        raw, scan = _scan_source(table, tmp, set(data.categorical))
        try:
            meta = _prepare(table, scan, raw, data, seed, tmp)
        finally:
            raw.remove()
        meta = write_prepared(tmp, out, meta)
        for notice in table.notices:
            warn(notice)
        return meta
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


def _scan_source(table: TableSource, tmp: Path, as_text: set[str]) -> tuple[RowFile, Scan]:
    """The raw values in a scratch file and what the roles need; rescans after a CSV column
    was widened mid-scan (SchemaChanged)."""
    from mlpflow.data.scan import scan_table
    from mlpflow.data.sources import SchemaChanged

    while True:
        if not table.feature_names:
            raise DataError(
                f"no feature columns besides the target {table.target_name!r}; add features"
            )
        columns = slot_layout(table, as_text)
        raw = RowFile(tmp / RAW_FILE, slot_count(columns))
        try:
            return raw, scan_table(table, raw, columns)
        except BaseException as error:
            raw.remove()
            if not isinstance(error, SchemaChanged):
                raise


@dataclass
class Rows:
    """The split of each source row (-1: dropped) and each split's row indices."""

    row_split: np.ndarray
    index: dict[str, np.ndarray]

    @property
    def train(self) -> np.ndarray:
        return self.row_split == 0

    @property
    def counts(self) -> dict[str, int]:
        return {split: len(self.index[split]) for split in SPLITS}


def _prepare(
    table: TableSource, scan: Scan, raw: RowFile, data: DataConfig, seed: int, tmp: Path
) -> Meta:
    from mlpflow.data.fit import fit_and_write

    plans = plan_columns(scan, data.categorical, data.numeric, data.drop)
    decoder = Decoder(scan, plans)

    def chunks() -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        for start, block in raw.chunks():
            yield start, decoder.numbers(block), decoder.codes(block)

    keep = _kept_rows(scan, plans, chunks, data.nan_policy)
    report = _report(scan, plans, int(keep.sum()))
    n_val, n_test = _split_sizes(int(keep.sum()), report["dropped_rows"], data)
    encoded = encode_target(scan.target, keep, data.task, table.task)
    scan.target = None  # type: ignore[assignment]  # encoded: free 8 bytes a row
    rows = _assign_splits(encoded, keep, n_val, n_test, seed)
    numeric, categorical, plans = fit_and_write(chunks, rows, decoder, scan, plans, data, seed, tmp)
    for k, split in enumerate(SPLITS):
        np.save(tmp / f"y_{split}.npy", encoded.y[rows.row_split[keep] == k], allow_pickle=False)
    report["determines_target"] = _determining_columns(tmp, numeric, categorical, encoded, seed)
    _warn_determining(report["determines_target"], table.target_name)
    return Meta(
        task=encoded.task,
        target=table.target_name,
        classes=encoded.classes,
        n_outputs=len(encoded.classes) if encoded.task == "multiclass" else 1,
        columns=plans,
        numeric=numeric,
        categorical=categorical,
        nan_policy=data.nan_policy,
        rows=rows.counts,
        class_counts=_class_counts(encoded, rows.index),
        schema=report,
        source=table.source,
        seed=seed,
        val_size=float(data.val_size),
        test_size=float(data.test_size),
        example={p.name: scan.example[p.name] for p in plans if p.role != "drop"},
        text_format=table.text_format,
    )


def _determining_columns(
    tmp: Path, numeric: NumericColumns, categorical: CategoricalColumns, encoded: Target, seed: int
) -> list[str]:
    """The feature columns whose train values determine the target (`data/leakage.py`)."""
    x, codes, y = (np.load(tmp / f"{kind}_train.npy", mmap_mode="r") for kind in "XCy")
    n_classes = None if encoded.classes is None else len(encoded.classes)
    names = (numeric.names, categorical.names)
    return determining_columns(x, codes, y, *names, n_classes, seed)


def _warn_determining(names: list[str], target: str) -> None:
    if not names:
        return
    shown = ", ".join(repr(name) for name in names)
    verb = "determines" if len(names) == 1 else "determine"
    drop = ",".join(names)
    warn(
        f"column {shown} {verb} the target {target!r} on the train rows (a copy of it, or "
        f"computed from it?): its scores will not hold on new rows; drop it with "
        f"data.drop=[{drop}] unless it is known when predicting"
    )


def _report(scan: Scan, plans: list[ColumnPlan], n_kept: int) -> dict:
    """Missing cells per column (the target's too), duplicate rows, dropped rows."""
    nan_counts = {plan.name: plan.missing for plan in plans if plan.missing}
    missing_target = int(scan.target.missing.sum())
    if missing_target:
        nan_counts[scan.target.name] = missing_target
    duplicates = count_duplicates(scan.row_hashes, scan.target.keys())
    scan.row_hashes = np.empty(0, np.uint64)  # sorted in place, and no longer needed
    return {
        "duplicate_rows": duplicates,
        "nan_counts": nan_counts,
        "missing_target_rows": missing_target,
        "dropped_rows": scan.rows - n_kept,
    }


def _kept_rows(scan: Scan, plans: list[ColumnPlan], chunks: Chunks, policy: str) -> np.ndarray:
    """Rows with a target; with nan_policy=drop, also without a missing numeric cell. A row
    whose target is missing cannot be learned from: it is dropped (and counted) whatever the
    policy. nan_policy=error refuses missing numeric cells."""
    keep = ~scan.target.missing
    gaps = [
        f"{p.name} ({p.missing})" for p in plans if p.role in ("numeric", "boolean") and p.missing
    ]
    if gaps and policy == "error":
        from mlpflow.data.sources import preview

        raise DataError(
            f"missing values in numeric columns: {preview(gaps)}; set data.nan_policy=median "
            "(impute train medians, add missing indicators) or data.nan_policy=drop (drop rows)"
        )
    if gaps and policy == "drop":
        for start, numbers, _ in chunks():
            keep[start : start + len(numbers)] &= ~np.isnan(numbers).any(axis=1)
    return keep


def _split_sizes(n_kept: int, dropped: int, data: DataConfig) -> tuple[int, int]:
    fractions = (data.val_size, data.test_size)
    n_val, n_test = (split_rows_count(fraction, n_kept) for fraction in fractions)
    if n_kept - n_val - n_test < 2:
        after = f" (after dropping {dropped} rows with missing values)" if dropped else ""
        raise DataError(
            f"only {n_kept} rows{after}: too few for data.val_size={data.val_size} and "
            f"data.test_size={data.test_size} (train needs >= 2 rows, val and test >= 1 each); "
            "add rows or lower the fractions"
        )
    return n_val, n_test


def _assign_splits(encoded: Target, keep: np.ndarray, n_val: int, n_test: int, seed: int) -> Rows:
    index = split_rows(encoded, n_val, n_test, seed)
    label = np.empty(len(encoded.y), dtype=np.int8)
    for k, split in enumerate(SPLITS):
        label[index[split]] = k
    row_split = np.full(len(keep), -1, dtype=np.int8)
    row_split[keep] = label
    return Rows(row_split, index)


def _class_counts(
    encoded: Target, index: dict[str, np.ndarray]
) -> dict[str, dict[str, int]] | None:
    if encoded.classes is None:
        return None
    return {
        split: dict(zip(encoded.classes, class_counts(encoded, members).tolist(), strict=True))
        for split, members in index.items()
    }
