"""MLflow: where the store is, creating it once, naming runs, and the logger training uses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlpflow import __version__
from mlpflow.config import project_root
from mlpflow.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlpflow.logger import TrackingLogger


def tracking_uri(cfg: DictConfig) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else an absolute sqlite URI at the project root."""
    return resolve_uri(cfg.tracking.get("uri"))


def resolve_uri(uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else an absolute sqlite URI at the project root."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{project_root() / 'mlflow.db'}"


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global (fluent) tracking URI at `uri` for the block only.

    Model logging, registration and `models:/` URIs read the global URI. `mlflow.set_tracking_uri`
    also writes $MLFLOW_TRACKING_URI, which `resolve_uri` reads: both are restored afterwards.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


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


def open_store(uri: str) -> MlflowClient:
    """A client on an existing store: an unreachable server or a missing SQLite file fails fast.

    For commands that read runs (predict, register, compare): MlflowClient would otherwise
    create an empty SQLite store, or retry a dead server for minutes.
    """
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise TrackingError(
            f"no MLflow store at {uri}: train a model first, or pass --uri / set "
            "MLFLOW_TRACKING_URI to the store that holds your runs"
        )
    from mlflow import MlflowClient

    return MlflowClient(uri)


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
            return client.create_experiment(experiment, artifact_location=artifact_root(uri))
        except MlflowException:  # created meanwhile by a parallel process
            return client.get_experiment_by_name(experiment).experiment_id
    except MlflowException as error:
        message = error.message.splitlines()[0]
        raise TrackingError(f"MLflow store {uri} cannot be used: {message}") from error


def artifact_root(uri: str) -> str | None:
    """`mlruns/` next to a SQLite store; None (the server decides) otherwise.

    MLflow's default for a SQLite store is ./mlruns of whatever directory first creates the
    experiment: a test's cwd, or a queued `dvc exp run` copy that is deleted afterwards.
    """
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


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
        # Dirty: tracked files changed, or new (not ignored) files where the code and config live.
        changed = _git("status", "--porcelain", "--untracked-files=no")
        new_code = _git("ls-files", "--others", "--exclude-standard", "--", "src", "conf")
        tags["git.dirty"] = str(bool(changed or new_code))
    dvc_md5 = dvc_output_md5(Path(cfg.paths.prepared))
    if dvc_md5:
        tags["data.dvc_md5"] = dvc_md5
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def dvc_output_md5(path: Path, lock: Path = Path("dvc.lock")) -> str | None:
    """The md5 that dvc.lock records for the output at `path`, if it matches the files there now.

    DVC runs a stage in the directory of dvc.yaml, where dvc.lock lives. The hash is re-derived
    from the files as DVC 3 does it (md5 of the sorted JSON list of file md5s, plus ".dir"), so a
    stale lock (data prepared again outside DVC) never tags a run with another data version.
    """
    import yaml

    try:
        stages = yaml.safe_load(lock.read_text())["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    target = path.resolve()
    for stage in stages.values():
        for out in stage.get("outs", []):
            if (lock.parent / out["path"]).resolve() == target:
                recorded = out.get("md5")
                return recorded if recorded and recorded == _dvc_md5(target) else None
    return None


def _dvc_md5(path: Path) -> str | None:
    if path.is_file():
        return _file_md5(path)
    if not path.is_dir():
        return None
    entries = sorted(
        (
            {"md5": _file_md5(f), "relpath": f.relative_to(path).as_posix()}
            for f in path.rglob("*")
            if f.is_file()
        ),
        key=lambda entry: entry["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_logger(
    cfg: DictConfig,
    uri: str,
    *,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    name: str | None = None,
) -> TrackingLogger:
    from mlpflow.logger import TrackingLogger

    return TrackingLogger(
        experiment_name=cfg.tracking.experiment,
        run_name=None if run_id else name or run_name(cfg),
        tracking_uri=uri,
        tags=tags,
        run_id=run_id,
        log_model=False,  # the best checkpoint is logged once, by train, under checkpoints/
    )
