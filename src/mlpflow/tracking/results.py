"""evaluate's results into train's MLflow run, through the client (no Lightning, no fluent API)."""

from __future__ import annotations

import time
from pathlib import Path

from mlpflow.console import warn
from mlpflow.tracking.guard import StoreGuard


def log_results(
    uri: str, run_id: str, metrics: dict[str, float], artifacts: dict[str, list[Path]]
) -> None:
    """Add the test metrics (one batch) and the report files to the run; a lost store leaves
    reports/ complete and says which run misses them."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    guard = StoreGuard(uri, lambda: run_id, "evaluation")
    client = guard(MlflowClient, uri)
    now = int(time.time() * 1000)
    batch = [Metric(key, value, now, 0) for key, value in metrics.items()]
    if client is not None:
        guard(client.log_batch, run_id, metrics=batch)
        for folder, paths in artifacts.items():
            for path in paths:
                guard(client.log_artifact, run_id, str(path), folder)
    if guard.lost:
        warn(
            f"MLflow run {run_id} is missing evaluate's results ({guard.lost}); "
            "reports/ is complete"
        )
