"""The MLflow logger training uses: Lightning's MLFlowLogger, one write per epoch, whose calls
outlive the store; and the run it logs into (new, or an interrupted one continued)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.loggers import MLFlowLogger

from mlpflow.console import warn
from mlpflow.errors import TrackingError
from mlpflow.tracking.guard import StoreGuard


class TrackingLogger(MLFlowLogger):
    """Lightning hands an epoch's metrics over in two calls at the same step: the validation
    metrics at validation end, the train metrics a few milliseconds later at epoch end. Each
    call is a SQLite transaction (costlier than the validation pass, benchmarks/README.md), so a
    call holding only validation metrics is kept and written with the next one: one `log_batch`
    an epoch.
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


def training_logger(cfg: DictConfig, meta: Any, run_id: str | None) -> TrackingLogger | None:
    """The logger of this training run (a resumed one continues `run_id`); None when tracking
    is off, or optional and unreachable."""
    from mlpflow.tracking.lineage import lineage_tags, run_name
    from mlpflow.tracking.store import ensure_store, tracking_uri
    from mlpflow.tracking.sweep import trial_tags

    if not cfg.tracking.enabled:
        return None
    uri = tracking_uri(cfg)
    try:
        ensure_store(uri, cfg.tracking.experiment)
    except TrackingError as error:
        if cfg.tracking.required:
            raise
        warn(f"{error}; training without tracking: this run is NOT in MLflow")
        return None
    tags = {**lineage_tags(cfg, meta.task, meta.fingerprint), **trial_tags()}
    name = run_name(cfg) + (f"-j{tags['sweep.job']}" if "sweep.job" in tags else "")
    return TrackingLogger(
        experiment_name=cfg.tracking.experiment,
        run_name=None if run_id else name,
        tracking_uri=uri,
        tags=tags,
        run_id=run_id,
        log_model=False,  # the best checkpoint is logged once, by train, under checkpoints/
    )


def log_run_inputs(logger: TrackingLogger, cfg: DictConfig, meta: Any) -> None:
    """A new run's params (the resolved config), config.yaml, and prepare's column table."""
    import pandas as pd
    from omegaconf import OmegaConf

    from mlpflow.tracking.lineage import column_tags, flatten

    logger.log_hyperparams(flatten(cfg))
    client, run_id = logger.experiment, logger.run_id
    logger.safely(
        client.log_text, run_id, OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml"
    )
    columns = pd.DataFrame([vars(column) for column in meta.columns])
    logger.safely(client.log_table, run_id, columns, "data/columns.json")
    for key, value in column_tags(meta.columns).items():
        logger.safely(client.set_tag, run_id, key, value)
