"""The MLflow logger training uses: Lightning's MLFlowLogger, whose calls outlive the store and
whose epoch points are written with the checkpoint; and the run it logs into (new, or an
interrupted one continued)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from mlpflow.errors import TrackingError
from mlpflow.notice import warn
from mlpflow.tracking.datasets import log_datasets, split_datasets
from mlpflow.tracking.guard import StoreGuard
from mlpflow.tracking.lineage import (
    column_tags,
    dvc_output_md5,
    lineage_tags,
    run_name,
    run_params,
)
from mlpflow.tracking.owner import OWNER_TAG, this_process
from mlpflow.tracking.store import ensure_store, tracking_uri
from mlpflow.tracking.trials import trial_tags


class TrackingLogger(MLFlowLogger):
    """MLFlowLogger whose calls outlive the store (`StoreGuard`), which continues an interrupted
    run without writing a metric point twice, and which can hold points: while `holding` (set by
    `LastCheckpoint`), they wait for `flush()`, just before the checkpoint of their epochs, and
    go out in one `log_batch` (a SQLite transaction costs more than a small epoch)."""

    def __init__(self, *, tracking_uri: str, run_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(tracking_uri=tracking_uri, run_id=run_id, **kwargs)
        self._continued_run_id = run_id
        self._run_created = False
        # A bound method, not a lambda: ddp_spawn pickles the logger into its workers.
        self.safely = StoreGuard(tracking_uri, self.existing_run_id, "training")
        self._logged: dict[str, int] = {}  # a resumed run's last logged step, per metric
        self.logged_params: set[str] = set()  # a resumed run's params
        self.holding = False
        self._held: list[Metric] = []

    @property
    def experiment(self) -> MlflowClient:
        """MLFlowLogger's client; its first call creates the run (or opens the one continued)."""
        client = super().experiment
        self._run_created = True
        return client

    def existing_run_id(self) -> str | None:
        """The run's id once the run exists, else None, without a call to the store: `run_id`
        would create the run, which a failing store must not be asked to do."""
        if self._continued_run_id is not None:
            return self._continued_run_id
        return self.run_id if self._run_created else None

    @property
    def lost(self) -> str | None:
        return self.safely.lost

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Keep the points the run lacks (a resumed epoch logs the values it logged before),
        stamped now; write them unless holding."""
        at = step if step is not None else -1
        now = int(time.time() * 1000)
        self._held += [
            Metric(key, float(value), now, step or 0)
            for key, value in metrics.items()
            if at > self._logged.get(key, -1)
        ]
        if not self.holding:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write the held points, in one call."""
        held, self._held = self._held, []
        if held:
            self.safely(self._log_batch, held)

    def _log_batch(self, metrics: list[Metric]) -> None:
        self.experiment.log_batch(self.run_id, metrics=metrics)

    def continue_run(self, owner: str) -> None:
        """Reopen an interrupted run: RUNNING again, and the points it logged after its last
        checkpoint are not written twice (the resumed epoch logs bit-identical values)."""
        client, run_id = self.experiment, self.run_id
        run = client.get_run(run_id)
        self.logged_params = set(run.data.params)
        self._logged = {
            key: max(point.step for point in client.get_metric_history(run_id, key))
            for key in run.data.metrics
        }
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, OWNER_TAG, owner)
        client.set_tag(run_id, "run.resumes", int(run.data.tags.get("run.resumes", 0)) + 1)
        if "run.end" in run.data.tags:  # the interruption's note: no longer how the run ended
            client.delete_tag(run_id, "run.end")

    def log_hyperparams(self, params: Any) -> None:
        self.safely(super().log_hyperparams, params)

    def end(self, status: str, reason: str) -> None:
        """Mark the run FAILED or KILLED and say why (`run.end`): no run stays RUNNING once its
        process has ended."""
        if self.existing_run_id() is None:
            return
        client, run_id = self.experiment, self.run_id
        self.safely(client.set_tag, run_id, "run.end", reason[:5000])
        self.safely(client.set_terminated, run_id, status)

    def finalize(self, status: str = "success") -> None:
        """Flush first: on a kill too, every finished epoch's points reach the store."""
        self.flush()
        self.safely(super().finalize, status)


def training_logger(
    cfg: DictConfig, meta: Any, run_id: str | None, nesting: dict[str, str]
) -> TrackingLogger | None:
    """The logger of this tracked training run (a resumed one continues `run_id`); None when
    tracking is optional and the store unreachable. `nesting`: tags that nest the run under
    another (a fold's under its CV run) rather than under a sweep's run."""
    uri = tracking_uri(cfg)
    try:
        ensure_store(uri, cfg.tracking.experiment)
    except TrackingError as error:
        if cfg.tracking.required:
            raise
        warn(f"{error}; training without tracking: this run is NOT in MLflow")
        return None
    tags = {
        **lineage_tags(cfg, meta.task, meta.fingerprint),
        **trial_tags(),
        **nesting,
        OWNER_TAG: this_process(),
    }
    name = run_name(cfg) + (f"-j{tags['sweep.job']}" if "sweep.job" in tags else "")
    name += f"-fold{tags['fold']}" if "fold" in tags else ""
    logger = TrackingLogger(
        experiment_name=cfg.tracking.experiment,
        run_name=None if run_id else name,
        tracking_uri=uri,
        tags=tags,
        run_id=run_id,
        log_model=False,  # the best checkpoint is logged once, by train, under checkpoints/
    )
    if run_id:
        logger.safely(logger.continue_run, tags[OWNER_TAG])
    return logger


def run_exists(uri: str, run_id: str) -> bool:
    """Whether an interrupted run is still in the store (not deleted) to be continued."""
    try:
        return MlflowClient(uri).get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def log_run_inputs(logger: TrackingLogger, cfg: DictConfig, meta: Any) -> None:
    """A new run's datasets (the three splits), params (the resolved config, `run_params`),
    config.yaml, and
    prepare's column table; a resumed run gets the params it lacks only (its paths differ:
    MLflow refuses a changed param)."""
    if not logger.logged_params:  # else a resumed run: these came before its params
        client, run_id = logger.experiment, logger.run_id
        datasets = split_datasets(cfg, meta, dvc_output_md5(Path(cfg.paths.prepared)))
        logger.safely(log_datasets, client, run_id, datasets)
        tags = column_tags(meta.columns)
        if determining := meta.schema.get("determines_target"):  # data/leakage.py
            tags["data.determines_target"] = ", ".join(determining)
        run_tags = [RunTag(key, value) for key, value in tags.items()]
        logger.safely(client.log_batch, run_id, tags=run_tags)  # one transaction, not one a tag
        columns = pd.DataFrame([vars(column) for column in meta.columns])
        logger.safely(client.log_table, run_id, columns, "data/columns.json")
        config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        logger.safely(client.log_text, run_id, config_yaml, "config/config.yaml")
    params = {k: v for k, v in run_params(cfg).items() if k not in logger.logged_params}
    if params:
        logger.log_hyperparams(params)
