"""Data at scale: streaming prepare (CSV/Parquet through pyarrow), memory-mapped training data."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf

from mlpflow.data import fit, prepared, scan, sources
from mlpflow.data.datamodule import ShuffledChunks, TabularDataModule
from mlpflow.data.prepared import SPLITS, load_meta, load_split
from mlpflow.errors import DataError

from conftest import make_cfg, prepare_data, subprocess_env

RID_OFFSET = 1000


def csv_cfg(path: Path, **overrides: Any) -> dict[str, Any]:
    keys = {"name": "csv", "task": "auto", "path": str(path), "target": "y", "soft_clip": None}
    return {**keys, **overrides}  # no clip: the tests invert the transform


def mixed_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Row id (offset: no row-number column), int/float/bool features with gaps, a
    near-constant offset column, duplicates."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "serial": np.arange(n) + RID_OFFSET,
            "a": rng.normal(5.0, 3.0, n),
            "b": rng.integers(0, 100, n),
            "flag": rng.random(n) < 0.3,
            "big": 1e6 + rng.normal(0, 1, n),  # float32 alone would lose most of this column
            "y": rng.choice(["cat", "dog", "eel"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    frame.loc[rng.choice(n, 40, replace=False), "a"] = np.nan
    frame.loc[rng.choice(n, 5, replace=False), "big"] = np.inf
    return frame


@pytest.fixture
def small_chunks(monkeypatch):
    """Batches, chunks and the median budget far smaller than the table: every pass is chunked."""
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 2048)
    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 97)
    monkeypatch.setattr(sources, "MEMORY_BATCH_ROWS", 97)
    monkeypatch.setattr(scan, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(fit, "MEDIAN_BUDGET_BYTES", 20_000)


def reference(frame: pd.DataFrame, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """The prepare step computed the direct way, in memory with pandas and scikit-learn."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    features = frame.drop(columns=["y", "flag"]).astype(float).replace([np.inf, -np.inf], np.nan)
    classes, y = np.unique(frame["y"].to_numpy(dtype=str), return_inverse=True)
    n = len(frame)
    n_test, n_val = (int(np.ceil(cfg[k] * n - 1e-9)) for k in ("test_size", "val_size"))
    rest, test = train_test_split(np.arange(n), test_size=n_test, random_state=seed, stratify=y)
    train, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=y[rest])
    medians = features.iloc[train].median().to_numpy()
    X = features.fillna(dict(zip(features.columns, medians, strict=True))).to_numpy()
    scaler = StandardScaler().fit(X[train])
    gappy = [c for c in features.columns if features[c].iloc[train].isna().any()]
    rows = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    def features_of(r: np.ndarray) -> np.ndarray:  # continuous, the boolean, indicators
        parts = [scaler.transform(X[r]), frame["flag"].to_numpy(float)[r, None]]
        return np.hstack([*parts, features[gappy].isna().to_numpy(float)[r]]).astype(np.float32)

    return {
        "classes": classes.tolist(),
        "median": [*medians, 0.0],  # flag has no gap: its median is 0
        "indicators": gappy,
        "mean": scaler.mean_,
        "scale": scaler.scale_,
        "X": {s: features_of(r) for s, r in rows.items()},
        "y": {s: y[r] for s, r in rows.items()},
        "duplicates": int(frame.duplicated().sum()),
        "nan_counts": {c: int(v) for c, v in features.isna().sum().items() if v},
    }


# --- streaming prepare -------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streaming_prepare_equals_the_in_memory_reference(tmp_path, request, suffix, chunked):
    if chunked:
        request.getfixturevalue("small_chunks")
    frame = mixed_table()
    frame = pd.concat([frame, frame.iloc[:7]], ignore_index=True)  # 7 duplicate rows
    path = tmp_path / f"table{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    cfg = csv_cfg(path, nan_policy="median", val_size=0.2, test_size=0.1)
    meta = prepare_data(cfg, 3, tmp_path / "out")
    ref = reference(frame, cfg, 3)

    assert meta.classes == ref["classes"] and meta.task == "multiclass"
    assert meta.schema["duplicate_rows"] == ref["duplicates"] == 7
    assert meta.schema["nan_counts"] == ref["nan_counts"]
    np.testing.assert_allclose(meta.numeric.medians, ref["median"], rtol=1e-12)
    np.testing.assert_allclose(meta.numeric.fitted["mean_"], ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(meta.numeric.fitted["scale_"], ref["scale"], rtol=1e-9)
    assert meta.numeric.indicators == ref["indicators"] == ["a", "big"]
    for split in SPLITS:
        X, y = load_split(tmp_path / "out", split)
        # rows keep the source's order within a split: the reference's rows, sorted
        np.testing.assert_array_equal(y, ref["y"][split])
        np.testing.assert_allclose(X, ref["X"][split], rtol=1e-6, atol=1e-6)
        assert meta.rows[split] == len(y)


def test_csv_and_parquet_of_one_table_give_the_same_splits(tmp_path, small_chunks):
    frame = mixed_table(2000, seed=1)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=300)
    metas = [
        prepare_data(csv_cfg(tmp_path / name, nan_policy="drop"), 0, tmp_path / name[2:])
        for name in ("t.csv", "t.parquet")
    ]
    assert metas[0].fingerprint == metas[1].fingerprint
    same = ("columns", "numeric", "categorical", "rows", "class_counts", "schema", "example")
    assert {k: getattr(metas[0], k) for k in same} == {k: getattr(metas[1], k) for k in same}
    assert {c.name: c.dtype for c in metas[0].columns} == {
        "serial": "int64",
        "a": "double",
        "b": "int64",
        "flag": "bool",
        "big": "double",
    }


def test_rows_keep_the_source_order_within_each_split(tmp_path):
    frame = mixed_table(500).drop(columns=["a", "big"])
    frame.to_csv(tmp_path / "t.csv", index=False)
    meta = prepare_data(csv_cfg(tmp_path / "t.csv"), 0, tmp_path / "out")
    j = meta.numeric.names.index("serial")
    ids = []
    for split in SPLITS:
        X, _ = load_split(tmp_path / "out", split)
        continuous = X[:, : meta.numeric.n_continuous].astype(np.float64)
        serial = np.rint(meta.numeric.estimator().inverse_transform(continuous)[:, j])
        assert np.all(np.diff(serial) > 0), split
        ids.append(serial - RID_OFFSET)
    assert sorted(np.concatenate(ids).astype(int).tolist()) == list(range(500))


def test_a_csv_column_that_changes_type_after_the_first_block_is_widened(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 256)  # type inference sees ~20 rows
    n = 400
    ints = [str(i % 7) for i in range(n)]
    ints[350] = "2.5"  # an int64 column until row 350
    empty = [""] * n
    empty[300] = "4"  # a null column until row 300
    lines = ["i,e,x,y", *(f"{ints[k]},{empty[k]},{k * 0.5},{k % 2}" for k in range(n))]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    meta = prepare_data(csv_cfg(tmp_path / "t.csv", nan_policy="median"), 0, tmp_path / "out")
    assert {c.name: c.dtype for c in meta.columns} == {"i": "double", "e": "double", "x": "double"}
    assert meta.schema["nan_counts"] == {"e": n - 1}
    continuous = np.concatenate([load_split(tmp_path / "out", s)[0][:, :3] for s in SPLITS])
    i_raw = meta.numeric.estimator().inverse_transform(continuous.astype(np.float64))[:, 0]
    assert np.isclose(i_raw, 2.5, atol=1e-5).sum() == 1

    # columns that turn out to be text far down: a categorical, and numbers with a stray cell
    bools = ["True" if k % 2 else "False" for k in range(n)]
    bools[380] = "maybe"
    lines = ["t,f,x,y", *(f"{bools[k]},{k},{'s' if k == 390 else k},{k % 2}" for k in range(n))]
    (tmp_path / "u.csv").write_text("\n".join(lines) + "\n")
    meta = prepare_data(csv_cfg(tmp_path / "u.csv"), 0, tmp_path / "out2")
    plans = {c.name: c for c in meta.columns}
    assert (plans["t"].role, plans["t"].dtype, plans["t"].levels) == ("categorical", "string", 3)
    assert plans["x"].role == "numeric" and plans["x"].missing == 1
    assert plans["f"].action == "dropped: row number"  # 0..n-1


def test_csv_quirks_read_as_pandas_reads_them(tmp_path):
    # pandas' missing-value markers, inf, booleans, an index column written without a header
    markers = ["NA", "None", "inf", "n/a", "#N/A", "NULL", "", "-inf"]
    lines = [",a,b,flag,y"] + [
        f"{k},{markers[k] if k < len(markers) else k * 0.5},{k % 3},{k % 4 == 0},{'pq'[k % 2]}"
        for k in range(60)
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    meta = prepare_data(csv_cfg(tmp_path / "t.csv", nan_policy="drop"), 0, tmp_path / "out")
    frame = pd.read_csv(tmp_path / "t.csv")
    plans = {c.name: (c.role, c.dtype) for c in meta.columns}
    assert list(plans) == list(frame.columns[:-1]) == ["Unnamed: 0", "a", "b", "flag"]
    assert plans == {
        "Unnamed: 0": ("drop", "int64"),  # pandas' index column: a row number
        "a": ("numeric", "double"),
        "b": ("numeric", "int64"),
        "flag": ("boolean", "bool"),
    }
    missing = int((~np.isfinite(frame["a"])).sum())
    assert meta.schema["nan_counts"] == {"a": missing} == {"a": len(markers)}
    assert meta.schema["dropped_rows"] == len(markers)

    (tmp_path / "d.csv").write_text("a,a,y\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError, match=r"duplicate column names \['a'\]; rename them"):
        prepare_data(csv_cfg(tmp_path / "d.csv"), 0, tmp_path / "out3")


def test_duplicate_rows_are_counted_like_pandas(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.integers(0, 3, 400).astype(float), "b": rng.integers(0, 2, 400)})
    frame.loc[::17, "a"] = np.nan  # NaN equals NaN for duplicated()
    frame.loc[::23, "a"] = -0.0
    frame["y"] = rng.choice(["u", "v"], 400)
    frame.to_csv(tmp_path / "t.csv", index=False)
    meta = prepare_data(csv_cfg(tmp_path / "t.csv", nan_policy="median"), 0, tmp_path / "o")
    assert meta.schema["duplicate_rows"] == int(frame.duplicated().sum()) > 300


def test_npy_writer_writes_what_np_save_writes(tmp_path):
    x = np.random.default_rng(0).normal(size=(1001, 7)).astype(np.float32)
    writer = prepared.NpyWriter(tmp_path / "a.npy", x.shape, np.float32)
    for start in range(0, len(x), 300):
        writer.write(x[start : start + 300])
    writer.close()
    np.save(tmp_path / "b.npy", x)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


@pytest.mark.parametrize("shape", [(3001, 7), (3001, 0), (3001,)])
def test_read_rows_returns_the_rows_a_full_load_indexes(tmp_path, monkeypatch, shape):
    """Across chunk boundaries (a chunk of 1000 bytes here), for a table, a table with no
    columns (C with no categorical column) and a vector (y)."""
    monkeypatch.setattr(prepared, "READ_CHUNK_BYTES", 1000)
    x = np.random.default_rng(0).normal(size=shape)
    np.save(tmp_path / "x.npy", x)
    rows = np.sort(np.random.default_rng(1).choice(len(x), 500, replace=False))
    assert np.array_equal(prepared.read_rows(tmp_path / "x.npy", rows), x[rows])


def test_a_failed_streaming_write_leaves_no_out_dir_and_no_temp_dir(tmp_path, monkeypatch):
    frame = mixed_table(300)
    frame.to_parquet(tmp_path / "t.parquet")
    out = tmp_path / "prepared"

    def fail(self, rows):
        raise OSError("disk full")

    monkeypatch.setattr(prepared.NpyWriter, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        prepare_data(csv_cfg(tmp_path / "t.parquet", nan_policy="drop"), 0, out)
    with pytest.raises(OSError, match="disk full"):  # nor the parent folders it had to create
        prepare_data(
            csv_cfg(tmp_path / "t.parquet", nan_policy="drop"), 0, tmp_path / "a" / "b" / "p"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def write_parquet(path: Path, n: int, row_group: int = 65536) -> None:
    """n x 32 float64 features and a 0/1 target, written a row group at a time."""
    rng = np.random.default_rng(0)
    schema = pa.schema([*(pa.field(f"x{j}", pa.float64()) for j in range(32)), ("y", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, row_group):
            x = rng.standard_normal((min(row_group, n - start), 32))
            y = (x[:, 0] + rng.standard_normal(len(x)) > 0).astype(np.int64)
            columns = [pa.array(column) for column in x.T]
            writer.write_table(pa.Table.from_arrays([*columns, pa.array(y)], schema=schema))


PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


@pytest.mark.slow
def test_prepare_memory_does_not_grow_with_the_table(tmp_path):
    """Peak RSS of `mlpflow stage prepare` on 100k and on 800k rows x 32 features.

    700k more rows are 90 MB more float32 data, 180 MB float64 (a pandas frame of the table
    alone). The peak grows by less than the float32 data (measured: ~30 MB, i.e. ~45 bytes a
    row: the target, row hashes, NaN flags, split indices); the feature values stream through
    fixed-size chunks, and neither Arrow's cached pages nor a memory map of a written split
    adds to the peak (each did, by up to ~60 MB). Measured from a small launcher process: a
    child's ru_maxrss also counts the process it was forked from (pytest, ~300 MB)."""
    peaks = {}
    for n in (100_000, 800_000):
        write_parquet(tmp_path / f"t{n}.parquet", n)
        # nan_policy=error: the median pass holds up to MEDIAN_BUDGET_BYTES of train values
        cfg = make_cfg(
            tmp_path / str(n),
            "data=csv",
            f"data.path={tmp_path}/t{n}.parquet",
            "data.nan_policy=error",
        )
        cfg.data.target = "y"
        OmegaConf.save(cfg, tmp_path / f"p{n}.yaml", resolve=True)
        command = [sys.executable, "-m", "mlpflow", "stage", "prepare", "--params"]
        done = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, *command, str(tmp_path / f"p{n}.yaml")],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[n] = int(done.stdout)
        assert load_meta(cfg.paths.prepared).rows["train"] == int(n * 0.7)
    growth, float32_growth = peaks[800_000] - peaks[100_000], 700_000 * 32 * 4
    assert growth < float32_growth, (peaks, growth)


# --- training on memory-mapped splits ------------------------------------------------------------


def reference_chunks(x, c, y, w, rows, seed, epoch, shuffle=True, shard=(0, 1)):
    """What ShuffledChunks yielded before: slices of a permuted copy, x[order][a:b]."""
    rank, world = shard
    if shuffle or world > 1:
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + epoch))
        if world > 1:
            order = order[rank : (len(y) // world) * world : world]
        x, c, y, w = x[order], c[order], y[order], w[order]
    parts = (x, c, y, w)
    return [tuple(p[a : a + rows] for p in parts) for a in range(0, len(y), rows)]


@pytest.mark.parametrize(
    ("shuffle", "shard"), [(True, (0, 1)), (False, (0, 1)), (True, (1, 3)), (False, (0, 2))]
)
@pytest.mark.parametrize("mapped", [False, True])
def test_shuffled_chunks_are_the_chunks_of_a_permuted_copy(tmp_path, shuffle, shard, mapped):
    x = torch.randn(1003, 5)
    c = torch.randint(0, 9, (1003, 2))
    y = torch.arange(1003)
    w = torch.rand(1003)  # row weights travel with their rows
    source, codes = x, c
    if mapped:
        np.save(tmp_path / "x.npy", x.numpy())
        np.save(tmp_path / "c.npy", c.numpy())
        source = np.load(tmp_path / "x.npy", mmap_mode="r")
        codes = np.load(tmp_path / "c.npy", mmap_mode="r")
    for epoch in (0, 3):
        chunks = ShuffledChunks(
            source, codes, y, 128, 42, lambda e=epoch: e, shuffle, shard, weight=w
        )
        got = list(chunks)
        expected = reference_chunks(x, c, y, w, 128, 42, epoch, shuffle, shard)
        assert len(got) == len(expected) == len(chunks)
        for (gx, gc, gy, gw), (ex, ec, ey, ew) in zip(got, expected, strict=True):
            assert isinstance(gx, torch.Tensor) and gx.dtype == torch.float32
            assert gc.dtype == torch.int64
            assert torch.equal(gx, ex) and torch.equal(gc, ec) and torch.equal(gy, ey)
            assert torch.equal(gw, ew)


def test_datamodule_memory_maps_the_features_and_loads_the_targets(tmp_path):
    prepare_data({"name": "wine", "task": "multiclass"}, 0, tmp_path / "p")
    data = TabularDataModule(tmp_path / "p", batch_size=16, batches_per_step=2, seed=0)
    data.setup("fit")
    assert set(data.splits) == {"train", "val"}
    x, codes, y = data.splits["train"]
    assert isinstance(x, np.memmap) and Path(x.filename) == tmp_path / "p" / "X_train.npy"
    assert codes.shape == (len(y), 0)  # wine: no categorical column
    assert isinstance(y, torch.Tensor) and y.dtype == torch.int64
    np.testing.assert_array_equal(x, load_split(tmp_path / "p", "train")[0])
    chunk_x, _, chunk_y, chunk_w = next(iter(data.train_dataloader()))
    assert chunk_x.shape == (32, 13) and chunk_x.dtype == torch.float32 and len(chunk_y) == 32
    assert chunk_w is None  # no data.weight: unweighted rows
    assert isinstance(next(iter(data.val_dataloader()))[0], torch.Tensor)
    # ddp_spawn pickles the datamodule: the workers map the files themselves
    copy = pickle.loads(pickle.dumps(data))
    assert copy.splits == {}
    copy.setup("fit")
    assert isinstance(copy.splits["train"][0], np.memmap)
