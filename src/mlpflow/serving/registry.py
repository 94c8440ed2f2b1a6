"""Runs, logged models and registered models in the store: find them with clear errors, register.

Registration uses aliases (`champion`, ...), not the deprecated stages. The version carries the
run's lineage tags, so the registry view alone leads back to the commit, data and config.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from mlpflow.errors import ModelError
from mlpflow.tracking.store import use_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

MODEL_NAME = "model"  # of the model train logs into its run (`export.log_model`)
RUN_ID = re.compile(r"[0-9a-f]{32}")
LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
# Run tags copied onto a registered version: (run tag, version tag).
LINEAGE_TAGS = (
    ("mlflow.source.git.commit", "git.commit"),
    ("git.dirty", "git.dirty"),
    ("data.fingerprint", "data.fingerprint"),
    ("data.dvc_md5", "data.dvc_md5"),
    ("config.hash", "config.hash"),
    ("dvc.exp_name", "dvc.exp_name"),
    ("sweep.id", "sweep.id"),
    ("sweep.job", "sweep.job"),
    ("mlpflow.version", "mlpflow.version"),
)


def _missing(error: Exception) -> bool:
    return getattr(error, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def find_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if not _missing(error):
            raise
        raise ModelError(
            f"run {run_id} not found in {client.tracking_uri}; "
            "list runs with `mlpflow compare` or pass --uri of the store that holds it"
        ) from error


def run_model_id(client: MlflowClient, run: Run) -> str:
    """The id of the model train logged into `run` (the latest one, if logged again)."""
    outputs = run.outputs.model_outputs if run.outputs else []
    for output in reversed(outputs):
        if client.get_logged_model(output.model_id).name == MODEL_NAME:
            return output.model_id
    raise ModelError(
        f"run {run.info.run_id} has no logged model (tracking was off, or training failed "
        "before the model was logged); retrain, or predict from its checkpoint"
    )


def model_uri(client: MlflowClient, reference: str) -> str:
    """An MLflow model URI for a run id, `runs:/...` or `models:/...`, after checking it exists."""
    if RUN_ID.fullmatch(reference):
        return f"models:/{run_model_id(client, find_run(client, reference))}"
    if reference.startswith("runs:/"):
        run_id = reference.removeprefix("runs:/").split("/", 1)[0]
        find_run(client, run_id)
        return reference
    if reference.startswith("models:/"):
        _check_registered(client, reference.removeprefix("models:/"))
        return reference
    raise ModelError(
        f"cannot resolve model {reference!r}: use models:/NAME@ALIAS, models:/NAME/VERSION, "
        "a run id, or the path of a checkpoint (.ckpt) or saved model directory"
    )


def _check_registered(client: MlflowClient, target: str) -> None:
    """models:/NAME@ALIAS, models:/NAME/VERSION or models:/m-<logged model id> exists."""
    try:
        if LOGGED_MODEL_ID.fullmatch(target):
            client.get_logged_model(target)
            return
        name, alias = target.split("@", 1) if "@" in target else (target, None)
        name, _, version = name.partition("/")
        registered = _registered_model(client, name)
        if alias is not None and alias not in registered.aliases:
            known = ", ".join(f"{a} (v{v})" for a, v in registered.aliases.items()) or "none"
            raise ModelError(
                f"registered model {name!r} has no alias {alias!r} (aliases: {known}); set it "
                f"with `mlpflow register RUN_ID --name {name} --alias {alias}`"
            )
        if version:
            client.get_model_version(name, version)
    except MlflowException as error:
        if not _missing(error):
            raise
        raise ModelError(f"model not found: models:/{target} ({error.message})") from error


def _registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if not _missing(error):
            raise
        names = [m.name for m in client.search_registered_models(max_results=20)]
        raise ModelError(
            f"no registered model {name!r} in {client.tracking_uri} "
            f"(registered: {', '.join(names) or 'none'}); register one with "
            f"`mlpflow register RUN_ID --name {name} --alias champion`"
        ) from error


def register(client: MlflowClient, run_id: str, name: str, alias: str | None) -> ModelVersion:
    """A new version of `name` from the run's logged model, tagged with its lineage."""
    run = find_run(client, run_id)
    model_id = run_model_id(client, run)
    tags = {new: run.data.tags[old] for old, new in LINEAGE_TAGS if old in run.data.tags}
    # MLflow's registry store looks the logged model up through the global tracking URI, which
    # need not be the client's (Lightning's MLFlowLogger sets it to its own, for one).
    with use_tracking_uri(client.tracking_uri):
        try:
            _ensure_registered_model(client, name)
            version = client.create_model_version(
                name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
            )
            if alias:
                client.set_registered_model_alias(name, alias, version.version)
        except MlflowException as error:
            message = error.message.splitlines()[0]
            raise ModelError(f"cannot register {name!r}: {message}") from error
    return version


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
