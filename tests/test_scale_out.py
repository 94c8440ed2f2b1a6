"""Data-parallel training on CPU (2 processes, gloo) by config alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from mlpflow import prepare

from conftest import make_cfg, subprocess_env

pytestmark = pytest.mark.slow


def stage(name: str, cfg, tmp_path: Path) -> None:
    params = tmp_path / f"{Path(cfg.paths.models).parent.name}.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    done = subprocess.run(
        ["python", "-m", "mlpflow", "stage", name, "--params", str(params)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_ddp_cpu_logs_one_run_from_rank_zero_and_matches_single_process(tmp_path: Path):
    results = {}
    for name, overrides in {"single": [], "ddp": ["trainer=ddp_cpu", "data.batch_size=64"]}.items():
        cfg = make_cfg(tmp_path / name, "trainer.max_epochs=15", "data.batch_size=128", *overrides)
        cfg.paths.prepared = str(tmp_path / "prepared")
        cfg.tracking.uri = f"sqlite:///{tmp_path / name / 'mlflow.db'}"
        if name == "single":
            prepare.run(cfg)
        stage("train", cfg, tmp_path)
        stage("evaluate", cfg, tmp_path)
        reports = Path(cfg.paths.reports)
        results[name] = (
            json.loads((reports / "train.json").read_text()),
            json.loads((reports / "metrics.json").read_text())["test"],
            cfg,
        )

    report, metrics, cfg = results["ddp"]
    client = MlflowClient(cfg.tracking.uri)
    (run,) = client.search_runs([report["experiment_id"]])  # one run, not one per process
    assert run.info.run_id == report["run_id"]
    assert run.data.params["trainer.strategy"] == "ddp_spawn"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert len(steps) == len(set(steps)) == report["epochs_run"]
    # 2 processes x batch 64 = the single process's global batch 128: the same number of steps
    assert report["global_step"] == results["single"][0]["global_step"]
    assert metrics["roc_auc"] >= 0.97
    assert abs(metrics["roc_auc"] - results["single"][1]["roc_auc"]) < 0.02


def test_slurm_launcher_config_composes_from_the_trainer():
    from hydra import compose, initialize_config_dir

    from mlpflow.config import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose(
            "config",
            ["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)


def test_submitit_local_runs_a_two_trial_sweep(tmp_path: Path):
    """submitit's local executor stands in for SLURM (no cluster here): same launcher code path."""
    from conftest import copy_project

    project = copy_project(tmp_path / "project")
    done = subprocess.run(
        [
            "python",
            "-m",
            "mlpflow.train",
            "-m",
            "hydra/launcher=submitit_local",
            "optimizer.lr=1e-3,1e-2",
            "trainer.max_epochs=2",
            "callbacks.progress_bar=null",
        ],
        cwd=project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["optimizer.lr"] for r in children) == ["0.001", "0.01"]
    assert all(r.info.status == "FINISHED" and "test/roc_auc" in r.data.metrics for r in children)
