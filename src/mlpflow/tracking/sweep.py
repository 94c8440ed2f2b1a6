"""MLflow bookkeeping of a Hydra multirun: one parent run, a nested child run per trial.

`SweepRunCallback` (a Hydra callback, enabled in conf/config.yaml) creates the parent run before
any trial starts — which also creates and migrates the store once, serially — and hands its id
to the trials through the environment (inherited by joblib's worker processes). When the sweep
ends it records the best trial, a table of all trials and an optimization-history figure.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mlpflow.errors import MlpflowError, friendly_errors

PARENT_ENV = "MLPFLOW_PARENT_RUN_ID"
# Set per trial by the Optuna sweeper (hydra_plugins.mlpflow_optuna_sweeper) for pruning.
STORAGE_ENV = "MLPFLOW_OPTUNA_STORAGE"
STUDY_ENV = "MLPFLOW_OPTUNA_STUDY"
TRIAL_ENV = "MLPFLOW_OPTUNA_TRIAL"
PRUNER_ENV = "MLPFLOW_OPTUNA_PRUNER"  # the pruner's config, JSON: a loaded study has none
SWEEP_ENV = "MLPFLOW_SWEEP_ID"
JOB_ENV = "MLPFLOW_JOB_NUM"
OVERRIDES_ENV = "MLPFLOW_JOB_OVERRIDES"


log = logging.getLogger(__name__)


class SweepFailed(MlpflowError):
    """More trials failed than the sweep allows."""


def pruning_requested() -> bool:
    """Pruning needs a persistent study storage: an in-memory study lives in the sweeper only."""
    return bool(os.environ.get(STORAGE_ENV) and os.environ.get(TRIAL_ENV))


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_trial(pipeline: Callable[[DictConfig], float], cfg: DictConfig) -> float:
    """Run one trial; a failure is recorded (FAILED run, NaN objective) and the sweep goes on.

    Optuna's TrialPruned passes through: the Optuna sweeper records the trial as pruned.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    os.environ[JOB_ENV] = str(hydra_cfg.job.num)
    os.environ[OVERRIDES_ENV] = " ".join(hydra_cfg.overrides.task)
    try:
        return pipeline(cfg)
    except Exception as error:
        if type(error).__name__ == "TrialPruned":
            mark_trial(cfg, hydra_cfg.job.num, "KILLED", f"pruned: {error}")
            raise
        if isinstance(error, MlpflowError):
            log.error("trial %s failed: %s", hydra_cfg.job.num, error)
        else:
            log.exception("trial %s failed", hydra_cfg.job.num)
        mark_trial(cfg, hydra_cfg.job.num, "FAILED", f"{type(error).__name__}: {error}")
        return math.nan


def mark_trial(cfg: DictConfig, job: int, status: str, reason: str) -> None:
    """Make sure the trial's run exists, has `status` and says why (a trial may fail before
    its run is created, e.g. on a bad config value)."""
    parent_id = os.environ.get(PARENT_ENV)
    if not parent_id or not cfg.tracking.enabled:
        return
    from mlflow import MlflowClient

    from mlpflow.tracking.store import tracking_uri

    client = MlflowClient(tracking_uri(cfg))
    parent = client.get_run(parent_id)
    found = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and tags.`sweep.job` = '{job}'",
    )
    if found:
        run_id = found[0].info.run_id
    else:
        run_id = client.create_run(
            parent.info.experiment_id, run_name=f"trial-j{job}", tags=trial_tags()
        ).info.run_id
    client.set_tag(run_id, "trial.end", reason[:5000])
    client.set_terminated(run_id, status)


def objective_name(cfg: DictConfig) -> str:
    """The metric a trial reports: the best value of the checkpoint monitor, e.g. val/best_loss."""
    split, name = str(cfg.monitor.metric).split("/", 1)
    return f"{split}/best_{name}"


def trial_tags() -> dict[str, str]:
    """Tags that nest a trial's run under its sweep's parent run."""
    tags = {}
    if os.environ.get(PARENT_ENV):
        tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
    if os.environ.get(SWEEP_ENV):
        tags["sweep.id"] = os.environ[SWEEP_ENV]
    if os.environ.get(JOB_ENV):
        tags["sweep.job"] = os.environ[JOB_ENV]
        tags["sweep.overrides"] = os.environ.get(OVERRIDES_ENV, "")
    return tags


class SweepRunCallback(Callback):
    def __init__(self, max_failure_rate: float = 0.0) -> None:
        self.max_failure_rate = max_failure_rate
        self.client: Any = None
        self.parent_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        from mlflow import MlflowClient

        from mlpflow.tracking.store import ensure_store, tracking_uri

        uri = tracking_uri(config)
        experiment_id = ensure_store(uri, config.tracking.experiment)
        self.client = MlflowClient(uri)
        sweep_id = Path(config.hydra.sweep.dir).name.replace("-", "") or time.strftime("%H%M%S")
        sweeper = config.hydra.sweeper._target_.rsplit(".", 1)[-1]
        run = self.client.create_run(
            experiment_id,
            run_name=f"sweep-{Path(config.hydra.sweep.dir).parent.name}-{sweep_id}",
            tags={
                "sweep.id": sweep_id,
                "sweep.sweeper": sweeper,
                "sweep.dir": str(Path(config.hydra.sweep.dir).resolve()),
            },
        )
        self.parent_id = run.info.run_id
        os.environ[PARENT_ENV] = self.parent_id
        os.environ[SWEEP_ENV] = sweep_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_id is None:
            return
        trials = summarize(
            self.client, self.parent_id, objective_name(config), str(config.monitor.mode)
        )
        failed = sum(t["status"] == "FAILED" for t in trials)  # pruned trials end KILLED
        rate = failed / len(trials) if trials else 1.0
        status = "FAILED" if rate > self.max_failure_rate else "FINISHED"
        self.client.log_metric(self.parent_id, "sweep/failed_trials", failed)
        self.client.set_terminated(self.parent_id, status)
        os.environ.pop(PARENT_ENV, None)
        if status == "FAILED":
            # Hydra turns exceptions raised in callbacks into warnings: exit here instead.
            with friendly_errors():
                raise SweepFailed(
                    f"{failed} of {len(trials)} trials failed (max_failure_rate="
                    f"{self.max_failure_rate}); see the FAILED child runs of sweep run "
                    f"{self.parent_id}"
                )


def summarize(client: Any, parent_id: str, metric: str, mode: str) -> list[dict[str, Any]]:
    """Log the trials table, the best trial and the optimization history on the parent run."""
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=10000,
        order_by=["attributes.start_time ASC"],
    )
    trials = [
        {
            "job": int(run.data.tags.get("sweep.job", -1)),
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            metric: run.data.metrics.get(metric, math.nan),
            **{f"override.{k}": v for k, v in _overrides(run).items()},
        }
        for run in runs
    ]
    trials.sort(key=lambda t: t["job"])
    if not trials:
        return trials
    import pandas as pd

    table = pd.DataFrame(trials)
    client.log_table(parent_id, table, "trials.json")
    finished = [t for t in trials if t["status"] == "FINISHED" and math.isfinite(t[metric])]
    if finished:
        pick = min if mode == "min" else max
        best = pick(finished, key=lambda t: t[metric])
        best_run = client.get_run(best["run_id"])
        client.log_metric(parent_id, metric, best[metric])
        client.set_tag(parent_id, "best.run_id", best["run_id"])
        client.set_tag(parent_id, "best.run_name", best["run_name"])
        for key, value in best_run.data.params.items():
            client.log_param(parent_id, key, value)
    client.log_figure(parent_id, _history_figure(trials, metric, mode), "optimization_history.png")
    return trials


def _overrides(run: Any) -> dict[str, str]:
    raw = run.data.tags.get("sweep.overrides", "")
    return dict(item.split("=", 1) for item in raw.split(" ") if "=" in item)


def _history_figure(trials: list[dict[str, Any]], metric: str, mode: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.array([t[metric] for t in trials], dtype=float)
    running = (np.fmin if mode == "min" else np.fmax).accumulate(values)
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.scatter(range(len(values)), values, label="trial")
    axis.step(range(len(values)), running, where="post", color="tab:red", label="best so far")
    axis.set(xlabel="trial (job number)", ylabel=metric, title="Optimization history")
    axis.legend()
    plt.close(figure)
    return figure
