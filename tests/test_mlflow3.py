"""MLflow 3 the way its UI expects it: datasets as run inputs, a LoggedModel per run with its
test metrics linked (ranked by search_logged_models), and system metrics."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from mlpflow.data.prepared import load_meta
from mlpflow.stages import evaluate, prepare, train
from mlpflow.tracking.datasets import split_digest

from conftest import make_cfg, subprocess_env
from mlflow_helpers import race_dataset_logging


@dataclass
class Trained:
    uri: str
    run_ids: list[str]
    best_epochs: list[int]
    fingerprint: str
    test_rows: int
    reports: Path  # the first run's
    prepared: Path  # the two runs' data


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """Two runs (two learning rates) on the same prepared data, one on other data."""
    tmp = tmp_path_factory.mktemp("mlflow3")
    run_ids, best_epochs = [], []
    for name, overrides in {
        "slow": ["optimizer.lr=0.0005"],
        "fast": ["optimizer.lr=0.003"],
        "other": ["data.test_size=0.25"],
    }.items():
        cfg = make_cfg(tmp / name, "trainer.max_epochs=6", *overrides)
        # MLflow's monitor publishes a sample one interval after taking it, and nothing once the
        # run has ended: the interval must be well under the ~0.3 s these 6 epochs can take
        cfg.tracking.system_metrics_interval = 0.05
        cfg.tracking.uri = f"sqlite:///{tmp / 'mlflow.db'}"
        if name != "other":
            cfg.paths.prepared = str(tmp / "prepared")
        if not (Path(cfg.paths.prepared) / "meta.json").exists():
            prepare.run(cfg)
        report = train.run(cfg)
        run_ids.append(report["run_id"])
        best_epochs.append(report["best_epoch"])
        evaluate.run(cfg)
    meta = load_meta(tmp / "prepared")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    reports = tmp / "slow" / "reports"
    return Trained(
        uri, run_ids, best_epochs, meta.fingerprint, meta.rows["test"], reports, tmp / "prepared"
    )


def inputs_of(client: MlflowClient, run_id: str) -> dict[str, object]:
    run = client.get_run(run_id)
    return {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
        for i in run.inputs.dataset_inputs
    }


def test_each_run_logs_its_three_splits_as_datasets(trained: Trained):
    client = MlflowClient(trained.uri)
    slow, fast, other = (inputs_of(client, run_id) for run_id in trained.run_ids)
    assert set(slow) == {"training", "validation", "test"}
    for context, split in {"training": "train", "validation": "val", "test": "test"}.items():
        assert slow[context].name == "breast_cancer"
        assert slow[context].digest == split_digest(trained.fingerprint, split)
        assert slow[context].digest == fast[context].digest  # equal data, the same dataset
        assert other[context].digest != slow[context].digest  # another split of the data
    test = slow["test"]
    assert test.source_type == "code" and "breast_cancer" in test.source
    assert f'"rows": {trained.test_rows}' in test.profile
    assert '"mean radius": "numeric"' in test.profile
    assert '"name": "mean radius"' in test.schema


def test_parallel_runs_logging_the_same_new_splits_each_get_all_three(trained, tmp_path):
    """MLflow's SQL store checks, then inserts a dataset: two processes logging the same new
    splits at the same instant break its unique constraint (measured: about 2 rounds in 5
    without the retry). Each run must still get its three inputs."""
    uri = f"sqlite:///{tmp_path / 'race.db'}"
    runs = race_dataset_logging(uri, trained.prepared)
    client = MlflowClient(uri)
    assert all(len(inputs_of(client, run_id)) == 3 for run_id in runs)


def test_logged_models_carry_their_test_metrics_and_rank_by_them(trained: Trained):
    client = MlflowClient(trained.uri)
    experiment = client.get_experiment_by_name("mlpflow")
    models = client.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        order_by=[{"field_name": "metrics.test/roc_auc", "ascending": False}],
    )
    assert len(models) == 3
    by_run = {model.source_run_id: model for model in models}
    for run_id, best_epoch in zip(trained.run_ids, trained.best_epochs, strict=True):
        run = client.get_run(run_id)
        linked = {m.key: m for m in by_run[run_id].metrics}
        assert linked["test/roc_auc"].value == run.data.metrics["test/roc_auc"]
        assert linked["test/roc_auc"].dataset_digest == inputs_of(client, run_id)["test"].digest
        (output,) = run.outputs.model_outputs
        assert output.model_id == by_run[run_id].model_id
        assert output.step == best_epoch  # the model is the best epoch's
    ranked = [next(m.value for m in model.metrics if m.key == "test/roc_auc") for model in models]
    aucs = [client.get_run(run_id).data.metrics["test/roc_auc"] for run_id in trained.run_ids]
    assert ranked == sorted(aucs, reverse=True)


def test_a_run_samples_system_metrics_while_it_trains(trained: Trained):
    run = MlflowClient(trained.uri).get_run(trained.run_ids[0])
    assert {
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
    } <= set(run.data.metrics)


def test_report_links_the_run_in_the_model_training_view(trained: Trained):
    """MLflow 3.17's UI ignores the experiment kind tag for a new browser: the link asks for the
    model-training view, on one line (a wrapped link does not open)."""
    done = subprocess.run(
        ["mlpflow", "report", "--reports", str(trained.reports)],
        env=subprocess_env(COLUMNS="60"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    link = f"/runs/{trained.run_ids[0]}?workflowType=machine_learning"
    assert any(link in line and "http://" in line for line in done.stdout.splitlines())


@pytest.mark.slow
def test_quiet_by_default_and_verbose_on_request(tmp_path: Path):
    """mlpflow's lines only; MLflow's and Lightning's INFO lines with MLPFLOW_VERBOSE=1."""
    cfg = make_cfg(tmp_path, "trainer.max_epochs=2")
    prepare.run(cfg)
    params = tmp_path / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    outputs = {}
    for verbose in ("0", "1"):
        done = subprocess.run(
            ["python", "-m", "mlpflow", "stage", "train", "--params", str(params)],
            env=subprocess_env(MLPFLOW_VERBOSE=verbose),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[verbose] = done.stdout + done.stderr
    assert "INFO" not in outputs["0"] and "Downloading artifacts" not in outputs["0"]
    assert "INFO mlflow" in outputs["1"]
