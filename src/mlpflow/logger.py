"""The MLflow logger training uses: Lightning's MLFlowLogger whose calls outlive the store."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

from mlpflow.guard import StoreGuard


class TrackingLogger(MLFlowLogger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.safely = StoreGuard(self._tracking_uri, lambda: self._run_id, "training")

    @property
    def lost(self) -> str | None:
        return self.safely.lost

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.safely(super().log_metrics, metrics, step)

    def log_hyperparams(self, params: Any) -> None:
        self.safely(super().log_hyperparams, params)

    def finalize(self, status: str = "success") -> None:
        self.safely(super().finalize, status)
