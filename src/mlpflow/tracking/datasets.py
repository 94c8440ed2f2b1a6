"""The prepared splits as MLflow datasets: the run's inputs (contexts training, validation,
test), so the UI's Datasets column says what a run trained and was tested on, and runs on equal
data show the same dataset.

A split's digest derives from prepare's fingerprint (the sha256 of every split array): equal
prepared data, equal digests, without hashing the arrays again. The source is the data file, or
the built-in dataset's name; the profile carries the rows, the raw columns' roles and the DVC
hash of the prepared data when dvc.lock records it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.types import ColSpec, Schema
from omegaconf import DictConfig

CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
DATASET_RETRIES = 3  # a parallel trial inserted the same dataset first: it exists now
DIGEST_CHARS = 32  # MLflow stores at most 36
# How each database words that race: SQLite; PostgreSQL and SQL Server (the key's name); MySQL.
DATASET_RACE = ("UNIQUE constraint failed: datasets.", "dataset_pk", "for key 'datasets.PRIMARY'")


class PreparedSplit(MetaDataset):
    """Metadata only (MLflow copies no data): name, digest, source, schema and a profile."""

    def __init__(self, profile: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._profile = profile

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def split_digest(fingerprint: str, split: str) -> str:
    return hashlib.sha256(f"{fingerprint}:{split}".encode()).hexdigest()[:DIGEST_CHARS]


def data_source(cfg: DictConfig) -> Any:
    """The data file (a local path or URI), else a code source naming the built-in dataset."""
    path = cfg.data.get("path")
    if not path:
        return CodeDatasetSource({"mlpflow.dataset": str(cfg.data.name)})
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": the same class twice
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(Path(path).resolve()) if "://" not in path else path)


def raw_schema(meta: Any) -> Any:
    """The raw columns the model reads (dropped ones left out), typed as read."""

    def mlflow_type(dtype: str) -> str:
        if dtype.startswith(("int", "uint")):
            return "long"
        if dtype.startswith(("double", "float", "halffloat")):
            return "double"
        return "boolean" if dtype == "bool" else "string"

    kept = [column for column in meta.columns if column.role != "drop"]
    return Schema([ColSpec(mlflow_type(column.dtype), column.name) for column in kept])


def split_datasets(cfg: DictConfig, meta: Any, dvc_md5: str | None) -> dict[str, PreparedSplit]:
    """One dataset per split, keyed by split name."""
    source, schema = data_source(cfg), raw_schema(meta)
    roles = {column.name: column.role for column in meta.columns}
    return {
        split: PreparedSplit(
            profile={"rows": meta.rows[split], "roles": roles, "dvc_md5": dvc_md5},
            source=source,
            name=str(cfg.data.name),
            digest=split_digest(meta.fingerprint, split),
            schema=schema,
        )
        for split in CONTEXTS
    }


def log_datasets(client: Any, run_id: str, datasets: dict[str, PreparedSplit]) -> None:
    """The splits as the run's inputs, each with its context.

    Parallel trials log the same splits at the same moment, and MLflow's SQL store checks then
    inserts a dataset: the second insert breaks the key (`DATASET_RACE`, also through a
    server). The dataset exists then, so the call is tried again, up to `DATASET_RETRIES`
    times; the last attempt's error stands.
    """
    inputs = [
        DatasetInput(
            Dataset(**datasets[split].to_dict()), [InputTag("mlflow.data.context", context)]
        )
        for split, context in CONTEXTS.items()
    ]
    for attempt in range(DATASET_RETRIES + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as error:
            raced = any(wording in str(error) for wording in DATASET_RACE)
            if not raced or attempt == DATASET_RETRIES:
                raise
