"""evaluate's results into train's MLflow run, through the client (no Lightning, no fluent API)."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from mlpflow.notice import warn
from mlpflow.tracking.guard import StoreGuard


def log_results(
    uri: str,
    run_id: str,
    metrics: dict[str, float],
    artifacts: dict[str, list[Path]],
    model_id: str | None = None,
    dataset: tuple[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Add the test metrics (one batch), `tags` and the report files to the run; a lost store
    leaves reports/ complete and says which run misses them.

    With `model_id` the metrics are linked to train's LoggedModel (and to the test dataset,
    (name, digest)): the Models tab and `mlflow.search_logged_models` rank models by them.
    """
    guard = StoreGuard(uri, lambda: run_id, "evaluation")
    client = guard(MlflowClient, uri)
    now = int(time.time() * 1000)
    name, digest = dataset or (None, None)
    link = {"model_id": model_id, "dataset_name": name, "dataset_digest": digest}
    batch = [Metric(key, value, now, 0, run_id=run_id, **link) for key, value in metrics.items()]
    tag_batch = [RunTag(key, value) for key, value in (tags or {}).items()]
    if client is not None:
        guard(client.log_batch, run_id, metrics=batch, tags=tag_batch)
        for folder, paths in artifacts.items():
            for path in paths:
                guard(client.log_artifact, run_id, str(path), folder)
    if guard.lost:
        warn(
            f"MLflow run {run_id} is missing evaluate's results ({guard.lost}); "
            "reports/ is complete"
        )
