"""A real `mlflow server` (SQLite store, proxied artifacts) on loopback: train against it, then
register, predict and compare through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from mlpflow.cli import main
from mlpflow.tracking.store import use_tracking_uri

from conftest import make_cfg
from mlflow_helpers import free_port, raw_rows, serving, train_and_evaluate

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    command = [
        *("mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"),
        *("--artifacts-destination", str(tmp_path / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1"),
    ]
    log = tmp_path / "server.log"
    with serving(command, log, timeout=60, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false") as url:
        yield url


def test_a_training_run_against_a_server_is_complete(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    cfg = make_cfg(tmp_path / "run", "trainer.max_epochs=3")
    cfg.tracking.uri = None  # from MLFLOW_TRACKING_URI, as a user would point at a server
    # Lightning's MLFlowLogger points MLflow's global URI at the server: restore it afterwards,
    # or later tests in this process would retry the stopped server for minutes.
    with use_tracking_uri(server):
        run_id = train_and_evaluate(cfg)

    client = MlflowClient(server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # stored by the server
    assert run.data.params["optimizer.lr"] == "0.001"
    assert {"train/loss", "val/roc_auc", "test/roc_auc", "test/f1"} <= set(run.data.metrics)
    assert run.data.tags["data.fingerprint"]
    listed = {
        a.path
        for d in ("figures", "checkpoints", "config")
        for a in client.list_artifacts(run_id, d)
    }
    assert {"figures/roc.png", "checkpoints/best.ckpt", "config/config.yaml"} <= listed
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert (model.source_run_id, model.name) == (run_id, "model")
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}

    uri = ["--uri", server]
    main(["register", run_id, "--name", "served-bc", "--alias", "champion", *uri])
    rows = tmp_path / "rows.csv"
    raw_rows(Path(cfg.paths.prepared)).to_csv(rows, index=False)
    out = tmp_path / "preds.csv"
    main(
        [
            "predict",
            "--model",
            "models:/served-bc@champion",
            "--input",
            str(rows),
            "--output",
            str(out),
            *uri,
        ]
    )
    assert len(pd.read_csv(out)) == len(pd.read_csv(rows))

    main(["compare", *uri, "--output", str(tmp_path / "roc.png")])
    assert f"figure: {tmp_path / 'roc.png'}" in capsys.readouterr().out
    assert (tmp_path / "roc.png").stat().st_size > 10_000
