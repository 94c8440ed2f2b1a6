"""The prepared directory: `{X,C,y}_{train,val,test}.npy` (and `w_<split>.npy`, the row
weights, with data.weight) and `meta.json`, read and written.

It is written into a hidden sibling directory and renamed into place, so readers never see a
half-written one. The splits are `.npy` because training slices minibatches of whole rows: a
row-major float32 file maps with no copy and no decoding (`np.load(mmap_mode="r")`).
Only numpy is imported here: the train stage and the served model read meta.json and the splits
without pyarrow or scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlpflow.data.dates import part_name
from mlpflow.data.text import DEFAULT_FORMAT, TextFormat
from mlpflow.data.transforms import CategoricalColumns, NumericColumns, TargetTransform
from mlpflow.errors import DataError

SPLITS = ("train", "val", "test")
HELDOUT = "heldout"  # a fold directory's fourth split: the rows its fold holds out (data/folds.py)

ARRAY_FILES = tuple(f"{kind}_{split}.npy" for split in SPLITS for kind in ("X", "C", "y"))

META_FILE = "meta.json"

EVAL_CHUNK_ROWS = 65536  # rows per forward pass outside training: bounds activation memory

PREPARE_HINT = "run the prepare stage first (`mlpflow stage prepare` or `dvc repro prepare`)"
HASH_BLOCK_BYTES = 1 << 20
READ_CHUNK_BYTES = 16 << 20  # rows read at once by read_rows


@dataclass(frozen=True)
class ColumnPlan:
    """What prepare does with one raw column (`data/columns.py` decides); meta.json lists one
    per column."""

    name: str
    role: str  # numeric | boolean | categorical | date | drop
    dtype: str  # as read: int64, double, bool, string, dictionary, date32[day], timestamp[s]...
    levels: int | None  # distinct values of a text column
    missing: int  # empty or NaN/inf cells; in a numeric (date) one, cells no number (date) too
    action: str  # what was done, in a few words
    parts: list[str] | None = None  # a date column's parts (`mlpflow.data.dates.PARTS`)

    @property
    def features(self) -> list[str]:
        """The features the column becomes: itself, a date column's parts, or none (dropped)."""
        if self.role == "drop":
            return []
        return [part_name(self.name, part) for part in self.parts or ()] or [self.name]


@dataclass(frozen=True)
class Meta:
    """What prepare learned about the data; meta.json is this, as JSON.

    Training, evaluation and serving read the dataset's facts from here (and nowhere else).
    """

    task: str
    target: str
    classes: list[str] | None
    n_outputs: int
    columns: list[ColumnPlan]  # every raw feature column: its role and what was done
    numeric: NumericColumns  # -> X_{split}.npy, features in `numeric.features` order
    categorical: CategoricalColumns  # -> C_{split}.npy, level codes
    nan_policy: str
    rows: dict[str, int]
    class_counts: dict[str, dict[str, int]] | None
    schema: dict[str, Any]  # the schema report: duplicates, missing cells, dropped rows
    source: dict[str, Any]
    seed: int
    val_size: float
    test_size: float
    example: dict[str, list[Any]]  # the first rows' raw feature cells, as read
    fingerprint: str = ""  # sha256 of the split arrays, set when they are written
    # How the table wrote its cells (CSV: delimiter, decimal mark, thousands separator): the
    # served model and `mlpflow predict` read text cells the same way.
    text_format: TextFormat = DEFAULT_FORMAT
    # data.target_transform, fitted on the train targets (regression; `none` otherwise).
    target_transform: TargetTransform = field(default_factory=TargetTransform)
    weight: str | None = None  # data.weight: the column whose values are w_<split>.npy

    @property
    def n_features(self) -> int:
        return len(self.numeric.features)

    @property
    def input_columns(self) -> list[str]:
        """The raw columns the model reads (the dropped ones are not needed)."""
        return [column.name for column in self.columns if column.role != "drop"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Meta:
        fields = json.loads(text)
        return cls(
            **{
                **fields,
                "columns": [ColumnPlan(**column) for column in fields["columns"]],
                "numeric": NumericColumns(**fields["numeric"]),
                "categorical": CategoricalColumns(**fields["categorical"]),
                "text_format": TextFormat(**fields.get("text_format", {})),
                "target_transform": TargetTransform(**fields.get("target_transform", {})),
            }
        )


# >>> Reading


def load_meta(prepared_dir: str | Path) -> Meta:
    """Read `meta.json` of a prepared directory."""
    path = Path(prepared_dir).expanduser().absolute() / META_FILE
    try:
        return Meta.from_json(path.read_text())
    except FileNotFoundError as error:
        raise DataError(f"no prepared data: {path} is missing; {PREPARE_HINT}") from error
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"cannot read {path} ({error}); {PREPARE_HINT}") from error


def load_split(
    prepared_dir: str | Path, split: str, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Return (X, y) of one split: X float32 C-contiguous, y int64 classes or float32 targets."""
    if split not in (*SPLITS, HELDOUT):
        raise DataError(f"unknown split {split!r}; use one of: {', '.join((*SPLITS, HELDOUT))}")
    directory = Path(prepared_dir).expanduser().absolute()
    mode = "r" if mmap else None
    try:
        X = np.load(directory / f"X_{split}.npy", mmap_mode=mode, allow_pickle=False)
        y = np.load(directory / f"y_{split}.npy", mmap_mode=mode, allow_pickle=False)
    except FileNotFoundError as error:
        raise DataError(f"no prepared data: {error.filename} is missing; {PREPARE_HINT}") from error
    return X, y


def load_row_weights(prepared_dir: str | Path, split: str) -> np.ndarray | None:
    """The row weights of one split (float32), or None when the data is unweighted (prepared
    without data.weight: no `w_<split>.npy`)."""
    path = Path(prepared_dir).expanduser().absolute() / f"w_{split}.npy"
    return np.load(path, allow_pickle=False) if path.exists() else None


def load_codes(prepared_dir: str | Path, split: str, mmap: bool = False) -> np.ndarray:
    """The categorical level codes of one split, int64 [rows, categorical columns]."""
    path = Path(prepared_dir).expanduser().absolute() / f"C_{split}.npy"
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as error:
        raise DataError(f"no prepared data: {error.filename} is missing; {PREPARE_HINT}") from error


def read_rows(path: Path, rows: np.ndarray) -> np.ndarray:
    """The given rows (sorted indices) of a C-order `.npy` file, read a chunk at a time.

    Plain reads, no memory map: a map read at scattered rows faults in nearly every page of the
    file (the kernel maps the pages around each one), and they all count as resident."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        row_items = int(np.prod(shape[1:]))
        per_chunk = max(1, READ_CHUNK_BYTES // max(row_items * dtype.itemsize, 1))
        out = np.empty((len(rows), *shape[1:]), dtype=dtype)
        for start in range(0, shape[0], per_chunk):
            first, last = np.searchsorted(rows, (start, start + per_chunk))
            count = min(per_chunk, shape[0] - start)
            block = np.fromfile(file, dtype, count * row_items).reshape(count, *shape[1:])
            out[first:last] = block[rows[first:last] - start]
    return out


# >>> Writing ---------------------------------------------------------------------------------


class NpyWriter:
    """A `.npy` file of a known shape, written a chunk of rows at a time (C order); the file is
    byte for byte what `np.save` writes. Plain `write`s, no memory map: written pages stay in the
    kernel's page cache, not in the process's resident set."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.rows = 0
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": shape,
        }
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, rows: np.ndarray) -> None:
        assert rows.dtype == self.dtype and rows.shape[1:] == self.shape[1:]
        self._file.write(np.ascontiguousarray(rows).data)
        self.rows += len(rows)

    def close(self) -> None:
        """Close the file (again: a no-op); check the rows only when closed after writing."""
        if self._file.closed:
            return
        self._file.close()
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.rows} rows of {self.shape[0]}")

    def abort(self) -> None:
        """Close without checking (the write failed; the file is discarded)."""
        self._file.close()


def files_digest(paths: Iterable[Path]) -> str:
    """sha256 of the files' bytes, concatenated in order, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            while block := file.read(HASH_BLOCK_BYTES):
                digest.update(block)
    return digest.hexdigest()


@contextmanager
def writing(out: Path) -> Iterator[Path]:
    """A new hidden sibling directory of `out` to write it in, until `write_prepared` moves it
    into place. When the block fails, it is removed, and so are the parent folders it created:
    a failed prepare leaves `out` as it was and nothing new behind."""
    created = [d for d in (out.parent, *out.parent.parents) if not d.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        for directory in created:
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    finally:
        remove_path(tmp)


def write_prepared(tmp: Path, out: Path, meta: Meta) -> Meta:
    """Fingerprint the arrays, write meta.json, move tmp into place as out."""
    meta = write_meta(tmp, meta)
    swap_into_place(tmp, out)
    return meta


def write_meta(directory: Path, meta: Meta, arrays: Iterable[str] = ARRAY_FILES) -> Meta:
    """meta.json of `directory`, fingerprinted on its `arrays` files and its row weights
    files; the meta written."""
    names = [*arrays, *sorted(path.name for path in directory.glob("w_*.npy"))]
    meta = replace(meta, fingerprint=files_digest(directory / name for name in names))
    (directory / META_FILE).write_text(meta.to_json())
    return meta


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename tmp to out, replacing an older out; parallel writers may race here.

    A directory cannot be renamed over a non-empty one, so an old out is first renamed aside. If
    another writer put an identical directory in place meanwhile (the same JSON files: meta.json,
    and folds.json or none), that one is kept.
    """
    new_json = json_files(tmp)
    aside = tmp.with_name(tmp.name + ".old")
    for _ in range(10):
        try:
            os.replace(tmp, out)
            return
        except OSError:  # out exists and is not an empty directory
            if json_files(out) == new_json:
                return
            try:
                os.replace(out, aside)
            except FileNotFoundError:  # another writer moved it first: retry the rename
                continue
            finally:
                remove_path(aside)
    raise DataError(f"could not replace {out}: other processes keep rewriting it; run again")


def json_files(directory: Path) -> dict[str, bytes | None]:
    """The bytes of each JSON file directly in `directory` (meta.json always, None if absent)."""
    names = {META_FILE, *(path.name for path in directory.glob("*.json"))}
    return {name: read_bytes_or_none(directory / name) for name in sorted(names)}


def read_bytes_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
