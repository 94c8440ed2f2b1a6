"""k-fold cross-validation: which non-test rows each fold holds out, and folds.json.

With cv=kfold, prepare also writes one complete prepared directory per fold (`folds/<i>/`,
i = repeat * K + fold): its train and val split the other folds' rows, its test is the common
test split, its `heldout` split the fold's own rows. Each is preprocessed by its own fit on its
train rows: a median or a category level of the held-out rows must not leak into the model that
scores them. folds.json lists the directories; train and evaluate learn from it (`load_folds`),
not from the config, whether the data is folded. Every split is scikit-learn's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.fit import Rows, labelled_rows, split_off, split_rows_count
from mlpflow.data.prepared import ARRAY_FILES, HELDOUT
from mlpflow.data.scan import Scan, canonical_bits
from mlpflow.data.sources import preview
from mlpflow.errors import DataError, first_line

if TYPE_CHECKING:
    from mlpflow.config.schema import CVConfig
    from mlpflow.data.columns import Target

FOLDS_FILE = "folds.json"
FOLDS_DIR = "folds"
CV_STATE = "cv.json"  # in the models dir: an unfinished cross-validation's progress
HELDOUT_ROWS = f"rows_{HELDOUT}.npy"  # int64: each held-out row's 0-based row in the source
# What a fold directory's meta.json fingerprint covers: its held-out rows tell folds apart.
FOLD_ARRAYS = (*ARRAY_FILES, *(f"{kind}_{HELDOUT}.npy" for kind in "XCy"), HELDOUT_ROWS)

# Train and evaluate read folds with `load_folds`, FOLDS_FILE, HELDOUT (the fourth split's name,
# defined in data/prepared.py beside SPLITS, importable from here) and HELDOUT_ROWS.


# >>> folds.json


@dataclass(frozen=True)
class Folds:
    """folds.json: K folds x R repeats, one prepared directory each (repeat r, fold k: the
    directory r * K + k), and how many non-test rows the folds divide."""

    folds: int
    repeats: int
    group: str | None  # cv.group: the column whose groups no two folds share
    dirs: list[Path]  # absolute, when read by `load_folds`
    repeat: list[int]
    fold: list[int]
    rows: int


def fold_dir(i: int) -> str:
    return f"{FOLDS_DIR}/{i}"


def write_folds(directory: Path, cv: CVConfig, rows: int) -> None:
    """`directory`/folds.json for cv's K * R fold directories (relative to `directory`)."""
    assert cv.folds is not None and cv.repeats is not None  # cv=kfold
    folds, repeats = cv.folds, cv.repeats
    content = {
        "folds": folds,
        "repeats": repeats,
        "group": cv.group,
        "dirs": [fold_dir(i) for i in range(folds * repeats)],
        "repeat": [r for r in range(repeats) for _ in range(folds)],
        "fold": [k for _ in range(repeats) for k in range(folds)],
        "rows": rows,
    }
    (directory / FOLDS_FILE).write_text(json.dumps(content, indent=2) + "\n")


def load_folds(prepared_dir: str | Path) -> Folds | None:
    """The folds of a prepared directory, their dirs as absolute paths; None when it has none
    (prepared with cv=none)."""
    directory = Path(prepared_dir).expanduser().absolute()
    path = directory / FOLDS_FILE
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} ({error}); run the prepare stage again") from error
    return Folds(**{**content, "dirs": [directory / name for name in content["dirs"]]})


# >>> The group column (cv.group)


def check_group(cv: CVConfig, columns: list[str], target: str) -> None:
    """cv.group names a feature column of the table (not the target); a DataError otherwise."""
    if cv.group is None:
        return
    if cv.group == target:
        raise DataError(
            f"cv.group={cv.group!r} is the target: group rows by another column (a patient, a "
            "site, a user), or set cv.group=null"
        )
    if cv.group not in columns:
        raise DataError(
            f"cv.group={cv.group!r} names no column of the table; columns: {preview(columns)}"
        )


def group_ids(scan: Scan, name: str) -> np.ndarray:
    """Each source row's group, as an int64 id: equal cells, equal ids. Missing cells form one
    group, and so do a text column's levels beyond the scan's LEVEL_LIMIT (rows kept together
    that could have been apart: never the reverse)."""
    slot = scan.columns[name].slot  # the value, or a text column's level code
    values = np.empty(scan.rows, dtype=np.float64)
    for start, block in scan.raw.chunks():
        values[start : start + len(block)] = block[:, slot]
    _, ids = np.unique(canonical_bits(values), return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


# >>> The folds


def fold_rows(
    target: Target,
    rows: Rows,
    groups: np.ndarray | None,
    cv: CVConfig,
    val_size: float,
    seed: int,
) -> Iterator[Rows]:
    """The Rows of each fold directory (train, val, test, heldout), repeat-major, one at a
    time (each holds a byte per source row). `check_folds` first: its errors come before any
    write.

    The non-test rows of `rows` are cut into cv.folds folds by StratifiedKFold (classes) or
    KFold (regression), their Group variants with `groups` (a group id per kept row), shuffled
    with seed + r in repeat r. The other folds' rows split into train and val as prepare splits
    val off (`split_off`: val_size of them, stratified or by whole groups).
    """
    assert cv.folds is not None and cv.repeats is not None  # cv=kfold
    rest = _non_test(rows)
    labels = target.y if target.classes is not None else None
    keep = rows.row_split >= 0
    for r in range(cv.repeats):
        splitter = _splitter(labels is not None, groups is not None, cv.folds, seed + r)
        split = splitter.split(
            rest,
            None if labels is None else labels[rest],
            None if groups is None else groups[rest],
        )
        for k, (other, held) in enumerate(split):
            others = rest[other]
            try:
                train, val = split_off(
                    others, split_rows_count(val_size, len(others)), seed + r, labels, groups
                )
            except ValueError as error:
                raise DataError(
                    f"fold {k} of repeat {r}: its other folds' {len(others)} rows cannot be split "
                    f"into train and val ({first_line(error)}); lower cv.folds or add rows"
                ) from error
            index = {"train": train, "val": val, "test": rows.index["test"], HELDOUT: rest[held]}
            yield labelled_rows(keep, index)


def _non_test(rows: Rows) -> np.ndarray:
    return np.sort(np.concatenate([rows.index["train"], rows.index["val"]]))


def _splitter(classes: bool, grouped: bool, folds: int, seed: int):
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    kind = {
        (True, False): StratifiedKFold,
        (False, False): KFold,
        (True, True): StratifiedGroupKFold,
        (False, True): GroupKFold,
    }[classes, grouped]
    return kind(n_splits=folds, shuffle=True, random_state=seed)


def check_folds(target: Target, rows: Rows, groups: np.ndarray | None, cv: CVConfig) -> None:
    """A DataError when the non-test rows of `rows` cannot make cv.folds folds: each fold needs
    a row of every class, and a group of its own."""
    folds, group, rest = cv.folds, cv.group, _non_test(rows)
    assert folds is not None  # cv=kfold
    if target.classes is not None:
        counts = np.bincount(target.y[rest], minlength=len(target.classes))
        k = int(np.argmin(counts))
        if counts[k] < folds:
            raise DataError(
                f"cv.folds={folds} is more than the {int(counts[k])} non-test rows of class "
                f"{target.classes[k]!r}: stratified folds hold out rows of every class; lower "
                "cv.folds, or add rows of that class"
            )
    elif len(rest) < folds:
        raise DataError(
            f"cv.folds={folds} is more than the {len(rest)} non-test rows; lower cv.folds"
        )
    if groups is not None and (n_groups := len(np.unique(groups[rest]))) < folds:
        raise DataError(
            f"cv.group={group!r} has {n_groups} distinct groups among the non-test rows, "
            f"fewer than cv.folds={folds} (each fold holds out whole groups); lower cv.folds, or "
            "group by a column with more groups"
        )
