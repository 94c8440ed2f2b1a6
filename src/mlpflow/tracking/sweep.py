"""MLflow bookkeeping of a Hydra multirun: one parent run, a nested child run per trial.

`SweepRunCallback` (a Hydra callback, enabled in conf/config.yaml) creates the parent run before
any trial starts — which also creates and migrates the store once, serially — and hands its id
to the trials through the environment (inherited by joblib's worker processes). When the sweep
ends it records the best trial, a table of all trials and an optimization-history figure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mlpflow.config.schema import AUTO
from mlpflow.drawing import DPI, plt
from mlpflow.errors import MlpflowError, friendly_errors
from mlpflow.tracking.owner import OWNER_TAG, is_alive, this_process
from mlpflow.tracking.stale import mark_killed, running_runs
from mlpflow.tracking.store import ensure_store, tracking_uri
from mlpflow.tracking.trials import PARENT_ENV, SWEEP_ENV, objective_name

SWEEP_KEY_TAG = "sweep.key"
PARAMS_PER_BATCH = 100  # the most params MLflow takes in one log_batch
MONITOR_PARAM = "monitor.metric"  # a trial's run param: the val metric it monitored

log = logging.getLogger(__name__)


class SweepFailed(MlpflowError):
    """More trials failed than the sweep allows."""


class SweepRunCallback(Callback):
    def __init__(self, max_failure_rate: float = 0.0) -> None:
        self.max_failure_rate = max_failure_rate
        self.client: Any = None
        self.parent_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        from mlflow import MlflowClient  # here: Hydra builds this callback for every run

        uri = tracking_uri(config)
        experiment_id = ensure_store(uri, config.tracking.experiment)
        self.client = MlflowClient(uri)
        key = sweep_key(config)
        run = interrupted_sweep(self.client, experiment_id, key)
        if run is not None:
            log.info("continuing sweep run %s: finished trials are not run again", run.info.run_id)
            self.client.update_run(run.info.run_id, status="RUNNING")
            self.client.set_tag(run.info.run_id, OWNER_TAG, this_process())
            # Trials killed with the sweep: KILLED, until the trial of the same config resumes
            # each (an Optuna study asks for new ones instead; those stay KILLED).
            mark_killed(self.client, running_runs(self.client, run.info.run_id))
        else:
            run = self._new_parent(config, experiment_id, key)
        self.parent_id = run.info.run_id
        os.environ[PARENT_ENV] = self.parent_id
        os.environ[SWEEP_ENV] = run.data.tags["sweep.id"]

    def _new_parent(self, config: DictConfig, experiment_id: str, key: str) -> Any:
        sweep_id = Path(config.hydra.sweep.dir).name.replace("-", "") or time.strftime("%H%M%S")
        sweeper = config.hydra.sweeper._target_.rsplit(".", 1)[-1]
        return self.client.create_run(
            experiment_id,
            run_name=f"sweep-{Path(config.hydra.sweep.dir).parent.name}-{sweep_id}",
            tags={
                "sweep.id": sweep_id,
                "sweep.sweeper": sweeper,
                "sweep.dir": str(Path(config.hydra.sweep.dir).resolve()),
                SWEEP_KEY_TAG: key,
                OWNER_TAG: this_process(),
            },
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_id is None:
            return
        trials = summarize(self.client, self.parent_id, config)
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


def sweep_key(config: DictConfig) -> str:
    """What identifies a sweep across restarts: its command-line overrides and sweeper config."""
    identity = {
        "overrides": list(config.hydra.overrides.task),
        "sweeper": OmegaConf.to_container(config.hydra.sweeper, resolve=False),
    }
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def interrupted_sweep(client: Any, experiment_id: str, key: str) -> Any:
    """The latest parent run of this sweep that was killed (KILLED, or RUNNING with its process
    gone); None when the sweep ended or never ran: a new one starts."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{SWEEP_KEY_TAG}` = '{key}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    for run in runs:
        owner = run.data.tags.get(OWNER_TAG)
        if run.info.status == "KILLED" or (
            run.info.status == "RUNNING" and owner and is_alive(owner) is False
        ):
            return run
    return None


def summarize(client: Any, parent_id: str, config: DictConfig) -> list[dict[str, Any]]:
    """Log the trials table, the best trial and the optimization history on the parent run.
    With monitor.metric=auto the trials name what it became (their `monitor.metric` param:
    one task, one metric), which the sweep's own config cannot know before the data."""
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=10000,
        order_by=["attributes.start_time ASC"],
    )
    monitored = None
    if config.monitor.metric == AUTO:  # "val/auto" when no trial got as far as its params
        params = (run.data.params.get(MONITOR_PARAM) for run in runs)
        monitored = next((name for name in params if name), "val/auto")
    metric, mode = objective_name(config, monitored), str(config.monitor.mode)
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
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in best_run.data.params.items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(parent_id, params=params[start : start + PARAMS_PER_BATCH])
    client.log_figure(parent_id, _history_figure(trials, metric, mode), "optimization_history.png")
    return trials


def _overrides(run: Any) -> dict[str, str]:
    raw = run.data.tags.get("sweep.overrides", "")
    return dict(item.split("=", 1) for item in raw.split(" ") if "=" in item)


def _history_figure(trials: list[dict[str, Any]], metric: str, mode: str) -> Any:
    values = np.array([t[metric] for t in trials], dtype=float)
    running = (np.fmin if mode == "min" else np.fmax).accumulate(values)
    figure, axis = plt.subplots(figsize=(6, 4), dpi=DPI)
    axis.scatter(range(len(values)), values, label="trial")
    axis.step(range(len(values)), running, where="post", color="tab:red", label="best so far")
    axis.set(xlabel="trial (job number)", ylabel=metric, title="Optimization history")
    axis.legend()
    plt.close(figure)
    return figure
