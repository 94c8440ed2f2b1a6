"""Data-parallel training on CPU (2 processes, gloo) by config alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from mlpflow.stages import prepare

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
    for name, overrides in {
        "single": [],
        "ddp": ["trainer=ddp_cpu", "loader.batch_size=64"],
    }.items():
        cfg = make_cfg(
            tmp_path / name, "trainer.max_epochs=15", "loader.batch_size=128", *overrides
        )
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


def composed_launcher(overrides: list[str]):
    """The hydra.launcher node that `overrides` compose to (as a multirun would see it)."""
    from hydra import compose, initialize_config_dir

    from mlpflow.config.compose import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base=None):
        return compose("config", overrides, return_hydra_config=True).hydra.launcher


def test_slurm_launcher_config_composes_from_the_trainer():
    launcher = composed_launcher(["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"])
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)


def test_ray_cluster_launcher_config_asks_for_the_trainer_devices():
    launcher = composed_launcher(["hydra/launcher=ray_cluster", "trainer=gpu", "trainer.devices=2"])
    assert launcher._target_.endswith("RayLauncher")
    assert launcher.ray.init.address == "auto"
    assert launcher.ray.remote.num_gpus == 2


def sweep(project: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m mlpflow.train -m` over two learning rates, as a user runs it in `project`."""
    return subprocess.run(
        [
            *("python", "-m", "mlpflow.train", "-m", *overrides),
            *("optimizer.lr=1e-3,1e-2", "trainer.max_epochs=2", "callbacks.progress_bar=null"),
        ],
        cwd=project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_two_finished_trials(project: Path) -> None:
    """One parent run, one FINISHED and evaluated child per learning rate: no trial run twice."""
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3
    assert sorted(r.data.params["optimizer.lr"] for r in children) == ["0.001", "0.01"]
    assert all(r.info.status == "FINISHED" and "test/roc_auc" in r.data.metrics for r in children)


@pytest.mark.parametrize(
    "launcher",
    [
        # submitit's local executor stands in for SLURM (no cluster here): same launcher code
        "hydra/launcher=submitit_local",
        # Hydra's Ray launcher on a local Ray instance, as on a cluster but with address=null
        "hydra/launcher=ray",
    ],
)
def test_cluster_launcher_runs_a_two_trial_sweep(launcher: str, tmp_path: Path):
    from conftest import copy_project

    project = copy_project(tmp_path / "project")
    extra = ["+hydra.launcher.ray.init.include_dashboard=false"] if launcher.endswith("ray") else []
    done = sweep(project, launcher, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_two_finished_trials(project)


def test_ddp_in_a_multirun_runs_each_trial_once(tmp_path: Path):
    """Plain ddp re-executes the command line in its workers, i.e. the whole sweep (Hydra #2070);
    in a multirun mlpflow trains with ddp_spawn instead."""
    from conftest import copy_project

    project = copy_project(tmp_path / "project")
    done = sweep(project, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "using ddp_spawn" in done.stdout + done.stderr
    assert_two_finished_trials(project)
    jobs = [p for p in (project / "multirun").glob("*/*/*") if (p / ".hydra").is_dir()]
    assert len(jobs) == 2
