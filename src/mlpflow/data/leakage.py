"""Feature columns whose values determine the target on the train rows: a copy of the target,
or a column computed from it, trains to a perfect score that no new row will see.

A column is flagged when a rule too simple to memorize rows reproduces the target exactly: for
classes, a one-column decision tree with at most two leaves per class (a numeric column) or
levels that each hold one target value and ten rows on average (a categorical one); for a
numeric target, a rank correlation of ±1 (the target is a monotone function of the column).
scipy, scikit-learn and pandas are imported inside the rules: importing the prepare stage (the
pipeline does, to find its cached prepared data) stays free of them, ~1.4 s of start-up
(benchmarks/README.md; tests/test_data.py checks it).
"""

from __future__ import annotations

import numpy as np

SAMPLE_ROWS = 20_000  # rows the rules look at: enough to be sure, cheap on wide tables
MIN_ROWS = 30  # fewer train rows: a simple rule can fit by chance
ROWS_PER_LEVEL = 10  # a categorical column with fewer rows per level could fit by memorizing


def sample_rows(n_rows: int, seed: int) -> np.ndarray:
    """Sorted indices of the (up to SAMPLE_ROWS) train rows the rules look at, drawn with the
    seed."""
    picked = np.random.default_rng(seed).choice(n_rows, min(n_rows, SAMPLE_ROWS), replace=False)
    return np.sort(picked)


def determining_columns(
    x: np.ndarray,
    codes: np.ndarray,
    y: np.ndarray,
    numeric_names: list[str],
    categorical_names: list[str],
    n_classes: int | None,
) -> list[str]:
    """The raw columns (numeric ones first) whose values determine the target `y` on these rows.

    `x` holds the numeric columns in `numeric_names` order (missing indicators after them),
    `codes` the categorical level codes; `n_classes` is None for a numeric target.
    """
    if len(y) < MIN_ROWS:
        return []
    target = np.asarray(y)
    found = [
        name
        for i, name in enumerate(numeric_names)
        if _numeric_determines(np.asarray(x[:, i], dtype=np.float64), target, n_classes)
    ]
    return found + [
        name
        for j, name in enumerate(categorical_names)
        if _levels_determine(np.asarray(codes[:, j]), target)
    ]


def _numeric_determines(values: np.ndarray, target: np.ndarray, n_classes: int | None) -> bool:
    if np.ptp(values) == 0:
        return False
    if n_classes is None:
        from scipy.stats import spearmanr

        return bool(abs(spearmanr(values, target).statistic) > 1 - 1e-9)
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_leaf_nodes=2 * n_classes, random_state=0)
    return bool(tree.fit(values[:, None], target).score(values[:, None], target) == 1.0)


def _levels_determine(codes: np.ndarray, target: np.ndarray) -> bool:
    import pandas as pd

    levels = pd.Series(target).groupby(codes)
    if levels.ngroups < 2 or len(target) / levels.ngroups < ROWS_PER_LEVEL:
        return False
    return bool((levels.nunique() == 1).all())
