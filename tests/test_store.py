"""The tracking store mlpflow creates: the experiment opens in the MLflow UI's model-training
view, and `mlpflow ui` serves it without the venv on PATH."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlpflow.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_store

from conftest import BIN
from mlflow_helpers import free_port, serving


def test_experiments_are_marked_as_model_training(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = ensure_store(uri, "fresh")
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND[1]
    older = client.create_experiment("older")  # as an earlier mlpflow made it: no kind
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(older).tags
    assert ensure_store(uri, "older") == older
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND[1]


@pytest.mark.slow
def test_ui_starts_without_the_venv_on_path(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_store(uri, "mlpflow")
    command = [str(BIN / "mlpflow"), "ui", "--uri", uri, "--port", str(free_port())]
    with serving(command, tmp_path / "ui.log", timeout=90, PATH="/usr/bin:/bin") as url:
        assert url.startswith("http://127.0.0.1:")  # /health answered
    assert "-m mlflow ui" in (tmp_path / "ui.log").read_text()
