"""The table benchmarks/data_scale.py prepares: written to Parquet one row group at a time.

F float64 features `x0..x{F-1}` ~ N(0, 1), K text categoricals `c0..c{K-1}` and an int64 0/1
target `y`. Column `cj` has min(L, 10 * 4**j) levels (10, 40, 160, 640, then L), named
`cj_0000`, `cj_0001`, ..., drawn with Zipf frequencies ~ 1 / rank (level 0 the most common).
Each level has a fixed effect, standardized to mean 0 and variance 1 under its column's
frequencies, so that every categorical column carries as much signal as the others:

    y = [ (x . w / sqrt(F) + sum_j effect_j[cj] / sqrt(K)) / sqrt(2) + 0.5 * noise > 0 ]

with w ~ N(0, 1); without categoricals (K = 0) y = [x . w / sqrt(F) + 0.5 * noise > 0] from the
same draws as before the categoricals existed. Categoricals are plain Parquet string columns
(read back as strings), or with `dictionary` Arrow dictionary columns (what a pandas
categorical column becomes; read back as dictionaries). `roles(meta)` says what prepare made
of the columns, from its meta.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

SEED = 7  # the rows (and w)
STRUCTURE_SEED = 8  # the categorical effects
ZIPF_EXPONENT = 1.0


def cardinalities(k: int, levels: int) -> list[int]:
    """Levels per categorical column: 10, 40, 160, 640, ... capped at `levels`."""
    return [min(levels, 10 * 4**j) for j in range(k)]


@dataclass
class Categorical:
    """One categorical column: its level names, their cumulative frequencies and effects."""

    name: str
    levels: pa.Array  # strings, level k at index k
    cdf: np.ndarray
    effects: np.ndarray

    def draw(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        """Level indices (int32) with the column's frequencies."""
        codes = np.searchsorted(self.cdf, rng.random(rows), side="right")
        return np.minimum(codes, len(self.cdf) - 1).astype(np.int32)

    def column(self, codes: np.ndarray, dictionary: bool) -> pa.Array:
        import pyarrow as pa

        indices = pa.array(codes, type=pa.int32())
        if dictionary:
            return pa.DictionaryArray.from_arrays(indices, self.levels)
        return self.levels.take(indices)


def categoricals(k: int, levels: int) -> list[Categorical]:
    import pyarrow as pa

    rng = np.random.default_rng(STRUCTURE_SEED)
    columns = []
    for j, n_levels in enumerate(cardinalities(k, levels)):
        p = 1.0 / np.arange(1, n_levels + 1) ** ZIPF_EXPONENT
        p /= p.sum()
        effects = rng.standard_normal(n_levels)
        effects -= p @ effects
        effects /= np.sqrt(p @ effects**2)
        names = pa.array([f"c{j}_{r:04d}" for r in range(n_levels)], type=pa.string())
        columns.append(Categorical(f"c{j}", names, np.cumsum(p), effects))
    return columns


def schema(features: int, columns: list[Categorical], dictionary: bool) -> pa.Schema:
    import pyarrow as pa

    text = pa.dictionary(pa.int32(), pa.string()) if dictionary else pa.string()
    return pa.schema(
        [
            *(pa.field(f"x{j}", pa.float64()) for j in range(features)),
            *(pa.field(column.name, text) for column in columns),
            pa.field("y", pa.int64()),
        ]
    )


def generate(
    path: Path, n: int, features: int, row_group: int,
    k: int = 0, levels: int = 1000, dictionary: bool = False,
) -> None:  # fmt: skip
    """The table, row group by row group: never more than one in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    w = rng.standard_normal(features) / np.sqrt(max(features, 1))
    columns = categoricals(k, levels)
    table_schema = schema(features, columns, dictionary)
    with pq.ParquetWriter(path, table_schema) as writer:
        for start in range(0, n, row_group):
            rows = min(row_group, n - start)
            x = rng.standard_normal((rows, features))
            codes = [column.draw(rng, rows) for column in columns]
            score = x @ w
            if columns:
                effects = sum(c.effects[code] for c, code in zip(columns, codes, strict=True))
                score = (score + effects / np.sqrt(len(columns))) / np.sqrt(2.0)
            y = (score + 0.5 * rng.standard_normal(rows) > 0).astype(np.int64)
            arrays = [
                *(pa.array(x[:, j]) for j in range(features)),
                *(c.column(code, dictionary) for c, code in zip(columns, codes, strict=True)),
                pa.array(y),
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=table_schema))


def roles(meta: dict[str, Any]) -> str:
    """Counts per column role and each categorical's levels: in the table / kept / rare."""
    columns = meta.get("columns") or []  # absent in meta.json before column roles
    if not columns:
        return "column roles: (not in meta.json)"
    counts: dict[str, int] = {}
    for column in columns:
        counts[column["role"]] = counts.get(column["role"], 0) + 1
    line = "column roles: " + ", ".join(f"{role} {n}" for role, n in counts.items())
    categorical = meta.get("categorical") or {"names": []}
    levels = {column["name"]: column["levels"] for column in columns}
    dtypes = sorted({c["dtype"] for c in columns if c["role"] == "categorical"})
    cells = [
        f"{name} {levels[name]}/{len(kept)}/{len(rare)}"
        for name, kept, rare in zip(
            categorical["names"], categorical["vocabularies"], categorical["rare"], strict=True
        )
    ]
    if cells:
        line += f"\ncategorical ({', '.join(dtypes)}) levels in table/vocabulary/rare: "
        line += ", ".join(cells)
    return line
