"""Row-major arrays on disk, written and read in chunks: what keeps prepare's memory flat.

`RowFile` is prepare's scratch copy of the raw feature values (float64, C order, no header),
appended one record batch at a time and read back in chunks of `CHUNK_BYTES`. `NpyWriter`
writes a `.npy` file whose shape is known in advance, a chunk of rows at a time; the file is
byte for byte what `np.save` writes. Both use plain `read`/`write` rather than memory maps: pages
of a mapped file count in the process's resident set while they are mapped, pages a `read` went
through stay in the kernel's page cache only, so a pass over a scratch file larger than memory
costs one chunk of memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

CHUNK_BYTES = 16 << 20  # one chunk of rows read back from a RowFile
HASH_BLOCK_BYTES = 1 << 20


class RowFile:
    """Rows of `width` float64 values appended to `path`, read back in chunks of rows."""

    def __init__(self, path: Path, width: int) -> None:
        self.path, self.width, self.rows = path, width, 0
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 (closed by finish())

    def append(self, block: np.ndarray) -> None:
        assert self._file is not None and block.shape[1:] == (self.width,)
        self._file.write(np.ascontiguousarray(block, dtype=np.float64).data)
        self.rows += len(block)

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) for consecutive chunks; each chunk is only valid until the next."""
        self.finish()
        rows_per_chunk = max(1, CHUNK_BYTES // (8 * max(self.width, 1)))
        buffer = np.empty((min(rows_per_chunk, self.rows), self.width), dtype=np.float64)
        with open(self.path, "rb") as file:
            for start in range(0, self.rows, rows_per_chunk):
                block = buffer[: min(rows_per_chunk, self.rows - start)]
                if file.readinto(block.data) != block.nbytes:  # type: ignore[attr-defined]
                    raise OSError(f"{self.path} is shorter than its {self.rows} rows")
                yield start, block

    def remove(self) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)


class NpyWriter:
    """A `.npy` file of a known shape, written a chunk of rows at a time (C order)."""

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
