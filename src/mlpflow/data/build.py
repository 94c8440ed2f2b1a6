"""prepare, top to bottom: open the source, scan it, plan the columns, keep and split the rows,
fit the preprocessing on train, write the splits and meta.json atomically; with cv=kfold, the
same again for each fold, into folds/<i>/, from the same scan.

Each step lives in its own module: `sources` (the table as Arrow record batches), `scan` (the one
pass), `columns` (roles, the target's task and classes), `fit` (the rows, the split, the fitted
preprocessing), `leakage`, `folds` (the cross-validation folds), `prepared` (the written
directory). Peak memory: a few chunks of the scratch file plus a few bytes per row (target,
flags, hashes, split labels, one fold's), whatever the number of columns
(benchmarks/data_scale.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.columns import (
    Columns,
    Target,
    encode_target,
    plan_columns,
    scanned_as_text,
)
from mlpflow.data.fit import (
    Preprocessor,
    Rows,
    assign_splits,
    check_target_transform,
    class_counts,
    kept_rows,
    split_sizes,
)
from mlpflow.data.folds import (
    FOLD_ARRAYS,
    HELDOUT_ROWS,
    check_folds,
    check_group,
    fold_dir,
    fold_rows,
    group_ids,
    write_folds,
)
from mlpflow.data.leakage import determining_columns, sample_rows
from mlpflow.data.prepared import HELDOUT, Meta, read_rows, write_meta, write_prepared, writing
from mlpflow.data.scan import Scan, count_duplicates, scan_source
from mlpflow.data.sources import TableSource, open_table
from mlpflow.data.weights import check_split_weights, check_weight_column, row_weights
from mlpflow.notice import warn

if TYPE_CHECKING:
    from mlpflow.config.schema import CVConfig, DataConfig


def prepare_dataset(
    data: DataConfig, seed: int, out_dir: str | Path, cv: CVConfig | None = None
) -> Meta:
    """Load, check, split, preprocess, write out_dir atomically; return its meta.

    meta is also written as `out_dir/meta.json`; with cv=kfold, the folds too (`data/folds.py`).
    Every problem with the data raises DataError, and leaves out_dir as it was and no temporary
    directory behind.
    """
    from mlpflow.config.schema import CVConfig

    cv = cv or CVConfig("none")
    table = open_table(data, seed)
    check_group(cv, table.feature_names, table.target_name)
    check_weight_column(data.weight, table.feature_names)
    out = Path(out_dir).expanduser().absolute()
    with writing(out) as tmp:
        scan = scan_source(table, tmp, scanned_as_text(table.feature_names, data))
        try:
            meta = _prepare(Job(table, scan, data, cv, seed, tmp))
        finally:
            scan.raw.remove()
        meta = write_prepared(tmp, out, meta)
    for notice in table.notices:
        warn(notice)
    return meta


@dataclass(frozen=True)
class Job:
    """One prepare run: the table, its scan, the data and cv configs, the seed, and the hidden
    directory the splits are written to."""

    table: TableSource
    scan: Scan
    data: DataConfig
    cv: CVConfig
    seed: int
    tmp: Path


def _prepare(job: Job) -> Meta:
    """The splits (and folds) written into job.tmp, and their meta."""
    table, scan, data, cv = job.table, job.scan, job.data, job.cv
    columns = plan_columns(scan, data, cv.group)
    keep = kept_rows(columns, scan.target, data.nan_policy)
    report = _report(scan, columns, int(keep.sum()))
    n_val, n_test = split_sizes(int(keep.sum()), report["dropped_rows"], data)
    target = encode_target(scan.target, keep, data.task, table.task)
    check_target_transform(data.target_transform, target, table.target_name)
    if data.weight is not None:
        target.weight = row_weights(scan, data.weight, keep)
    scan.target = None  # type: ignore[assignment]  # encoded: free 8 bytes a row
    groups = None if cv.group is None else group_ids(scan, cv.group)[keep]
    rows = assign_splits(target, keep, n_val, n_test, job.seed, groups)
    if cv.kfold:
        check_folds(target, rows, groups, cv)
    fitted = _write_rows(job, columns, target, rows, job.tmp)
    report["determines_target"] = _determining_columns(job, fitted, target, rows.counts["train"])
    _warn_determining(report["determines_target"], table.target_name)
    if cv.kfold:
        folds = fold_rows(target, rows, groups, cv, data.val_size, job.seed)
        _write_folds(job, columns, target, folds, report)
        write_folds(job.tmp, cv, rows.counts["train"] + rows.counts["val"])
    return _meta(job, fitted, target, rows, report)


def _write_rows(job: Job, columns: Columns, target: Target, rows: Rows, out: Path) -> Preprocessor:
    """The preprocessing fitted on the train rows of `rows`; each split's X, C and y in `out`,
    and its row weights w (data.weight)."""
    labels = rows.row_split[rows.row_split >= 0]
    if target.weight is not None:
        for k, split in enumerate(rows.splits):
            check_split_weights(job.data.weight, split, target.weight[labels == k])
    fitted = Preprocessor(columns, job.data, job.seed).fit(rows.train, target.y[labels == 0])
    fitted.write(rows, out)
    for k, split in enumerate(rows.splits):
        np.save(out / f"y_{split}.npy", target.y[labels == k], allow_pickle=False)
        if target.weight is not None:
            np.save(out / f"w_{split}.npy", target.weight[labels == k], allow_pickle=False)
    return fitted


def _write_folds(
    job: Job, columns: Columns, target: Target, folds: Iterator[Rows], report: dict
) -> None:
    """Each fold's directory, a complete prepared one, with its held-out rows as a fourth split
    and their source row numbers."""
    for i, fold in enumerate(folds):
        directory = job.tmp / fold_dir(i)
        directory.mkdir(parents=True)
        fitted = _write_rows(job, columns, target, fold, directory)
        heldout = np.flatnonzero(fold.row_split == fold.splits.index(HELDOUT))
        np.save(directory / HELDOUT_ROWS, heldout.astype(np.int64), allow_pickle=False)
        write_meta(directory, _meta(job, fitted, target, fold, report), FOLD_ARRAYS)


def _meta(job: Job, fitted: Preprocessor, target: Target, rows: Rows, report: dict) -> Meta:
    """What `fitted` did to the rows of `rows` (the fingerprint is set when written)."""
    table, scan, data = job.table, job.scan, job.data
    plans = fitted.described()
    return Meta(
        task=target.task,
        target=table.target_name,
        classes=target.classes,
        n_outputs=len(target.classes) if target.task == "multiclass" else 1,
        columns=plans,
        numeric=fitted.numeric_,
        categorical=fitted.categorical_,
        nan_policy=data.nan_policy,
        rows=rows.counts,
        class_counts=_class_counts(target, rows),
        schema=report,
        source=table.source,
        seed=job.seed,
        val_size=float(data.val_size),
        test_size=float(data.test_size),
        example={p.name: scan.example[p.name] for p in plans if p.role != "drop"},
        text_format=table.text_format,
        target_transform=fitted.target_,
        weight=data.weight,
    )


def _report(scan: Scan, columns: Columns, n_kept: int) -> dict:
    """Missing cells per column (the target's too), duplicate rows, dropped rows."""
    nan_counts = {plan.name: plan.missing for plan in columns.plans if plan.missing}
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


def _determining_columns(job: Job, fitted: Preprocessor, target: Target, n_train: int) -> list[str]:
    """The raw columns whose train values (a date: one of its parts) determine the target
    (`data/leakage.py`)."""
    rows = sample_rows(n_train, job.seed)
    x, codes, y = (read_rows(job.tmp / f"{kind}_train.npy", rows) for kind in "XCy")
    n_classes = None if target.classes is None else len(target.classes)
    names = (fitted.numeric_.names, fitted.categorical_.names)
    features = determining_columns(x, codes, y, *names, n_classes)
    return list(dict.fromkeys(fitted.columns.sources[name] for name in features))  # raw columns


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


def _class_counts(target: Target, rows: Rows) -> dict[str, dict[str, int]] | None:
    if target.classes is None:
        return None
    return {
        split: dict(zip(target.classes, class_counts(target, members).tolist(), strict=True))
        for split, members in rows.index.items()
    }
