"""cv=kfold as a user runs it: `python -m mlpflow.train cv=kfold` on the default table and on a
mixed-type CSV table ends with one CV run, a FINISHED run per fold, the fold mean and std, the
out-of-fold metrics and predictions, and the fold ensemble as the CV run's model."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from test_interrupted import epoch_of
from test_real_tables import export_table, write

from mlpflow.data.prepared import load_codes, load_split
from mlpflow.evaluation.scoring import score_split
from mlpflow.model.checkpoint import load_weights, read_checkpoint
from mlpflow.stages.cross_validation import HeldOut, oof_table, summarize

from conftest import copy_project, sh, subprocess_env

FOLDS = 5
FOLD_STATE = "outputs/checkpoints/*/folds/*/resume.json"  # a fold training now


def cross_validate(project: Path, uri: str, *overrides: str, folds: int = FOLDS) -> str:
    result = subprocess.run(
        ["python", "-m", "mlpflow.train", "cv=kfold", f"cv.folds={folds}",
         "callbacks.progress_bar=null", *overrides],
        cwd=project, env=subprocess_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def runs_of(uri: str) -> tuple[MlflowClient, object, list]:
    """The CV run and its fold runs, by fold."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    folds = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id),
        key=lambda r: int(r.data.tags["fold"]),
    )
    assert len(runs) == 1 + len(folds)
    return client, parents[0], folds


@pytest.fixture(scope="module")
def default_table(tmp_path_factory) -> tuple[Path, str, str]:
    project = copy_project(tmp_path_factory.mktemp("cv") / "project")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return project, uri, cross_validate(project, uri)


@pytest.mark.slow
def test_one_cv_run_holds_the_fold_mean_std_oof_and_ensemble_metrics(default_table):
    _, uri, output = default_table
    client, cv_run, folds = runs_of(uri)
    assert [r.data.tags["fold"] for r in folds] == [str(k) for k in range(FOLDS)]
    assert cv_run.info.status == "FINISHED" and all(r.info.status == "FINISHED" for r in folds)
    metrics = cv_run.data.metrics
    for name in ("loss", "roc_auc", "acc", "f1"):
        held_out = np.array([r.data.metrics[f"heldout/{name}"] for r in folds])
        assert metrics[f"cv/{name}_mean"] == pytest.approx(held_out.mean())
        assert metrics[f"cv/{name}_std"] == pytest.approx(held_out.std())
    assert held_out.std() > 0  # five different models on five different folds
    for name in ("roc_auc", "acc"):
        members = [r.data.metrics[f"test/{name}"] for r in folds]
        assert metrics[f"test_fold_mean/{name}"] == pytest.approx(np.mean(members))
        assert 0.5 < metrics[f"test/{name}"] <= 1
    assert 0.9 < metrics["oof/roc_auc"] <= 1
    assert f"over {FOLDS} folds" in output and "fold ensemble on test" in output
    artifacts = {a.path for a in client.list_artifacts(cv_run.info.run_id, "figures")}
    assert {"figures/cv_folds.png", "figures/importance.png", "figures/roc.png"} <= artifacts


@pytest.mark.slow
def test_each_fold_trains_from_its_own_seed(default_table):
    """Fold k's network is seeded `seed` + k (its initialization and its rows' order): five
    members from one seed would start alike and err alike."""
    _, uri, _ = default_table
    _, cv_run, folds = runs_of(uri)
    seed = int(cv_run.data.params["seed"])
    assert [int(r.data.params["seed"]) for r in folds] == [seed + k for k in range(FOLDS)]


@pytest.mark.slow
def test_out_of_fold_predictions_hold_every_non_test_row_once(default_table, tmp_path: Path):
    _, uri, _ = default_table
    client, cv_run, _ = runs_of(uri)
    path = client.download_artifacts(cv_run.info.run_id, "oof/predictions.csv", str(tmp_path))
    oof = pd.read_csv(path)
    n_rows = len(load_breast_cancer().target)
    n_test = int(np.ceil(0.15 * n_rows - 1e-9))
    assert oof["row"].is_unique and len(oof) == n_rows - n_test
    assert sorted(oof["fold"].unique()) == list(range(FOLDS))
    positive = oof["target"] == oof["target"].unique().max()  # scikit-learn: 1 = benign
    auc = roc_auc_score(positive, oof[f"proba_{oof['target'].max()}"])
    assert cv_run.data.metrics["oof/roc_auc"] == pytest.approx(auc, abs=1e-6)


@pytest.mark.slow
def test_the_fold_ensemble_predicts_the_mean_of_its_fold_models(default_table, tmp_path: Path):
    project, uri, _ = default_table
    mlflow.set_tracking_uri(uri)
    _, cv_run, folds = runs_of(uri)
    rows = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(40)
    models = [
        mlflow.pyfunc.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
        for run in [cv_run, *folds]
    ]
    ensemble, *members = (model.predict(rows) for model in models)
    probability = [c for c in ensemble.columns if c.startswith("proba_")]
    mean = np.mean([member[probability].to_numpy() for member in members], axis=0)
    np.testing.assert_allclose(ensemble[probability].to_numpy(), mean, rtol=1e-6, atol=1e-9)
    labels = np.array([c.removeprefix("proba_") for c in probability])[mean.argmax(axis=1)]
    assert (ensemble["label"].astype(str).to_numpy() == labels).all()
    rows.to_csv(tmp_path / "rows.csv", index=False)  # `mlpflow predict` takes the CV run's id
    sh("mlpflow", "predict", "--model", cv_run.info.run_id, "--input", str(tmp_path / "rows.csv"),
       "--output", str(tmp_path / "out.csv"), "--uri", uri, cwd=project)  # fmt: skip
    predicted = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(predicted[probability].to_numpy(), mean, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_a_mixed_csv_table_cross_validates(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    write(export_table(800), project / "customers.csv")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    data = ("data=csv", "data.path=customers.csv", "data.target=churn", "trainer.max_epochs=3")
    output = cross_validate(project, uri, *data)
    _, cv_run, folds = runs_of(uri)
    assert len(folds) == FOLDS and all(r.info.status == "FINISHED" for r in folds)
    assert {"cv/roc_auc_mean", "oof/roc_auc", "test/roc_auc"} <= set(cv_run.data.metrics)
    assert "out-of-fold" in output
    rows = export_table(800).drop(columns="churn").head(10)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{cv_run.outputs.model_outputs[0].model_id}")
    assert set(model.predict(rows)["label"]) <= {"churn", "stay"}


@pytest.mark.slow
def test_a_parallel_cv_killed_in_its_folds_resumes_them_and_keeps_the_finished_ones(
    tmp_path: Path,
):
    """Ctrl-C's SIGINT, sent to a CV training its folds two at a time (cv.n_jobs=2): the workers
    stop as a single training does, and the CV exits 130. The same command again: a finished
    fold is not trained again, each stopped fold continues its run from its last checkpoint,
    and the CV run ends with the metrics of an uninterrupted CV run of the same config, trained
    one fold at a time."""
    project = copy_project(tmp_path / "project")
    config = ("data=synthetic", "data.n_samples=1500", "trainer.max_epochs=8",
              "callbacks.early_stopping=null",
              "callbacks.last_checkpoint.every_seconds=0.2")  # fmt: skip
    whole = f"sqlite:///{project / 'whole.db'}"
    cross_validate(project, whole, *config, folds=3)  # one fold at a time
    uri = f"sqlite:///{project / 'mlflow.db'}"
    config = (*config, "cv.n_jobs=2")
    command = ["python", "-m", "mlpflow.train", "cv=kfold", "cv.folds=3",
               "callbacks.progress_bar=null", *config]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=project, env=subprocess_env(MLFLOW_TRACKING_URI=uri),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not any(epoch_of(d.parent) >= 2 for d in project.glob(FOLD_STATE)):
        assert process.poll() is None and time.monotonic() < deadline, "no fold trained"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # to the CV's process only: it passes it on
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "Traceback" not in err and "run the same command again to resume" in err
    _, cv_run, folds = runs_of(uri)
    assert cv_run.info.status == "KILLED"
    assert {r.info.status for r in folds} <= {"FINISHED", "KILLED"}
    assert "KILLED" in {r.info.status for r in folds}
    before = {r.data.tags["fold"]: r.info for r in folds}

    cross_validate(project, uri, *config, folds=3)
    _, resumed, folds = runs_of(uri)
    assert resumed.info.run_id == cv_run.info.run_id and resumed.info.status == "FINISHED"
    assert len(folds) == 3 and all(r.info.status == "FINISHED" for r in folds)
    for run in folds:
        earlier = before.get(run.data.tags["fold"])
        if earlier is not None and earlier.status == "FINISHED":
            assert run.info.end_time == earlier.end_time  # not trained again
        elif earlier is not None:
            assert run.info.run_id == earlier.run_id and run.data.tags["run.resumes"] == "1"
    _, uninterrupted, _ = runs_of(whole)
    assert uninterrupted.data.params["cv.n_jobs"] == "1"
    for key, value in uninterrupted.data.metrics.items():
        assert resumed.data.metrics[key] == pytest.approx(value, rel=1e-6), key


@pytest.mark.slow
def test_an_optuna_sweep_of_cvs_compares_trials_by_the_fold_mean_and_prunes_after_a_fold(
    tmp_path: Path,
):
    """Each trial is a CV run nested under the sweep's run (its fold runs one level further);
    its objective is cv/loss_mean; the pruner sees one step per fold and stops poor trials."""
    project = copy_project(tmp_path / "project")
    storage = f"sqlite:///{project / 'optuna.db'}"
    uri = f"sqlite:///{project / 'mlflow.db'}"
    result = subprocess.run(
        ["python", "-m", "mlpflow.train", "-m", "hparams_search=optuna", "cv=kfold", "cv.folds=2",
         "hydra.sweeper.study_name=cv", "hydra.sweeper.n_trials=4",
         "hydra.sweeper.params={optimizer.lr:'choice(0.01,0.000001)'}",
         "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0",
         "trainer.max_epochs=3", "callbacks.progress_bar=null"],
        cwd=project, env=subprocess_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="cv", storage=storage).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert complete and pruned and len(complete) + len(pruned) == 4
    assert all(sorted(t.intermediate_values) == [0, 1] for t in complete)
    assert all(len(t.intermediate_values) < 2 for t in pruned)  # stopped after a fold
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    (sweep_run,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    cv_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep_run.info.run_id]
    assert len(cv_runs) == 4 and all("fold" not in r.data.tags for r in cv_runs)
    for trial in complete:
        (cv_run,) = [r for r in cv_runs if r.data.tags["sweep.job"] == str(trial.number)]
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == cv_run.info.run_id]
        assert len(folds) == 2
        assert trial.value == pytest.approx(cv_run.data.metrics["cv/loss_mean"])
        mean = np.mean([r.data.metrics["heldout/loss"] for r in folds])
        assert trial.intermediate_values[1] == pytest.approx(mean)


@pytest.mark.slow
def test_dvc_exp_run_with_folds_shows_the_cv_mean_and_std(tmp_path: Path):
    """`dvc exp run -S cv=kfold`: prepare cuts the folds, train cross-validates, `dvc exp show`
    lists the fold mean and std, and `mlpflow report` prints the summary line."""
    project = copy_project(tmp_path / "project")
    sh("dvc", "exp", "run", "-S", "cv=kfold", "-S", "cv.folds=3", cwd=project)
    shown = json.loads(sh("dvc", "exp", "show", "--json", "--no-pager", cwd=project))
    report = json.loads((project / "reports" / "train.json").read_text())
    assert report["cv"]["folds"] == 3 and 0.9 < report["cv"]["roc_auc_mean"] <= 1
    experiments = [e for commit in shown for e in (commit.get("experiments") or [])]
    metrics = [
        revision["data"]["metrics"]["reports/train.json"]["data"]["cv"]
        for experiment in experiments
        for revision in experiment["revs"]
    ]
    assert {"roc_auc_mean": report["cv"]["roc_auc_mean"]}.items() <= metrics[0].items()
    assert "roc_auc_std" in metrics[0]
    assert "over 3 folds" in sh("mlpflow", "report", cwd=project)


def test_out_of_fold_scores_are_the_mean_over_repeats_and_each_fold_counts_once():
    """2 folds x 2 repeats of four rows: oof/ scores each row's mean over its two held-out
    predictions; cv/ averages the four folds' own metrics."""
    cfg = OmegaConf.create({"evaluate": {"threshold": 0.5}})
    meta = SimpleNamespace(task="binary", n_outputs=1, classes=["no", "yes"])
    y = np.array([0, 1, 0, 1])
    scores = {0: [0.2, 0.9], 1: [0.6, 0.3], 2: [0.1, 0.7], 3: [0.2, 0.8]}  # row: (r0, r1)

    row_weight = np.array([1.0, 3.0, 0.5, 2.0], dtype=np.float32)

    def held_out(rows: list[int], repeat: int, weighted: bool = False) -> HeldOut:
        metrics = {"heldout/acc": float(repeat + len(rows))}
        chosen = np.array([scores[row][repeat] for row in rows])
        weight = row_weight[rows] if weighted else None
        return HeldOut(metrics, chosen, y[rows], np.array(rows), weight, 0.5)

    results = [held_out([0, 1], 0), held_out([2, 3], 0), held_out([1, 3], 1), held_out([0, 2], 1)]
    summary = summarize(cfg, meta, results)
    mean = np.array([np.mean(scores[row]) for row in range(4)])
    assert summary["oof/roc_auc"] == pytest.approx(roc_auc_score(y, mean))
    assert summary["oof/acc"] == pytest.approx(np.mean((mean > 0.5) == y))
    assert summary["cv/acc_mean"] == pytest.approx(np.mean([2, 2, 3, 3]))
    assert summary["cv/acc_std"] == pytest.approx(np.std([2, 2, 3, 3]))
    weighted = [held_out(r.rows.tolist(), k // 2, weighted=True) for k, r in enumerate(results)]
    correct = (mean > 0.5) == y  # each row's weight counts once, not once per repeat
    weighted_acc = summarize(cfg, meta, weighted)["oof/acc"]
    assert weighted_acc == pytest.approx(np.average(correct, weights=row_weight))
    folds = SimpleNamespace(repeat=[0, 0, 1, 1], fold=[0, 1, 0, 1])
    table = oof_table(meta, folds, results)
    assert len(table) == 8 and list(table["repeat"]) == [0] * 4 + [1] * 4
    assert list(table.loc[table["repeat"] == 1, "proba_yes"]) == [0.9, 0.3, 0.7, 0.8]


def test_a_fold_worker_records_a_signal_and_its_next_training_stops_at_its_first_step():
    """In a fold worker, SIGINT outside a training raises nothing (it would surface inside any
    callback, a weakref's among them, as a traceback); a training started afterwards stops at
    its first step, so the fold stays resumable."""
    script = (
        "import os, signal\n"
        "from mlpflow.stages.interrupt import StopOnSignal, Stopped, record_signals\n"
        "record_signals()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "try:\n"
        "    StopOnSignal().on_train_batch_end()\n"
        "except Stopped as stopped:\n"
        "    print('stopped by', stopped)\n"
    )
    done = subprocess.run(["python", "-c", script], capture_output=True, text=True, timeout=120,
                          env=subprocess_env())  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "stopped by SIGINT" and "Traceback" not in done.stderr


@pytest.mark.slow
def test_each_fold_member_is_refitted_on_all_its_training_folds_for_its_chosen_epochs(
    tmp_path: Path,
):
    """cv.refit=true: a fold's member is a second network trained on the fold's train
    and inner val rows for the epochs the inner split chose; it is what the fold's run logs and
    what scores the held-out rows. Its target standardization saw the val rows."""
    project = copy_project(tmp_path / "project")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    cross_validate(project, uri, "data=synthetic", "data.task=regression", "data.n_samples=600",
                   "trainer.max_epochs=6", "cv.refit=true", folds=3)  # fmt: skip
    client, cv_run, folds = runs_of(uri)
    (models,) = project.glob("outputs/checkpoints/*/folds")
    for run in folds:
        k = run.data.tags["fold"]
        best, refit = (read_checkpoint(models / k / name) for name in ("best.ckpt", "refit.ckpt"))
        report = json.loads((models / k / "train.json").read_text())
        assert best["epoch"] == report["best_epoch"]  # Lightning saves the epochs trained:
        assert refit["epoch"] == report["refit_epochs"] == report["best_epoch"] + 1
        assert report["checkpoint"] == "refit.ckpt"
        logged = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
        assert logged == {"checkpoints/refit.ckpt"}
        (prepared,) = project.glob(f"data/cache/*/folds/{k}")
        y = np.concatenate([load_split(prepared, split)[1] for split in ("train", "val")])
        assert refit["hyper_parameters"]["target_mean"] == pytest.approx(y.mean(), rel=1e-5)
        assert best["hyper_parameters"]["target_mean"] != pytest.approx(y.mean(), rel=1e-5)
        weights = load_weights(models / k / "refit.ckpt")
        x, y_heldout = load_split(prepared, "heldout")
        codes = load_codes(prepared, "heldout")
        metrics, _ = score_split(weights, *(torch.from_numpy(a) for a in (x, codes, y_heldout)),
                                 0.5, "heldout")  # fmt: skip
        assert run.data.metrics["heldout/r2"] == pytest.approx(metrics["heldout/r2"], rel=1e-5)
    assert cv_run.data.params["cv.refit"] == "True"
