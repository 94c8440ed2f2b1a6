"""The MLflow logger training uses: it outlives the tracking server.

If the server goes away mid-run, the first failed call is reported once, later calls are
skipped, and training finishes with complete DVC outputs; `lost` then names what went wrong
so the stage can say which run is incomplete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

from mlpflow.console import warn

# MLflow retries a dead server for minutes by default (7 retries, backoff factor 2).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


class TrackingLogger(MLFlowLogger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if str(self._tracking_uri).startswith(("http://", "https://")):
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        self.lost: str | None = None

    def safely(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one tracking call; after the store is lost, skip it (and every later one)."""
        if self.lost is not None:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.lost = f"{type(error).__name__}: {detail}"[:300]
            warn(
                f"lost the MLflow store {self._tracking_uri} ({self.lost}); training goes on, "
                f"but run {self._run_id} will be incomplete"
            )
            return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.safely(super().log_metrics, metrics, step)

    def log_hyperparams(self, params: Any) -> None:
        self.safely(super().log_hyperparams, params)

    def finalize(self, status: str = "success") -> None:
        self.safely(super().finalize, status)
