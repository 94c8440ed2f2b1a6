"""The rows and the fit: which rows are kept, the train/val/test split, and the preprocessing
fitted on the train rows, then applied to every split as it is written.

Every pass reads the scratch file a chunk at a time (`Columns.chunks`), so memory holds a few
chunks plus a few bytes per row whatever the table's width. Rows keep the source's order within
each split, so the splits are written in one sequential pass (training reshuffles every epoch
anyway). scikit-learn is imported inside `split_off`: importing the prepare stage (the pipeline
does, to find its cached prepared data) stays free of it, ~1.4 s of start-up with scipy
(benchmarks/README.md; tests/test_data.py checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpflow.data.columns import Columns, Target
from mlpflow.data.prepared import ColumnPlan, NpyWriter
from mlpflow.data.scan import TargetValues
from mlpflow.data.sources import preview
from mlpflow.data.transforms import (
    FITTED_ATTRIBUTES,
    MISSING,
    RARE,
    UNKNOWN,
    CategoricalColumns,
    NumericColumns,
    TargetTransform,
    make_estimator,
)
from mlpflow.errors import DataError

if TYPE_CHECKING:
    from mlpflow.config.schema import DataConfig

MEDIAN_BUDGET_BYTES = 256 << 20  # train values held at once to take exact column medians
SAMPLE_ROWS = 100_000  # train rows the robust and quantile transforms are fitted on


# >>> The rows: kept, then split


@dataclass
class Rows:
    """The split of each source row (-1: dropped; k: the k-th split of `index`) and each
    split's row indices among the kept rows: train, val, test (and a fold's heldout)."""

    row_split: np.ndarray
    index: dict[str, np.ndarray]

    @property
    def train(self) -> np.ndarray:
        return self.row_split == 0

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.index)

    @property
    def counts(self) -> dict[str, int]:
        return {split: len(rows) for split, rows in self.index.items()}


def kept_rows(columns: Columns, target: TargetValues, policy: str) -> np.ndarray:
    """Rows with a target; with nan_policy=drop, also without a missing numeric cell. A row
    whose target is missing cannot be learned from: it is dropped (and counted) whatever the
    policy. nan_policy=error refuses missing numeric cells."""
    keep = ~target.missing
    gaps = [
        f"{p.name} ({p.missing})"
        for p in columns.plans
        if p.role in ("numeric", "boolean", "date") and p.missing
    ]
    if gaps and policy == "error":
        raise DataError(
            f"missing values in numeric or date columns: {preview(gaps)}; set "
            "data.nan_policy=median (impute train medians, add missing indicators) or "
            "data.nan_policy=drop (drop rows)"
        )
    if gaps and policy == "drop":
        for start, numbers, _ in columns.chunks():
            keep[start : start + len(numbers)] &= ~np.isnan(numbers).any(axis=1)
    return keep


def check_target_transform(transform: str, target: Target, name: str) -> None:
    """data.target_transform fits the target: a regression one (task auto is resolved only
    now), and for log1p every value in its domain, > -1 (val and test rows too: their loss)."""
    from mlpflow.config.schema import check_target_transform_fits

    check_target_transform_fits(transform, target.task)
    if transform != "log1p":
        return
    outside = target.y <= -1
    if outside.any():
        raise DataError(
            f"data.target_transform=log1p needs every target > -1, but {name!r} has "
            f"{int(outside.sum())} values <= -1 (min {float(target.y.min()):g}): use "
            "data.target_transform=quantile or none, or shift the target"
        )


def split_sizes(n_kept: int, dropped: int, data: DataConfig) -> tuple[int, int]:
    """The rows of val and of test; a DataError when train would keep fewer than 2."""
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


def split_rows_count(fraction: float, n: int) -> int:
    """Rows a split gets: ceil like scikit-learn, minus float noise (0.15 * 100 = 15.000...02)."""
    return math.ceil(fraction * n - 1e-9) if fraction > 0 else 0


def assign_splits(
    target: Target,
    keep: np.ndarray,
    n_val: int,
    n_test: int,
    seed: int,
    groups: np.ndarray | None = None,
) -> Rows:
    """Each source row's split: the kept rows (whose targets `target` holds) split by
    `split_rows`, the others -1."""
    return labelled_rows(keep, split_rows(target, n_val, n_test, seed, groups))


def labelled_rows(keep: np.ndarray, index: dict[str, np.ndarray]) -> Rows:
    """The Rows of `index` (kept-row indices per split, in label order) over the source rows."""
    label = np.empty(int(keep.sum()), dtype=np.int8)
    for k, rows in enumerate(index.values()):
        label[rows] = k
    row_split = np.full(len(keep), -1, dtype=np.int8)
    row_split[keep] = label
    return Rows(row_split, index)


def split_rows(
    target: Target, n_val: int, n_test: int, seed: int, groups: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Row indices per split: test first, then val from the rest (`split_off`); stratified for
    classes, or whole `groups` (a group id per kept row, cv.group) apart."""
    labels = target.y if target.classes is not None else None
    sizes = (len(target.y) - n_val - n_test, n_val, n_test)
    try:
        rest, test = split_off(np.arange(len(target.y)), n_test, seed, labels, groups)
        train, val = split_off(rest, n_val, seed, labels, groups)
    except ValueError as error:  # a class too small to stratify, or too few groups
        if groups is not None:
            n_groups = len(np.unique(groups))
            raise DataError(
                f"cv.group has {n_groups} groups: too few to split off whole groups as val and "
                "test; group by a column with more groups, or set cv.group=null"
            ) from error
        if labels is None:
            raise
        raise class_error(target, np.ones(len(target.classes or ()), bool), sizes) from error
    index = {"train": train, "val": val, "test": test}
    if labels is not None:
        absent = np.zeros(len(target.classes or ()), dtype=bool)
        for rows in index.values():
            if len(rows):
                absent |= class_counts(target, rows) == 0
        if absent.any():
            raise class_error(target, absent, sizes)
    return index


def split_off(
    rows: np.ndarray,
    n_out: int,
    seed: int,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(the rest, n_out rows split off) of `rows`, by scikit-learn's `train_test_split`,
    stratified by `labels` (per kept row; None: not stratified). With `groups` (per kept row),
    `GroupShuffleSplit` splits off whole groups instead: about n_out rows' share of the groups.
    (Stratified, it gathers indices in Python lists for a moment: tens of bytes a row, see
    benchmarks/README.md.) A ValueError when a class or the groups are too few."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if n_out == 0:
        return rows, rows[:0]
    if groups is None:
        stratify = None if labels is None else labels[rows]
        return train_test_split(rows, test_size=n_out, random_state=seed, stratify=stratify)
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_out / len(rows), random_state=seed)
    rest, out = next(splitter.split(rows, groups=groups[rows]))
    return rows[rest], rows[out]


def class_error(target: Target, candidates: np.ndarray, sizes: tuple[int, int, int]) -> DataError:
    """Name the smallest class among `candidates` (those missing from a split)."""
    classes = target.classes or []
    totals = np.bincount(target.y, minlength=len(classes))
    k = int(np.argmin(np.where(candidates, totals, np.iinfo(np.int64).max)))
    return DataError(
        f"stratified train/val/test splits of {'/'.join(map(str, sizes))} rows cannot hold every "
        f"class: class {classes[k]!r} has only {int(totals[k])} rows; add rows of that class, "
        "drop them, or change data.val_size/data.test_size"
    )


def class_counts(target: Target, rows: np.ndarray) -> np.ndarray:
    return np.bincount(target.y[rows], minlength=len(target.classes or ()))


# >>> The preprocessing, fitted on train


class Preprocessor:
    """The preprocessing of the planned columns: `fit` learns it on the train rows
    (`numeric_`: medians, missing indicators and the numeric transform, `estimator_` the
    transform itself; `categorical_`: the vocabularies; `target_`: the target's transform),
    `write` applies it to every split (the targets are written as they are)."""

    def __init__(self, columns: Columns, data: DataConfig, seed: int) -> None:
        self.columns, self.data, self.seed = columns, data, seed

    def fit(self, train: np.ndarray, y_train: np.ndarray) -> Preprocessor:
        """Fit on the rows where `train` is true, whose targets are `y_train`."""
        self.numeric_, self.estimator_ = self.fit_numeric(train)
        self.categorical_, self.capped_ = self.fit_vocabularies(train)
        self.target_ = TargetTransform.fit(self.data.target_transform, y_train, self.seed)
        return self

    # --- numeric and boolean columns

    def fit_numeric(self, train: np.ndarray) -> tuple[NumericColumns, Any]:
        data, names = self.data, self.columns.numeric_names
        medians = indicators = None
        wanted = data.nan_policy == "median" or data.numeric_transform != "standard"
        sample = self.train_sample(train) if names and wanted else None
        if data.nan_policy == "median" and names:
            medians, train_missing = self.train_medians(train, sample)
            gaps = [name for name, n in zip(names, train_missing, strict=True) if n]
            indicators = self.indicated(gaps)
        estimator, fitted = None, {}
        if self.columns.n_continuous:
            estimator = self.fit_numeric_transform(train, medians, sample)
            fitted = {
                name: np.asarray(getattr(estimator, name)).tolist()
                for name in FITTED_ATTRIBUTES[data.numeric_transform]
            }
        numeric = NumericColumns(
            names=names,
            n_continuous=self.columns.n_continuous,
            medians=None if medians is None else medians.tolist(),
            indicators=indicators or [],
            transform=data.numeric_transform,
            fitted=fitted,
            clip=data.soft_clip,
        )
        return numeric, estimator

    def indicated(self, missing: list[str]) -> list[str]:
        """The features missing in train that get an indicator: one per raw column (a date's
        parts are missing together; its first part's indicator stands for the date)."""
        first: dict[str, str] = {}
        for name in missing:
            first.setdefault(self.columns.sources[name], name)
        return list(first.values())

    def train_sample(self, train: np.ndarray) -> np.ndarray:
        """The numbers of up to SAMPLE_ROWS train rows, drawn with the seed (all when fewer)."""
        n_train = int(train.sum())
        picked = np.zeros(len(train), dtype=bool)
        rng = np.random.default_rng(self.seed)
        picked[np.flatnonzero(train)[np.sort(rng.permutation(n_train)[:SAMPLE_ROWS])]] = True
        parts = []
        for start, numbers, _ in self.columns.chunks():
            parts.append(numbers[picked[start : start + len(numbers)]])
        return np.concatenate(parts)

    def train_medians(self, train: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The median of each column's train values (NaN skipped), as SimpleImputer(median), and
        each column's count of missing train cells.

        Exact, over every train row, for the columns with a missing cell in the table: theirs
        fill the splits. A column with no missing cell in the table is only ever filled in a
        served row: the median of the train `sample` does. Columns are gathered a group at a
        time (MEDIAN_BUDGET_BYTES)."""
        names = self.columns.numeric_names
        missing_cells = {plan.name: plan.missing for plan in self.columns.plans}
        sources = self.columns.sources
        n_train = int(train.sum())
        medians, missing = np.median(sample, axis=0), np.zeros(len(names), dtype=np.int64)
        exact = [j for j, name in enumerate(names) if missing_cells[sources[name]] > 0]
        group = max(1, MEDIAN_BUDGET_BYTES // (8 * max(n_train, 1)))
        for first in range(0, len(exact), group):
            columns = exact[first : first + group]
            values = np.empty((len(columns), n_train), dtype=np.float64)
            filled = 0
            for start, numbers, _ in self.columns.chunks():
                rows = numbers[train[start : start + len(numbers)]][:, columns]
                values[:, filled : filled + len(rows)] = rows.T
                filled += len(rows)
            for j, column in zip(columns, values, strict=True):
                present = column[~np.isnan(column)]
                missing[j] = n_train - len(present)
                medians[j] = np.median(present) if len(present) else np.nan
            del values
        empty = [name for name, median in zip(names, medians, strict=True) if np.isnan(median)]
        if empty:
            raise DataError(
                f"columns with no values in the train split: {', '.join(empty)}; "
                "data.nan_policy=median cannot impute them: drop them (data.drop=[...])"
            )
        return medians, missing

    def fit_numeric_transform(
        self, train: np.ndarray, medians: np.ndarray | None, sample: np.ndarray
    ) -> Any:
        """The numeric transform fitted on the (imputed) continuous train values: StandardScaler
        a chunk at a time (exact); RobustScaler and QuantileTransformer on the train sample."""
        transform, n_continuous = self.data.numeric_transform, self.columns.n_continuous
        estimator = make_estimator(transform, seed=self.seed)
        if transform == "standard":
            with np.errstate(over="ignore", invalid="ignore"):  # overflow: `write` reports it
                for start, numbers, _ in self.columns.chunks():
                    rows = numbers[train[start : start + len(numbers)], :n_continuous]
                    rows = _imputed(rows, medians)
                    if len(rows):
                        estimator.partial_fit(rows)
            return estimator
        rows = _imputed(sample[:, :n_continuous], medians)
        if transform == "quantile":
            estimator.set_params(n_quantiles=min(1000, len(rows)))
        return estimator.fit(rows)

    # --- categorical columns

    def fit_vocabularies(self, train: np.ndarray) -> tuple[CategoricalColumns, list[bool]]:
        """Each column's levels by train count (ties: first seen first); levels with fewer than
        data.min_category_count train rows, and those beyond the data.max_categories most
        frequent, are RARE. Also which columns had more frequent levels than that cap."""
        names, levels = self.columns.categorical_names, self.columns.levels
        min_count, max_levels = self.data.min_category_count, self.data.max_categories
        counts = [np.zeros(len(column), dtype=np.int64) for column in levels]
        for start, _, codes in self.columns.chunks() if names else ():
            rows = codes[train[start : start + len(codes)]]
            for j, column in enumerate(rows.T):
                counts[j] += np.bincount(column[column >= 0], minlength=len(levels[j]))
        vocabularies, rare, capped = [], [], []
        for column, count in zip(levels, counts, strict=True):
            order = np.argsort(-count, kind="stable")
            frequent = [k for k in order if count[k] >= min_count]
            kept = set(frequent[:max_levels])
            vocabularies.append([column[k] for k in frequent[:max_levels]])
            rare.append([column[k] for k in order if count[k] > 0 and k not in kept])
            capped.append(len(frequent) > max_levels)
        return CategoricalColumns(names, vocabularies, rare), capped

    def code_maps(self) -> list[np.ndarray]:
        """Per column, scan code -> level code (`CategoricalColumns.level_codes`; UNKNOWN for a
        level no train row has); -1 (missing) and -2 (overflow) index the end."""
        maps = []
        for j, column in enumerate(self.columns.levels):
            codes = self.categorical_.level_codes(j)
            table = [codes.get(level, UNKNOWN) for level in column]
            maps.append(np.array([*table, RARE, MISSING]))
        return maps

    # --- applied to every split

    def write(self, rows: Rows, out: Path) -> None:
        """X_{split}.npy (float32 features) and C_{split}.npy (int64 level codes) in one pass;
        a DataError names the features too large to transform."""
        finite = self._write_features(rows, out)
        if not finite.all():
            numeric = self.numeric_
            bad = [name for name, ok in zip(numeric.features, finite, strict=True) if not ok]
            verb = "standardize" if numeric.transform == "standard" else "transform"
            raise DataError(f"feature columns too large to {verb}: {', '.join(bad)}; rescale them")

    def _write_features(self, rows: Rows, out: Path) -> np.ndarray:
        """Which features stayed finite."""
        maps, counts = self.code_maps(), rows.counts
        width = len(self.numeric_.features)
        writers: list[tuple[NpyWriter, NpyWriter]] = []
        finite = np.ones(width, dtype=bool)
        try:
            for split in rows.splits:
                x = NpyWriter(out / f"X_{split}.npy", (counts[split], width), np.float32)
                c = NpyWriter(out / f"C_{split}.npy", (counts[split], len(maps)), np.int64)
                writers.append((x, c))
            for start, numbers, codes in self.columns.chunks():
                labels = rows.row_split[start : start + len(numbers)]
                kept = labels >= 0
                with np.errstate(over="ignore"):  # a value beyond float32 is reported
                    z = self.numeric_.apply(numbers[kept], self.estimator_)
                finite &= np.isfinite(z).all(axis=0)
                level_codes = np.empty((int(kept.sum()), len(maps)), dtype=np.int64)
                for j, table in enumerate(maps):
                    level_codes[:, j] = table[codes[kept, j]]  # -1, -2 index the table's end
                for k, (x, c) in enumerate(writers):
                    x.write(z[labels[kept] == k])
                    c.write(level_codes[labels[kept] == k])
            for x, c in writers:
                x.close()
                c.close()
        finally:
            for x, c in writers:
                x.abort()
                c.abort()
        return finite

    # --- what was done

    def described(self) -> list[ColumnPlan]:
        """Every column's plan, its action completed with what fitting did."""
        categorical = self.categorical_
        capped = {name for name, cap in zip(categorical.names, self.capped_, strict=True) if cap}
        return [self._describe(plan, plan.name in capped) for plan in self.columns.plans]

    def _describe(self, plan: ColumnPlan, capped: bool) -> ColumnPlan:
        numeric, categorical = self.numeric_, self.categorical_
        done: list[str] = []
        if plan.role in ("numeric", "date"):
            done.append(
                numeric.transform + (f", soft clip {numeric.clip:g}" if numeric.clip else "")
            )
        indicated = [name for name in plan.features if name in numeric.indicators]
        imputed = plan.role in ("numeric", "boolean", "date") and numeric.medians is not None
        if indicated:
            done.append(f"median for {plan.missing} missing + indicator {indicated[0]}_na")
        elif imputed and plan.missing:
            done.append("median for missing")
        if plan.role == "categorical":
            j = categorical.names.index(plan.name)
            kept, rare = len(categorical.vocabularies[j]), len(categorical.rare[j])
            done.append(f"{kept} levels" + (f", {rare} rare -> 'rare'" if rare else ""))
            if capped:
                done.append(f"capped at data.max_categories={self.data.max_categories}")
        return replace(plan, action="; ".join([plan.action, *done]))


def _imputed(rows: np.ndarray, medians: np.ndarray | None) -> np.ndarray:
    if medians is None:
        return rows
    return np.where(np.isnan(rows), medians[: rows.shape[1]], rows)
