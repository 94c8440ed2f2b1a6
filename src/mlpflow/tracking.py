"""MLflow: where the store is, creating it once, naming runs, and the logger training uses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlpflow import __version__
from mlpflow.config import project_root
from mlpflow.errors import TrackingError

if TYPE_CHECKING:
    from pytorch_lightning.loggers import MLFlowLogger


def tracking_uri(cfg: DictConfig) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else an absolute sqlite URI at the project root."""
    uri = cfg.tracking.get("uri") or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{project_root() / 'mlflow.db'}"


def _check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a server does not answer."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except (urllib.error.URLError, OSError) as error:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({getattr(error, 'reason', error)}): "
            "start it, fix tracking.uri / MLFLOW_TRACKING_URI, or set tracking.required=false"
        ) from error


def ensure_store(uri: str, experiment: str) -> str:
    """Create (and migrate) the store and the experiment, once, before any run; return its id.

    Parallel first writers on a fresh SQLite store race on the schema migration, so this runs
    serially before training or a sweep starts.
    """
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(experiment)
        except MlflowException:  # created meanwhile by a parallel process
            return client.get_experiment_by_name(experiment).experiment_id
    except MlflowException as error:
        message = error.message.splitlines()[0]
        raise TrackingError(f"MLflow store {uri} cannot be used: {message}") from error


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as dotted keys, for MLflow params (lists kept as their repr)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def config_hash(cfg: DictConfig) -> str:
    """Short hash of what determines the result: everything but paths and tracking."""
    keep = {k: v for k, v in flatten(cfg).items() if not k.startswith(("paths.", "tracking."))}
    return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:6]


def run_name(cfg: DictConfig) -> str:
    """Readable and explicit: mlp128x64-relu-bce-l2-adam-1a2b3c (MLflow's random names collide)."""
    if cfg.tracking.get("run_name"):
        return str(cfg.tracking.run_name)
    dims = "x".join(str(w) for w in cfg.model.hidden_dims)
    parts = [
        f"mlp{dims}",
        cfg.model.activation,
        cfg.loss.name,
        cfg.regularization.name,
        cfg.optimizer.name,
        config_hash(cfg),
    ]
    return "-".join(str(p) for p in parts)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=project_root()
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def lineage_tags(cfg: DictConfig, meta: dict[str, Any]) -> dict[str, str]:
    """Tags that lead from a run back to its code, data and config."""
    tags = {
        "mlpflow.version": __version__,
        "data.name": str(cfg.data.name),
        "data.fingerprint": str(meta.get("fingerprint", "")),
        "task": str(meta["task"]),
        "config.hash": config_hash(cfg),
    }
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def make_logger(
    cfg: DictConfig, uri: str, *, run_id: str | None = None, tags: dict[str, str] | None = None
) -> MLFlowLogger:
    from pytorch_lightning.loggers import MLFlowLogger

    return MLFlowLogger(
        experiment_name=cfg.tracking.experiment,
        run_name=None if run_id else run_name(cfg),
        tracking_uri=uri,
        tags=tags,
        run_id=run_id,
        log_model=False,  # the best checkpoint is logged once, by train, under checkpoints/
    )


def log_files(logger: MLFlowLogger, paths: list[Path], artifact_dir: str) -> None:
    for path in paths:
        logger.experiment.log_artifact(logger.run_id, str(path), artifact_dir)
