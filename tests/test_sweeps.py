"""Hydra multiruns (grid, joblib, Optuna) and queued DVC experiments, tracked in MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from conftest import copy_project, sh, subprocess_env

pytestmark = pytest.mark.slow
QUIET = ("callbacks.progress_bar=null", "trainer.max_epochs=3")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("sweeps") / "project")


def runs_of(project: Path, store: str = "mlflow.db"):
    client = MlflowClient(f"sqlite:///{project / store}")
    experiment = client.get_experiment_by_name("mlpflow")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def fresh_store(project: Path, name: str) -> dict[str, str]:
    """Point the sweep at a new, empty SQLite store (the race happens on fresh stores)."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{project / name}"}


def sweep(project: Path, *overrides: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python", "-m", "mlpflow.train", "-m", *QUIET, *overrides],
        cwd=project,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_joblib_grid_on_a_fresh_store_nests_every_trial_under_one_parent(project: Path):
    result = sweep(
        project,
        "regularization=none,l2",
        "optimizer.lr=1e-3,1e-2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        env=fresh_store(project, "grid4.db"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, parents, children = runs_of(project, "grid4.db")
    (parent,) = parents
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert {"train/loss", "val/roc_auc", "val/best_loss", "test/roc_auc"} <= set(
            child.data.metrics
        )
    names = [c.info.run_name for c in children]
    assert len(set(names)) == 4 and all("-j" in n for n in names)

    best = min(children, key=lambda c: c.data.metrics["val/best_loss"])
    assert parent.data.tags["best.run_id"] == best.info.run_id
    assert parent.data.metrics["val/best_loss"] == best.data.metrics["val/best_loss"]
    assert parent.data.params["optimizer.lr"] == best.data.params["optimizer.lr"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.json", "optimization_history.png"} <= artifacts


def test_a_sweep_monitoring_auto_reports_the_metric_its_trials_resolved(project: Path):
    """The sweep's config says monitor.metric=auto; its trials, having seen the data, monitor
    val/roc_auc, and the parent names and picks the best trial by that."""
    result = sweep(
        project,
        "monitor.metric=auto",
        "monitor.mode=max",
        "optimizer.lr=1e-4,1e-2",
        env=fresh_store(project, "auto.db"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, (parent,), children = runs_of(project, "auto.db")
    assert {c.data.params["monitor.metric"] for c in children} == {"val/roc_auc"}
    best = max(children, key=lambda c: c.data.metrics["val/best_roc_auc"])
    assert parent.data.tags["best.run_id"] == best.info.run_id
    assert parent.data.metrics["val/best_roc_auc"] == best.data.metrics["val/best_roc_auc"]


def test_eight_parallel_trials_lose_nothing(project: Path):
    result = sweep(
        project,
        "optimizer.lr=1e-3,3e-3,1e-2,3e-2",
        "model.activation=relu,tanh",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        env=fresh_store(project, "grid8.db"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, parents, children = runs_of(project, "grid8.db")
    assert len(parents) == 1
    assert sorted(int(c.data.tags["sweep.job"]) for c in children) == list(range(8))
    assert all(c.info.status == "FINISHED" and "test/roc_auc" in c.data.metrics for c in children)


def test_a_diverging_trial_is_failed_and_the_sweep_completes(project: Path):
    result = sweep(project, "optimizer.lr=1e-3,1e30", env=fresh_store(project, "fail.db"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trial 1 failed: train/loss became nan" in result.stdout + result.stderr
    client, (parent,), children = runs_of(project, "fail.db")
    status = {c.data.params["optimizer.lr"]: c.info.status for c in children}
    assert status == {"0.001": "FINISHED", "1e+30": "FAILED"}
    assert parent.data.metrics["sweep/failed_trials"] == 1
    table = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "trials.json")).read_text()
    )
    assert sorted(table["data"][i][table["columns"].index("status")] for i in range(2)) == [
        "FAILED",
        "FINISHED",
    ]


def test_too_many_failures_fail_the_sweep(project: Path):
    result = sweep(project, "optimizer.lr=1e29,1e30", env=fresh_store(project, "fail2.db"))
    assert result.returncode != 0
    assert "2 of 2 trials failed (max_failure_rate=0.5)" in result.stdout + result.stderr
    _, (parent,), _ = runs_of(project, "fail2.db")
    assert parent.info.status == "FAILED"


def finished_trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return []
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return loaded.get_trials(states=states)


def test_optuna_search_interrupted_and_restarted_ends_with_all_trials(project: Path):
    storage = f"sqlite:///{project / 'optuna.db'}"
    command = [
        "python",
        "-m",
        "mlpflow.train",
        "-m",
        "hparams_search=optuna",
        *QUIET,
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.study_name=resume",
    ]
    env = subprocess_env(**fresh_store(project, "optuna_runs.db"))
    first = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while len(finished_trials(storage, "resume")) < 3 and time.monotonic() < deadline:
        assert first.poll() is None, "the search ended before it was interrupted"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: t.params for t in finished_trials(storage, "resume")}
    assert 3 <= len(before) < 6

    second = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumes with" in second.stdout + second.stderr
    after = {t.number: t.params for t in finished_trials(storage, "resume")}
    assert len(after) == 6
    assert all(after[n] == params for n, params in before.items())  # not redone


def test_queued_dvc_experiments_log_into_the_project_store(project: Path):
    sh("dvc", "exp", "run", "--queue", "-S", "optimizer.lr=0.002,0.02", cwd=project)
    sh("dvc", "queue", "start", "-j", "1", cwd=project)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        status = sh("dvc", "queue", "status", cwd=project)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    _, parents, _ = runs_of(project)  # the store at the project root, not in DVC's temp copies
    by_lr = {r.data.params["optimizer.lr"]: r for r in parents}
    assert {"0.002", "0.02"} <= set(by_lr)
    assert by_lr["0.02"].data.tags["dvc.exp_name"]
    shown = sh("dvc", "exp", "show", "--json", cwd=project)
    assert '"roc_auc"' in shown


def test_parallel_optuna_trials_prune_the_poor_ones(project: Path):
    storage = f"sqlite:///{project / 'optuna.db'}"
    result = sweep(
        project,
        "hparams_search=optuna",
        "hydra.sweeper.study_name=prune",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.params={optimizer.lr:'choice(0.01,0.000001)'}",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "trainer.max_epochs=6",
        env=fresh_store(project, "prune.db"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Error executing job" not in result.stderr  # a pruned trial is not an error
    trials = optuna.load_study(study_name="prune", storage=storage).trials
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(trials) == 4 and pruned
    assert all(t.params["optimizer.lr"] == 1e-6 for t in pruned)  # the poor ones
    assert all(len(t.intermediate_values) < 6 for t in pruned)  # stopped early
    _, _, children = runs_of(project, "prune.db")
    killed = [c for c in children if c.info.status == "KILLED"]
    assert len(killed) == len(pruned)
    assert all(c.data.tags["trial.end"].startswith("pruned") for c in killed)
