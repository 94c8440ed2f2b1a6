"""Raw tables: scikit-learn's built-in sets, synthetic data, and the user's CSV/Parquet file.

Every source is opened as a `TableSource`: a schema (feature names and Arrow types, the target's
name and type) and a stream of Arrow record batches, the feature columns first and the target
last. Files are streamed (`mlpflow.data.readers`); the built-in and synthetic sets are small and
made in memory, then cut into the same record batches, so prepare has one code path for every
source and every size. Sources check what concerns the file (it exists, is readable, has rows and
distinct column names, the target among them); checking the values is prepare's job.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpflow.config.schema import DATASETS
from mlpflow.data.text import DEFAULT_FORMAT, TextFormat
from mlpflow.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from mlpflow.config.schema import DataConfig

BUILTIN_TASKS = {name: task for name, task in DATASETS.items() if task is not None}
MEMORY_BATCH_ROWS = 65536


def preview(names: list[str], limit: int = 12) -> str:
    """Comma-separated names, cut after `limit` so that wide tables keep the error one line."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


class SchemaChanged(Exception):
    """A CSV column's type, inferred from the first block, did not fit a later block.

    The column has been widened; whoever iterates `TableSource.batches()` starts over.
    """


class TableSource:
    """A table before validation: its schema and a stream of record batches.

    Each batch holds the feature columns (in `feature_names` order) and then the target column.
    `batches()` may raise `SchemaChanged` (CSV only): the schema was widened, start again.
    """

    feature_names: list[str]
    feature_types: list[pa.DataType]
    target_name: str
    target_type: pa.DataType
    source: dict[str, Any]
    task: str | None  # fixed by a built-in set; None when the config or the data decide
    text_format: TextFormat = DEFAULT_FORMAT  # how text cells write numbers (CSV: the file's)
    notices: Sequence[str] = ()  # what reading it took, said once prepare succeeded

    def batches(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def settle_types(self) -> None:
        """Read to the end, so that the schema holds every widening a later block needs."""


def open_table(data: DataConfig, seed: int) -> TableSource:
    """Open the table `data` names."""
    from pathlib import Path

    if data.name == "csv":
        from mlpflow.data.readers import open_file

        return open_file(Path(str(data.path)), str(data.target), data.csv)
    if data.name == "synthetic":
        return _make_synthetic(data, seed)
    return _load_builtin(data.name)


# --- in memory: built-in and synthetic sets ----------------------------------------------------


class MemoryTable(TableSource):
    """A float64 feature matrix and a target array, handed out in record batches."""

    def __init__(
        self,
        features: np.ndarray,
        feature_names: list[str],
        target: pa.Array,
        target_name: str,
        source: dict[str, Any],
        task: str | None,
    ) -> None:
        import pyarrow as pa

        self.features = np.asarray(features, dtype=np.float64)
        self.feature_names = [str(name) for name in feature_names]
        self.feature_types = [pa.float64()] * len(self.feature_names)
        self.target, self.target_name, self.target_type = target, target_name, target.type
        self.source, self.task = source, task

    def batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        names = [*self.feature_names, self.target_name]
        for start in range(0, len(self.features), MEMORY_BATCH_ROWS):
            block = self.features[start : start + MEMORY_BATCH_ROWS]
            columns = [pa.array(column) for column in block.T]
            target = self.target.slice(start, len(block))
            yield pa.RecordBatch.from_arrays([*columns, target], names=names)


def _load_builtin(name: str) -> MemoryTable:
    import pyarrow as pa
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    if BUILTIN_TASKS[name] == "regression":
        target = pa.array(np.asarray(bunch.target, dtype=np.float64))
    else:
        # Keep scikit-learn's class order (breast_cancer: 0 = malignant) with readable names.
        names = pa.array([str(label) for label in bunch.target_names])
        target = pa.DictionaryArray.from_arrays(pa.array(bunch.target, pa.int32()), names)
    return MemoryTable(
        bunch.data, list(bunch.feature_names), target, "target", {"name": name}, BUILTIN_TASKS[name]
    )


def _make_synthetic(data: DataConfig, seed: int) -> MemoryTable:
    import pyarrow as pa
    from sklearn import datasets

    task = data.task
    n_samples, n_features = int(data.n_samples), int(data.n_features)
    if task == "regression":
        X, y = datasets.make_regression(
            n_samples=n_samples, n_features=n_features, noise=10.0, random_state=seed
        )
    else:
        n_classes = int(data.n_classes or 2)
        try:
            X, y = datasets.make_classification(
                n_samples=n_samples,
                n_features=n_features,
                n_informative=min(n_features, max(2, n_features // 2)),
                n_redundant=0,
                n_classes=n_classes,
                random_state=seed,
            )
        except ValueError as error:  # e.g. too many classes for the informative features
            raise DataError(
                f"data.name=synthetic: {error}; raise data.n_features or lower data.n_classes"
            ) from error
    source = {
        "name": "synthetic",
        "n_samples": n_samples,
        "n_features": n_features,
        "n_classes": None if task == "regression" else int(y.max()) + 1,
    }
    names = [f"f{i}" for i in range(n_features)]
    return MemoryTable(X, names, pa.array(y), "target", source, None)
