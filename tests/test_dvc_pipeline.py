"""`dvc repro` and `dvc exp run` on a real git copy of the project, tracked in its own store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from conftest import copy_project, sh

pytestmark = pytest.mark.slow


def ran(output: str) -> set[str]:
    return {
        stage for stage in ("prepare", "train", "evaluate") if f"Running stage '{stage}'" in output
    }


def test_dvc_repro_then_noop_then_exp_run(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    out = sh("dvc", "repro", cwd=project)
    assert ran(out) == {"prepare", "train", "evaluate"}
    assert "INFO mlflow" not in out and "Downloading artifacts" not in out  # mlpflow's lines only

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["test"]["roc_auc"] > 0.9
    for plot in ("roc", "precision_recall", "confusion", "calibration"):
        assert (project / "reports" / "plots" / f"{plot}.json").exists()
    assert (project / "models" / "best.ckpt").exists()
    train_report = json.loads((project / "reports" / "train.json").read_text())

    # The default store: an absolute SQLite URI at the project root.
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(train_report["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["data.name"] == "breast_cancer"
    assert {"train/loss", "val/roc_auc", "test/roc_auc"} <= set(run.data.metrics)
    assert run.data.metrics["test/roc_auc"] == pytest.approx(metrics["test"]["roc_auc"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "checkpoints",
        "plots",
        "figures",
        "config",
    }

    shown = sh("dvc", "plots", "show", "--json", cwd=project)
    assert "reports/plots/roc.json" in shown

    assert ran(sh("dvc", "repro", cwd=project)) == set()  # nothing changed, nothing runs

    out = sh("dvc", "exp", "run", "-S", "optimizer.lr=0.01", cwd=project)
    assert ran(out) == {"train", "evaluate"}
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["optimizer"]["lr"] == 0.01
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 2
    assert {r.data.params["optimizer.lr"] for r in runs} == {"0.001", "0.01"}


def test_hydra_entry_point_in_a_fresh_clone_prepares_what_it_needs(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    out = sh(
        "python",
        "-m",
        "mlpflow.train",
        "model.hidden_dims=[64,32]",
        "loss=mse",
        "regularization=l1",
        "optimizer=sgd",
        "trainer.max_epochs=3",
        cwd=project,
    )
    assert "hidden_dims" in out and "regularization" in out  # the config tree was printed
    assert "INFO" not in out and "Downloading artifacts" not in out  # MLflow stays quiet
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    assert run.info.run_name.startswith("mlp64x32-relu-mse-l1-sgd-")
    assert "test/roc_auc" in run.data.metrics
    # It ends as `dvc repro` + `mlpflow report` do: this run's test metrics and its UI link.
    roc_auc = [line for line in out.splitlines() if "roc_auc" in line]
    assert roc_auc and f"{run.data.metrics['test/roc_auc']:.4f}" in roc_auc[-1], out[-2000:]
    link = f"/runs/{run.info.run_id}?workflowType=machine_learning"
    assert any(link in line and "http://" in line for line in out.splitlines())
    assert list((project / "data" / "cache").iterdir())  # prepared into the cache, not data/
    assert not (project / "data" / "prepared").exists()


def test_a_second_clone_pulls_from_the_dvc_remote_instead_of_re_running(tmp_path: Path) -> None:
    """A local-directory remote stands in for S3 (same `dvc push`/`dvc pull`, no network)."""
    project = copy_project(tmp_path / "project")
    sh("dvc", "repro", cwd=project)
    sh("dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote"), cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run", cwd=project)
    sh("dvc", "push", cwd=project)

    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    sh("dvc", "pull", cwd=clone)
    assert (clone / "data" / "prepared" / "meta.json").exists()
    assert (clone / "models" / "best.ckpt").read_bytes() == (
        project / "models" / "best.ckpt"
    ).read_bytes()
    assert ran(sh("dvc", "repro", cwd=clone)) == set()  # reproduced from the remote, not re-run
