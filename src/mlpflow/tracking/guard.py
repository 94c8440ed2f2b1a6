"""Tracking calls that outlive the store (no Lightning import: evaluate uses it too).

If the store goes away mid-run, the first failed call is reported once, later calls are
skipped, and the stage finishes with complete DVC outputs; `lost` then names what went wrong
so the stage can say which run is incomplete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mlpflow.errors import first_line
from mlpflow.notice import warn

# MLflow retries a dead server for minutes by default (7 retries, backoff factor 2).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


class StoreGuard:
    def __init__(self, uri: str, run_id: Callable[[], str | None], doing: str) -> None:
        """`run_id` is read when a failure is reported; `doing` names what goes on without it."""
        if str(uri).startswith(("http://", "https://")):
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        self.uri, self.run_id, self.doing = uri, run_id, doing
        self.lost: str | None = None

    def __call__(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one tracking call; after the store is lost, skip it (and every later one)."""
        if self.lost is not None:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as error:
            detail = first_line(error, "")
            self.lost = f"{type(error).__name__}: {detail}"[:300]
            warn(
                f"lost the MLflow store {self.uri} ({self.lost}); {self.doing} goes on, "
                f"but run {self.run_id()} will be incomplete"
            )
            return None
