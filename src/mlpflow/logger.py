"""The MLflow logger training uses: Lightning's MLFlowLogger, one write per epoch, whose calls
outlive the store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

from mlpflow.guard import StoreGuard


class TrackingLogger(MLFlowLogger):
    """Lightning hands an epoch's metrics over in two calls at the same step: the validation
    metrics at validation end, the train metrics a few milliseconds later at epoch end. Each
    call is a SQLite transaction (~8 ms here, more than the validation pass), so a call holding
    only validation metrics is kept and written with the next one: one `log_batch` an epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A bound method, not a lambda: ddp_spawn pickles the logger into its workers.
        self.safely = StoreGuard(self._tracking_uri, self._current_run_id, "training")
        self._held: dict[str, float] = {}
        self._held_step: int | None = None

    def _current_run_id(self) -> str | None:
        return self._run_id  # `run_id` would create the run: not while the store is failing

    @property
    def lost(self) -> str | None:
        return self.safely.lost

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._held and step != self._held_step:
            self._write_held()
        self._held.update(metrics)
        self._held_step = step
        if not all(key.startswith("val/") or key == "epoch" for key in metrics):
            self._write_held()

    def _write_held(self) -> None:
        metrics, self._held = self._held, {}
        self.safely(super().log_metrics, metrics, self._held_step)

    def log_hyperparams(self, params: Any) -> None:
        self.safely(super().log_hyperparams, params)

    def finalize(self, status: str = "success") -> None:
        if self._held:
            self._write_held()
        self.safely(super().finalize, status)
