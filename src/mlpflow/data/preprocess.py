"""What is fitted on the train rows, and applied to every split: median imputation and
standardization, computed in chunked passes over the raw scratch file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpflow.data.arrays import RowFile
from mlpflow.data.prepared import SPLITS
from mlpflow.errors import DataError

MEDIAN_BUDGET_BYTES = 256 << 20  # train values held at once to take exact column medians


def train_medians(raw: RowFile, train: np.ndarray, feature_names: list[str]) -> np.ndarray:
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


def train_scaler(
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


def write_features(
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
