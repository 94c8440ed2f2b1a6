"""Train/val/test row indices: scikit-learn's seeded `train_test_split`, stratified for classes.

Rows keep the source's order within each split, so the splits are written in one sequential
pass (training reshuffles every epoch anyway).
"""

from __future__ import annotations

import math

import numpy as np

from mlpflow.data.target import Target
from mlpflow.errors import DataError


def split_rows_count(fraction: float, n: int) -> int:
    """Rows a split gets: ceil like scikit-learn, minus float noise (0.15 * 100 = 15.000...02)."""
    return math.ceil(fraction * n - 1e-9) if fraction > 0 else 0


def split_rows(encoded: Target, n_val: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices per split: test first, then val from the rest; stratified for classes.

    Each step is scikit-learn's `train_test_split`. (Stratified, it gathers indices in Python
    lists for a moment: tens of bytes a row, see benchmarks/README.md.)
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
        raise class_error(encoded, np.ones(len(encoded.classes or ()), bool), sizes) from error
    index = {"train": train, "val": val, "test": test}
    if labels is not None:
        absent = np.zeros(len(encoded.classes or ()), dtype=bool)
        for rows in index.values():
            if len(rows):
                absent |= class_counts(encoded, rows) == 0
        if absent.any():
            raise class_error(encoded, absent, sizes)
    return index


def class_error(encoded: Target, candidates: np.ndarray, sizes: tuple[int, int, int]) -> DataError:
    """Name the smallest class among `candidates` (those missing from a split)."""
    classes = encoded.classes or []
    totals = np.bincount(encoded.y, minlength=len(classes))
    k = int(np.argmin(np.where(candidates, totals, np.iinfo(np.int64).max)))
    return DataError(
        f"stratified train/val/test splits of {'/'.join(map(str, sizes))} rows cannot hold every "
        f"class: class {classes[k]!r} has only {int(totals[k])} rows; add rows of that class, "
        "drop them, or change data.val_size/data.test_size"
    )


def class_counts(encoded: Target, rows: np.ndarray) -> np.ndarray:
    return np.bincount(encoded.y[rows], minlength=len(encoded.classes or ()))
