"""What is fitted on the train rows, in chunked passes over the scratch file, and the pass that
writes every split: medians and missing indicators, the numeric transform, the vocabularies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mlpflow.data.arrays import NpyWriter
from mlpflow.data.prepared import SPLITS
from mlpflow.data.transforms import (
    FIRST_LEVEL,
    MISSING,
    RARE,
    UNKNOWN,
    CategoricalColumns,
    NumericColumns,
    make_estimator,
)
from mlpflow.errors import DataError

MEDIAN_BUDGET_BYTES = 256 << 20  # train values held at once to take exact column medians
SAMPLE_ROWS = 100_000  # train rows the robust and quantile transforms are fitted on
# (start row, numbers [n, numeric columns], level codes [n, categorical columns]) per chunk
Chunks = Callable[[], Iterator[tuple[int, np.ndarray, np.ndarray]]]


def train_sample(chunks: Chunks, train: np.ndarray, seed: int) -> np.ndarray:
    """The numbers of up to SAMPLE_ROWS train rows, drawn with `seed` (all when fewer)."""
    n_train = int(train.sum())
    picked = np.zeros(len(train), dtype=bool)
    rng = np.random.default_rng(seed)
    picked[np.flatnonzero(train)[np.sort(rng.permutation(n_train)[:SAMPLE_ROWS])]] = True
    parts = [numbers[picked[start : start + len(numbers)]] for start, numbers, _ in chunks()]
    return np.concatenate(parts)


def train_medians(
    chunks: Chunks, train: np.ndarray, names: list[str], gappy: list[bool], sample: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The median of each column's train values (NaN skipped), as SimpleImputer(median), and
    each column's count of missing train cells.

    Exact, over every train row, for the `gappy` columns (those with a missing cell): theirs
    fill the splits. A column with no missing cell in the table is only ever filled in a served
    row: the median of the train `sample` does. Columns are gathered a group at a time."""
    n_train = int(train.sum())
    medians, missing = np.median(sample, axis=0), np.zeros(len(names), dtype=np.int64)
    exact = [j for j, gap in enumerate(gappy) if gap]
    group = max(1, MEDIAN_BUDGET_BYTES // (8 * max(n_train, 1)))
    for first in range(0, len(exact), group):
        columns = exact[first : first + group]
        values = np.empty((len(columns), n_train), dtype=np.float64)
        filled = 0
        for start, numbers, _ in chunks():
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


def fit_transform(
    chunks: Chunks, train: np.ndarray, n_continuous: int, medians: np.ndarray | None,
    transform: str, sample: np.ndarray, seed: int,
) -> object:  # fmt: skip
    """The numeric transform fitted on the (imputed) continuous train values: StandardScaler a
    chunk at a time (exact); RobustScaler and QuantileTransformer on the train sample."""
    estimator = make_estimator(transform, seed=seed)
    if transform == "standard":
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: reported by the caller
            for start, numbers, _ in chunks():
                rows = _imputed(
                    numbers[train[start : start + len(numbers)], :n_continuous], medians
                )
                if len(rows):
                    estimator.partial_fit(rows)
        return estimator
    rows = _imputed(sample[:, :n_continuous], medians)
    if transform == "quantile":
        estimator.set_params(n_quantiles=min(1000, len(rows)))
    return estimator.fit(rows)


def _imputed(rows: np.ndarray, medians: np.ndarray | None) -> np.ndarray:
    if medians is None:
        return rows
    return np.where(np.isnan(rows), medians[: rows.shape[1]], rows)


def fit_vocabularies(
    chunks: Chunks, train: np.ndarray, names: list[str], levels: list[list[str]],
    min_count: int, max_levels: int,
) -> tuple[CategoricalColumns, list[bool]]:  # fmt: skip
    """Each column's levels by train count (ties: first seen first); levels with fewer than
    `min_count` train rows, and those beyond the `max_levels` most frequent, are RARE. Also
    which columns had more frequent levels than `max_levels` (capped)."""
    counts = [np.zeros(len(column), dtype=np.int64) for column in levels]
    for start, _, codes in chunks() if names else ():
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


def code_maps(categorical: CategoricalColumns, levels: list[list[str]]) -> list[np.ndarray]:
    """Per column, scan code -> level code: a vocabulary level's own, RARE for a rare train
    level, UNKNOWN for one no train row has; -1 (missing) and -2 (overflow) index the end."""
    maps = []
    columns = zip(categorical.vocabularies, categorical.rare, levels, strict=True)
    for vocabulary, rare, column in columns:
        code = dict.fromkeys(rare, RARE)
        code.update({level: FIRST_LEVEL + k for k, level in enumerate(vocabulary)})
        table = [code.get(level, UNKNOWN) for level in column]
        maps.append(np.array([*table, RARE, MISSING]))
    return maps


def write_features(
    chunks: Chunks, row_split: np.ndarray, numeric: NumericColumns, estimator: object,
    maps: list[np.ndarray], rows: dict[str, int], out: Path,
) -> np.ndarray:  # fmt: skip
    """X_{split}.npy (float32 features) and C_{split}.npy (int64 level codes) in one pass;
    returns which features stayed finite."""
    width = len(numeric.features)
    writers: list[tuple[NpyWriter, NpyWriter]] = []
    finite = np.ones(width, dtype=bool)
    try:
        for split in SPLITS:
            x = NpyWriter(out / f"X_{split}.npy", (rows[split], width), np.float32)
            c = NpyWriter(out / f"C_{split}.npy", (rows[split], len(maps)), np.int64)
            writers.append((x, c))
        for start, numbers, codes in chunks():
            labels = row_split[start : start + len(numbers)]
            kept = labels >= 0
            with np.errstate(over="ignore"):  # a value beyond float32 is reported below
                z = numeric.apply(numbers[kept], estimator)
            finite &= np.isfinite(z).all(axis=0)
            level_codes = np.empty((int(kept.sum()), len(maps)), dtype=np.int64)
            for j, table in enumerate(maps):
                level_codes[:, j] = table[codes[kept, j]]  # -1, -2 index the end of the table
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
