"""The MLflow store: where it is, reaching it fast or failing fast, creating it once."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from mlpflow.config.compose import project_root
from mlpflow.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow is imported inside the functions that call it: `mlpflow ui` imports this module to
# resolve the store and then execs `mlflow ui`, and Hydra's plugin scan imports it (through
# tracking/trials.py) at every Hydra start; MLflow's client would add 1.7-1.9 s to this module's
# 0.17 s (`python -X importtime`, benchmarks/README.md).

# MLflow 3's UI opens an experiment without this tag in its GenAI (traces) view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = (EXPERIMENT_KIND_TAG, "custom_model_development")


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
            if found.tags.get(EXPERIMENT_KIND_TAG) is None:  # made before mlpflow set it
                client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return found.experiment_id
        try:
            return client.create_experiment(
                experiment, artifact_location=artifact_root(uri), tags=dict([EXPERIMENT_KIND])
            )
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
