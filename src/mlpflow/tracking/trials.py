"""One trial of a Hydra multirun: its child run's tags, its failure recorded, and a trial that a
restarted sweep finished before returned without training it again."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mlpflow.errors import MlpflowError, RunInterrupted, friendly_errors
from mlpflow.tracking.lineage import config_digest
from mlpflow.tracking.store import tracking_uri

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

# MLflow is imported inside the functions that call it: Hydra's plugin scan imports this module
# (the Optuna sweeper reads the names above) at every Hydra start, DVC's composition of conf/
# too, and `from mlflow import MlflowClient` would add 1.7-1.9 s to the scan's 0.5-0.6 s
# (`python -X importtime`, benchmarks/README.md).


def pruning_requested() -> bool:
    """Pruning needs a persistent study storage: an in-memory study lives in the sweeper only."""
    return bool(os.environ.get(STORAGE_ENV) and os.environ.get(TRIAL_ENV))


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_trial(pipeline: Callable[[DictConfig], float], cfg: DictConfig) -> float:
    """Run one trial; a failure is recorded (FAILED run, NaN objective) and the sweep goes on.

    Optuna's TrialPruned passes through: the Optuna sweeper records the trial as pruned. So
    does an interruption (SIGTERM, Ctrl-C): it stops the sweep, which the same command resumes.
    """
    hydra_cfg = HydraConfig.get()
    os.environ[JOB_ENV] = str(hydra_cfg.job.num)
    os.environ[OVERRIDES_ENV] = " ".join(hydra_cfg.overrides.task)
    try:
        return pipeline(cfg)
    except RunInterrupted as error:
        _stop_sweep(cfg, error)
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


def _stop_sweep(cfg: DictConfig, error: RunInterrupted) -> None:
    """An interrupted trial ends the sweep: its parent run KILLED, one line, exit 143 / 130
    (the same command continues the sweep)."""
    parent_id = os.environ.get(PARENT_ENV)
    if parent_id and cfg.tracking.enabled:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri(cfg)).set_terminated(parent_id, "KILLED")
    with friendly_errors():
        raise error


def mark_trial(cfg: DictConfig, job: int, status: str, reason: str) -> None:
    """Make sure the trial's run exists, has `status` and says why (a trial may fail before
    its run is created, e.g. on a bad config value)."""
    parent_id = os.environ.get(PARENT_ENV)
    if not parent_id or not cfg.tracking.enabled:
        return
    from mlflow import MlflowClient

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


def objective_name(cfg: DictConfig, monitored: str | None = None) -> str:
    """The metric a trial reports: the best value of the checkpoint monitor (`monitored`, else
    cfg's monitor.metric), e.g. val/best_loss; under cross-validation, its mean over the
    held-out folds, e.g. cv/loss_mean."""
    split, name = (monitored or str(cfg.monitor.metric)).split("/", 1)
    if cfg.get("cv") is not None and cfg.cv.name != "none":
        return f"cv/{name}_mean"
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


def finished_trial(cfg: DictConfig) -> float | None:
    """In a restarted sweep, the objective of this config's trial that finished before under
    the same parent run (trained and evaluated); None when it must run."""
    parent_id = os.environ.get(PARENT_ENV)
    if not parent_id or not cfg.tracking.enabled or not in_multirun():
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(cfg))
    found = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and tags.`config.digest` = "
        f"'{config_digest(cfg)}' and attributes.status = 'FINISHED'",
    )
    objective = objective_name(cfg)
    for run in found:
        metrics = run.data.metrics
        if objective in metrics and any(key.startswith("test/") for key in metrics):
            log.info("trial finished before as MLflow run %s: not trained again", run.info.run_id)
            return metrics[objective]
    return None
