"""The MLflow run of a cross-validation: the parent of its fold runs, created before the first
fold trains (or continued, when an interrupted CV resumes), holding the summary when the last
fold ends. In a sweep it is the trial's run (a child of the sweep's run), so the experiment
table compares trials by their CV objective; the fold runs nest under it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mlpflow.errors import TrackingError, first_line
from mlpflow.files import read_json
from mlpflow.notice import warn
from mlpflow.tracking.guard import StoreGuard
from mlpflow.tracking.lineage import lineage_tags, run_name, run_params
from mlpflow.tracking.owner import OWNER_TAG, this_process
from mlpflow.tracking.results import log_results
from mlpflow.tracking.store import ensure_store, tracking_uri
from mlpflow.tracking.trials import trial_tags

PARAMS_PER_CALL = 100  # MLflow's log_batch limit


class CVRun:
    """A cross-validation's run, through a store guard: a store lost mid-CV leaves the DVC
    outputs complete and says which run is incomplete."""

    def __init__(self, uri: str, run_id: str, experiment_id: str) -> None:
        self.uri, self.run_id, self.experiment_id = uri, run_id, experiment_id
        self.client = MlflowClient(uri)
        self.safely = StoreGuard(uri, lambda: self.run_id, "cross-validation")

    @classmethod
    def start(cls, cfg: DictConfig, meta: Any, folds: Any, run_id: str | None) -> CVRun | None:
        """The CV run: `run_id` continued (an interrupted CV), or a new one with the config's
        params and lineage; None when tracking is off, or optional and unreachable."""
        if not cfg.tracking.enabled:
            return None
        uri = tracking_uri(cfg)
        try:
            experiment_id = ensure_store(uri, cfg.tracking.experiment)
        except TrackingError as error:
            if cfg.tracking.required:
                raise
            warn(f"{error}; cross-validating without tracking: this run is NOT in MLflow")
            return None
        client = MlflowClient(uri)
        if run_id is not None and client.get_run(run_id).info.lifecycle_stage == "active":
            run = client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, OWNER_TAG, this_process())
            client.set_tag(run_id, "run.resumes", int(run.data.tags.get("run.resumes", 0)) + 1)
            return cls(uri, run_id, experiment_id)
        tags = {
            **lineage_tags(cfg, meta.task, meta.fingerprint),
            **trial_tags(),
            OWNER_TAG: this_process(),
            "cv.folds": str(folds.folds),
            "cv.repeats": str(folds.repeats),
        }
        name = f"{run_name(cfg)}-cv{folds.folds}" + (
            f"-j{tags['sweep.job']}" if "sweep.job" in tags else ""
        )
        created = client.create_run(experiment_id, run_name=name, tags=tags)
        tracked = cls(uri, created.info.run_id, experiment_id)
        params = [(key, str(value)) for key, value in run_params(cfg).items()]
        for start in range(0, len(params), PARAMS_PER_CALL):
            batch = [_param(key, value) for key, value in params[start : start + PARAMS_PER_CALL]]
            tracked.safely(client.log_batch, tracked.run_id, params=batch)
        config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        tracked.safely(client.log_text, tracked.run_id, config_yaml, "config/config.yaml")
        return tracked

    def log_fold(self, fold_cfg: DictConfig, heldout: Any) -> None:
        """The fold's held-out metrics into the fold's run, linked to its model."""
        report = read_json(Path(fold_cfg.paths.reports) / "train.json")
        if report.get("run_id"):
            log_results(self.uri, report["run_id"], heldout.metrics, {}, report.get("model_id"))

    def finish(
        self, summary: dict[str, float], oof: pd.DataFrame, files: list[Path], model_id: str | None
    ) -> dict[str, Any]:
        """Log the summary metrics, the out-of-fold predictions and `files` (figures); end the
        run FINISHED; return train.json's tracking fields."""
        client, run_id = self.client, self.run_id
        self.safely(log_results, self.uri, run_id, summary, {"figures": files}, model_id)
        with tempfile.TemporaryDirectory(prefix="mlpflow-cv-") as tmp:
            path = Path(tmp) / "predictions.csv"
            oof.to_csv(path, index=False)
            self.safely(client.log_artifact, run_id, str(path), "oof")
        self.safely(client.set_terminated, run_id, "FINISHED")
        run = self.safely(client.get_run, run_id)
        if self.safely.lost:
            lost = self.safely.lost
            warn(f"MLflow run {run_id} is incomplete ({lost}); the DVC outputs are complete")
        return {
            "run_id": run_id,
            "run_name": run.info.run_name if run else None,
            "model_id": model_id,
            "tracking": f"incomplete: {self.safely.lost}" if self.safely.lost else "complete",
            "experiment_id": self.experiment_id,
            "tracking_uri": self.uri,
        }

    def stopped(self, error: BaseException) -> None:
        """A fold was interrupted (KILLED: the same command resumes) or failed (FAILED)."""
        from mlpflow.errors import RunInterrupted

        resumable = isinstance(error, (RunInterrupted, KeyboardInterrupt, SystemExit))
        reason = f"{type(error).__name__}: {first_line(error, '')}"
        if resumable:
            reason += "; run the same command again to resume"
        self.safely(self.client.set_tag, self.run_id, "run.end", reason[:5000])
        self.safely(self.client.set_terminated, self.run_id, "KILLED" if resumable else "FAILED")


def _param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(key, value[:6000])
