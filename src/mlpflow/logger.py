"""The MLflow logger training uses: Lightning's MLFlowLogger whose calls outlive the store."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

from mlpflow.guard import StoreGuard


class TrackingLogger(MLFlowLogger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A bound method, not a lambda: ddp_spawn pickles the logger into its workers.
        self.safely = StoreGuard(self._tracking_uri, self._current_run_id, "training")

    def _current_run_id(self) -> str | None:
        return self._run_id  # `run_id` would create the run: not while the store is failing

    @property
    def lost(self) -> str | None:
        return self.safely.lost

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.safely(super().log_metrics, metrics, step)

    def log_hyperparams(self, params: Any) -> None:
        self.safely(super().log_hyperparams, params)

    def finalize(self, status: str = "success") -> None:
        self.safely(super().finalize, status)
