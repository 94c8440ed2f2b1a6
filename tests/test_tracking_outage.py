"""The tracking server: unreachable at start, or lost mid-run (a real `mlflow server`)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from mlpflow.stages import prepare

from conftest import make_cfg, subprocess_env
from mlflow_helpers import free_port, serving

pytestmark = pytest.mark.slow


def server_command(tmp_path: Path, port: int) -> list[str]:
    return [
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
    ]


def params_for(tmp_path: Path, uri: str, *overrides: str) -> tuple[Path, object]:
    cfg = make_cfg(tmp_path, *overrides)
    cfg.tracking.uri = uri
    prepare.run(cfg)
    params = tmp_path / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    return params, cfg


def test_optional_tracking_trains_untracked_when_the_server_is_down(tmp_path: Path):
    uri = f"http://127.0.0.1:{free_port()}"
    params, cfg = params_for(tmp_path, uri, "trainer.max_epochs=2", "tracking.required=false")
    done = subprocess.run(
        ["python", "-m", "mlpflow", "stage", "train", "--params", str(params)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{uri} is unreachable" in done.stderr and "NOT in MLflow" in done.stderr
    report = json.loads((Path(cfg.paths.reports) / "train.json").read_text())
    assert report["run_id"] is None and report["tracking"] == "off"


def test_server_lost_mid_run_training_finishes_and_names_the_incomplete_run(tmp_path: Path):
    port = free_port()
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with serving(server_command(tmp_path, port), tmp_path / "server.log", **env) as url:
        params, cfg = params_for(
            tmp_path,
            url,
            "data=synthetic",
            "data.n_samples=20000",
            "trainer.max_epochs=15",
            "callbacks.early_stopping=null",
        )
        train = subprocess.Popen(
            ["python", "-m", "mlpflow", "stage", "train", "--params", str(params)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        client = MlflowClient(url)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # until the run has logged a few epochs
            assert train.poll() is None, train.communicate()[1][-3000:]
            experiment = client.get_experiment_by_name("mlpflow")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and len(client.get_metric_history(runs[0].info.run_id, "val/loss")) >= 2:
                break
            time.sleep(0.5)
        run_id = runs[0].info.run_id
    # the server is stopped here, mid-run
    _, stderr = train.communicate(timeout=600)
    assert train.returncode == 0, stderr[-3000:]
    report = json.loads((Path(cfg.paths.reports) / "train.json").read_text())
    assert report["run_id"] == run_id
    assert report["tracking"].startswith("incomplete")
    assert report["epochs_run"] == 15, stderr[-3000:]
    assert (Path(cfg.paths.models) / "best.ckpt").exists()
    assert f"MLflow run {run_id} is incomplete" in stderr
    assert "Traceback" not in stderr
