"""System metrics (CPU, memory, disk, network; GPU where present) sampled into the run while it
trains, as `system/...` metrics: MLflow's own monitor, pointed at the run the logger writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig


@contextmanager
def system_metrics(cfg: DictConfig, logger: Any, uri: str | None, resumed: bool) -> Iterator[None]:
    """Sample every `tracking.system_metrics_interval` seconds during the block, when
    `tracking.system_metrics` is on; a resumed run continues its steps."""
    if logger is None or uri is None or not cfg.tracking.get("system_metrics", False):
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        logger.run_id,
        sampling_interval=float(cfg.tracking.system_metrics_interval),
        samples_before_logging=1,
        resume_logging=resumed,
        tracking_uri=uri,
    )
    logger.safely(monitor.start)
    try:
        yield
    finally:
        logger.safely(monitor.finish)
