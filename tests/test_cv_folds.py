"""cv=kfold: prepare's fold directories hold out every non-test row once per repeat, keep the
test rows of cv=none, fit their preprocessing on their own train rows, and keep groups whole.

The generated table tells its rows apart: `idx` is the row number + 0.25 (a feature, not a row
number), standardized without a soft clip, so each split's rows are decoded back to row numbers
from their X and the directory's own fitted mean and scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mlpflow.config.schema import CVConfig, DataConfig
from mlpflow.data.build import prepare_dataset
from mlpflow.data.folds import FOLDS_FILE, HELDOUT, HELDOUT_ROWS, Folds, load_folds
from mlpflow.data.prepared import SPLITS, load_codes, load_meta, load_split
from mlpflow.data.transforms import FIRST_LEVEL
from mlpflow.stages import prepare as prepare_stage

from conftest import DATA_DEFAULTS, REPO, make_cfg

KFOLD = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "cv" / "kfold.yaml"))
N = 200
SITES = 20


def table(n: int = N) -> dict[str, list]:
    """idx: the row; x: distinct numbers, every 7th missing; city: a level of its own on every
    4th row (the others a or b); site: one of SITES groups; y: classes; amount: a regression
    target."""
    rng = np.random.default_rng(0)
    return {
        "idx": [i + 0.25 for i in range(n)],
        "x": [None if i % 7 == 0 else float((i * 37) % 199) ** 1.5 for i in range(n)],
        "city": [f"c{i}" if i % 4 == 0 else "ab"[i % 3 % 2] for i in range(n)],
        "site": [f"s{i % SITES}" for i in range(n)],
        "y": rng.integers(0, 2, n).tolist(),
        "amount": rng.normal(size=n).round(4).tolist(),
    }


def write_csv(path: Path, columns: dict[str, list]) -> Path:
    lines = [",".join(columns)]
    for cells in zip(*columns.values(), strict=True):
        lines.append(",".join("" if c is None else str(c) for c in cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare(tmp_path: Path, cv: dict | None, out: str = "out", **data) -> Path:
    """prepare the generated table into tmp_path/out; cv: keys of conf/cv/kfold.yaml to change
    (None: cv=none)."""
    csv = tmp_path / "table.csv"
    if not csv.exists():
        write_csv(csv, table())
    keys = {"name": "csv", "path": str(csv), "target": "y", "task": "auto", "soft_clip": None}
    keys |= {"min_category_count": 1, **data}
    config = DataConfig.parse({**DATA_DEFAULTS, **keys})
    cv_config = CVConfig.parse(None if cv is None else {**KFOLD, **cv})
    prepare_dataset(config, 0, tmp_path / out, cv_config)
    return tmp_path / out


def source_rows(directory: Path, split: str) -> np.ndarray:
    """The row numbers of a split's rows, decoded from its `idx` feature."""
    meta = load_meta(directory)
    x, _ = load_split(directory, split)
    j = meta.numeric.features.index("idx")
    fitted = meta.numeric.fitted
    values = x[:, j].astype(np.float64) * fitted["scale_"][j] + fitted["mean_"][j]
    return np.rint(values - 0.25).astype(np.int64)


def fold_of(folds: Folds, repeat: int) -> list[Path]:
    return [d for d, r in zip(folds.dirs, folds.repeat, strict=True) if r == repeat]


@pytest.mark.parametrize("target", ["y", "amount"])
def test_each_non_test_row_is_held_out_once_per_repeat(tmp_path: Path, target: str):
    none = prepare(tmp_path, None, "none", target=target)
    out = prepare(tmp_path, {"folds": 4, "repeats": 2}, target=target)
    for name in ("X_test.npy", "y_test.npy", "C_test.npy", "meta.json"):  # as with cv=none
        assert (out / name).read_bytes() == (none / name).read_bytes(), name
    folds = load_folds(out)
    assert folds is not None and (folds.folds, folds.repeats) == (4, 2)
    assert folds.dirs == [out / "folds" / str(i) for i in range(8)]
    assert (folds.repeat, folds.fold) == ([0] * 4 + [1] * 4, [0, 1, 2, 3] * 2)
    test = source_rows(out, "test")
    rest = np.setdiff1d(np.arange(N), test)
    assert folds.rows == len(rest)
    y = np.array(table()[target], dtype=np.float64)
    held_by_repeat = []
    for repeat in (0, 1):
        held = []
        for directory in fold_of(folds, repeat):
            rows = np.load(directory / HELDOUT_ROWS)
            assert rows.dtype == np.int64
            assert np.array_equal(rows, source_rows(directory, HELDOUT))  # the same order
            assert np.allclose(load_split(directory, HELDOUT)[1], y[rows])
            assert np.array_equal(np.sort(source_rows(directory, "test")), np.sort(test))
            inner = [source_rows(directory, split) for split in ("train", "val")]
            assert np.array_equal(np.sort(np.concatenate([*inner, rows])), rest)
            others = len(rest) - len(rows)
            assert len(inner[1]) == int(np.ceil(0.15 * others))  # data.val_size of them
            assert load_meta(directory).rows[HELDOUT] == len(rows)
            held.append(rows)
        everything = np.concatenate(held)
        assert len(everything) == len(rest)  # disjoint...
        assert np.array_equal(np.sort(everything), rest)  # ...and covering the non-test rows
        held_by_repeat.append(held)
    assert not np.array_equal(held_by_repeat[0][0], held_by_repeat[1][0])  # seed + r
    fingerprints = {load_meta(directory).fingerprint for directory in folds.dirs}
    assert len(fingerprints) == len(folds.dirs)


def test_each_fold_fits_its_preprocessing_on_its_own_train_rows(tmp_path: Path):
    out = prepare(tmp_path, {"folds": 5})
    folds = load_folds(out)
    assert folds is not None
    cells = table()
    medians = []
    unseen_elsewhere = []
    for k, directory in enumerate(folds.dirs):
        meta = load_meta(directory)
        train = source_rows(directory, "train")
        # The vocabulary (min_category_count=1): exactly the levels of this fold's train rows.
        j = meta.categorical.names.index("city")
        known = set(meta.categorical.vocabularies[j]) | set(meta.categorical.rare[j])
        assert known == {cells["city"][i] for i in train}
        held = np.load(directory / HELDOUT_ROWS)
        own = {cells["city"][i] for i in held if i % 4 == 0}  # levels only these rows have
        assert own and not own & known  # unknown to this fold: code 0, like any new level
        codes = load_codes(directory, HELDOUT)[:, j]
        assert (codes[held % 4 == 0] < FIRST_LEVEL).all()
        unseen_elsewhere.append((k, own))
        # The median of x: of this fold's train rows.
        present = [cells["x"][i] for i in train if cells["x"][i] is not None]
        x = meta.numeric.names.index("x")
        assert meta.numeric.medians[x] == np.median(present)
        medians.append(meta.numeric.medians[x])
    for k, own in unseen_elsewhere:  # ... but known to another fold, which trained on them
        others = set()
        for i, directory in enumerate(folds.dirs):
            if i != k:
                categorical = load_meta(directory).categorical
                others |= set(categorical.vocabularies[categorical.names.index("city")])
        assert own <= others
    assert len(set(medians)) > 1


def test_groups_stay_whole(tmp_path: Path):
    out = prepare(tmp_path, {"folds": 4, "group": "site"})
    folds = load_folds(out)
    assert folds is not None and folds.group == "site"
    meta = load_meta(out)
    (plan,) = [column for column in meta.columns if column.name == "site"]
    assert plan.role == "drop" and "cv.group" in plan.action
    for directory in [out, *folds.dirs]:
        features = load_meta(directory)
        assert "site" not in features.numeric.names + features.categorical.names
        assert not any(name.startswith("site") for name in features.numeric.features)
    site = np.arange(N) % SITES
    test_sites = set(site[source_rows(out, "test")])
    rest_sites = {s for split in ("train", "val") for s in site[source_rows(out, split)]}
    assert test_sites and not test_sites & rest_sites
    held_sites = [set(site[np.load(directory / HELDOUT_ROWS)]) for directory in folds.dirs]
    assert set().union(*held_sites) == rest_sites
    assert sum(map(len, held_sites)) == len(rest_sites)  # no site in two folds
    for directory in folds.dirs:  # the inner val is whole groups too
        train, val = (set(site[source_rows(directory, s)]) for s in ("train", "val"))
        assert val and not train & val


def test_cv_none_writes_no_folds_and_replaces_a_folded_directory(tmp_path: Path):
    prepare(tmp_path, {"folds": 3})
    assert load_folds(tmp_path / "out") is not None
    out = prepare(tmp_path, None)  # the same meta.json: still rewritten, folds.json differs
    assert not (out / FOLDS_FILE).exists() and not (out / "folds").exists()
    assert load_folds(out) is None
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["meta.json", *(f"{kind}_{split}.npy" for kind in "XCy" for split in SPLITS)]
    )


def test_cv_none_and_kfold_never_share_a_cache_folder(tmp_path: Path):
    folders = {
        prepare_stage.cache_dir(make_cfg(tmp_path, *overrides))
        for overrides in (
            [],
            ["cv=kfold"],
            ["cv=kfold", "cv.folds=3"],
            ["cv=kfold", "cv.repeats=2"],
        )
    }
    assert len(folders) == 4
