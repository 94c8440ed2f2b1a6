"""A SIGKILLed training resumes into the same MLflow run and ends as an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf

from mlpflow.stages import prepare

from conftest import make_cfg, subprocess_env

pytestmark = pytest.mark.slow
OVERRIDES = (
    "data=synthetic",
    "data.n_samples=10000",
    "trainer.max_epochs=12",
    "model.dropout=0.2",
    "callbacks.early_stopping=null",
    "callbacks.last_checkpoint.every_seconds=0.25",  # written every few epochs: killed between
)


def train_command(tmp_path: Path, name: str) -> tuple[list[str], Path]:
    cfg = make_cfg(tmp_path / name, *OVERRIDES)
    cfg.paths.prepared = str(tmp_path / "prepared")
    cfg.tracking.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tmp_path / f"{name}.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    return ["python", "-m", "mlpflow", "stage", "train", "--params", str(params)], Path(
        cfg.paths.models
    )


def run_to_end(command: list[str]) -> None:
    done = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path: Path):
    prep = make_cfg(tmp_path / "prep", *OVERRIDES)
    prep.paths.prepared = str(tmp_path / "prepared")
    prepare.run(prep)

    whole_cmd, whole_models = train_command(tmp_path, "whole")
    run_to_end(whole_cmd)

    cmd, models = train_command(tmp_path, "killed")
    process = subprocess.Popen(
        cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = models / "last.ckpt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and torch.load(last, weights_only=True)["epoch"] >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    reports = models.parent / "reports"
    assert not (reports / "train.json").exists()  # nothing looks complete
    run_id = json.loads((models / "resume.json").read_text())["run_id"]

    run_to_end(cmd)
    report = json.loads((reports / "train.json").read_text())
    assert report["run_id"] == run_id  # the same MLflow run, continued
    whole = json.loads((whole_models.parent / "reports" / "train.json").read_text())
    assert report["best_score"] == whole["best_score"]
    assert report["global_step"] == whole["global_step"]
    for name in ("best.ckpt", "last.ckpt"):
        a = torch.load(models / name, weights_only=True)["state_dict"]
        b = torch.load(whole_models / name, weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), name

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "val/loss")]
    assert len(steps) == len(set(steps)) == 12  # every epoch once, none twice
    assert not (models / "resume.json").exists()
