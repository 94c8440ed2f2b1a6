"""The logged MLflow model: raw rows in, carried preprocessing, signature, explicit requirements,
once per run, fast to log, loaded without unpickling."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from mlpflow.errors import DataError, ModelError
from mlpflow.model.checkpoint import load_weights
from mlpflow.serving import export
from mlpflow.stages import prepare, train
from mlpflow.tracking.store import use_tracking_uri

from conftest import make_cfg
from mlflow_helpers import Exploit, Trained, raw_rows, trained_runs


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_runs(tmp_path_factory)


def load(uri: str, model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    with use_tracking_uri(uri):
        return mlflow.pyfunc.load_model(model_uri)


def network_scores(checkpoint: Path, prepared: Path) -> np.ndarray:
    """What evaluate computes: the Lightning module on the prepared (standardized) test split."""
    from mlpflow.data.prepared import load_split
    from mlpflow.model.module import MLPModule

    module = MLPModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    x, _ = load_split(prepared, "test")
    with torch.no_grad():
        return module.eval().scores(module(torch.from_numpy(x))).numpy()


def test_one_model_per_run_with_signature_example_and_explicit_requirements(trained: Trained):
    client = MlflowClient(trained.uri)
    run = client.get_run(trained.run_id)
    models = client.search_logged_models([run.info.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted([trained.run_id, trained.other_run_id])
    (model,) = [m for m in models if m.source_run_id == trained.run_id]
    assert model.name == "model"
    assert [a.path for a in client.list_artifacts(trained.run_id, "checkpoints")] == [
        "checkpoints/best.ckpt"
    ]  # the model is logged once from the best checkpoint, not per checkpoint

    meta = json.loads((trained.prepared / "meta.json").read_text())
    pyfunc = load(trained.uri, f"runs:/{trained.run_id}/model")
    signature = pyfunc.metadata.signature
    inputs = [column["name"] for column in meta["columns"] if column["role"] != "drop"]
    assert signature.inputs.input_names() == inputs
    assert {repr(spec.type) for spec in signature.inputs.inputs} == {"Any"}  # read by meaning
    assert signature.outputs.input_names() == ["label", "proba_malignant", "proba_benign"]

    with use_tracking_uri(trained.uri):  # models:/ resolves through MLflow's global URI
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{model.model_id}"))
    assert (local / "input_example.json").exists()
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == inputs
    assert (local / "requirements.txt").read_text().split() == export.requirements()
    assert not (local / "python_model.pkl").exists()  # built from code, nothing pickled
    assert (local / "artifacts" / "weights.pt").exists()


def test_model_takes_raw_rows_and_matches_the_network_on_standardized_data(trained: Trained):
    pyfunc = load(trained.uri, f"runs:/{trained.run_id}/model")
    predictions = pyfunc.predict(raw_rows(trained.prepared))
    expected = network_scores(trained.checkpoint, trained.prepared)  # P(benign), class 1
    np.testing.assert_allclose(predictions["proba_benign"], expected, atol=1e-5)
    np.testing.assert_allclose(predictions[["proba_malignant", "proba_benign"]].sum(axis=1), 1.0)
    assert set(predictions["label"]) <= {"malignant", "benign"}
    assert (predictions["label"] == "benign").tolist() == (expected > 0.5).tolist()


def test_logging_the_model_takes_seconds_not_an_export(trained: Trained):
    """mlflow.pytorch's default pt2 export took ~16 s here; the pyfunc from code ~0.3-1.5 s."""
    from pytorch_lightning.loggers import MLFlowLogger

    client = MlflowClient(trained.uri)
    experiment = client.get_experiment(client.get_run(trained.run_id).info.experiment_id)
    timing_run = client.create_run(experiment.experiment_id, run_name="timing").info.run_id
    logger = MLFlowLogger(
        experiment_name=experiment.name, tracking_uri=trained.uri, run_id=timing_run
    )
    start = time.perf_counter()
    info = export.log_model(logger, trained.checkpoint, trained.prepared)
    elapsed = time.perf_counter() - start
    assert elapsed < 8.0, f"log_model took {elapsed:.1f} s"
    assert info.run_id == timing_run
    client.delete_run(timing_run)


@pytest.mark.parametrize(
    ("experiment", "columns"),
    [
        ("wine", ["label", "proba_class_0", "proba_class_1", "proba_class_2"]),
        ("diabetes", ["prediction"]),
    ],
)
def test_multiclass_and_regression_models(tmp_path: Path, experiment: str, columns: list[str]):
    cfg = make_cfg(tmp_path, f"experiment={experiment}", "trainer.max_epochs=3", tracking=False)
    prepare.run(cfg)
    train.run(cfg)
    checkpoint, prepared = Path(cfg.paths.models) / "best.ckpt", Path(cfg.paths.prepared)
    export.save_model(checkpoint, prepared, tmp_path / "model")
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    predictions = pyfunc.predict(raw_rows(prepared))
    assert list(predictions.columns) == columns
    expected = network_scores(checkpoint, prepared)
    if experiment == "diabetes":  # values in the target's units, not standardized
        np.testing.assert_allclose(predictions["prediction"], expected, rtol=1e-5, atol=1e-3)
    else:
        np.testing.assert_allclose(predictions[columns[1:]].to_numpy(), expected, atol=1e-5)
        assert predictions["label"].tolist() == [columns[1 + k][6:] for k in expected.argmax(1)]


def test_csv_data_keeps_int_dtypes_and_imputes_missing_values_like_prepare(tmp_path: Path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"count": rng.integers(0, 50, 200), "size": rng.normal(size=200)})
    table["y"] = (table["count"] + 10 * table["size"] > 25).astype(int)
    table.loc[::7, "size"] = np.nan
    table.to_csv(tmp_path / "rows.csv", index=False)
    cfg = make_cfg(
        tmp_path,
        "data=csv",
        f"data.path={tmp_path / 'rows.csv'}",
        "data.target=y",
        "data.nan_policy=median",
        "trainer.max_epochs=2",
        tracking=False,
    )
    prepare.run(cfg)
    train.run(cfg)
    export.save_model(Path(cfg.paths.models) / "best.ckpt", cfg.paths.prepared, tmp_path / "m")
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    rows = pd.DataFrame({"count": [3.0, np.nan], "size": [np.nan, 0.5]})
    predictions = pyfunc.predict(rows)
    # An int column as pandas reads it, with no missing cell, scores as its floats do (MLflow
    # refuses int64 for a double column: the signature takes any type).
    as_ints = pyfunc.predict(pd.DataFrame({"count": [3, 7], "size": [0.5, 0.5]}))
    as_floats = pyfunc.predict(pd.DataFrame({"count": [3.0, 7.0], "size": [0.5, 0.5]}))
    pd.testing.assert_frame_equal(as_ints, as_floats)
    assert np.isfinite(predictions[["proba_0", "proba_1"]].to_numpy()).all()

    meta = json.loads((Path(cfg.paths.prepared) / "meta.json").read_text())
    median, indicators = meta["numeric"]["medians"], meta["numeric"]["indicators"]
    assert indicators == ["size"]  # missing in train: a size_na feature; count never is
    imputed = pyfunc.predict(pd.DataFrame({"count": [median[0]], "size": [0.5]}))
    np.testing.assert_allclose(imputed["proba_1"][0], predictions["proba_1"][1])  # NaN -> median
    as_median = pyfunc.predict(pd.DataFrame({"count": [3.0], "size": [median[1]]}))
    assert as_median["proba_1"][0] != predictions["proba_1"][0]  # the indicator tells them apart

    cfg.data.nan_policy = "drop"  # without imputation the int column stays an integer column
    cfg.paths.models = str(tmp_path / "models-drop")
    prepare.run(cfg)
    train.run(cfg)
    export.save_model(Path(cfg.paths.models) / "best.ckpt", cfg.paths.prepared, tmp_path / "m2")
    dropping = mlflow.pyfunc.load_model(str(tmp_path / "m2"))
    as_floats = dropping.predict(pd.DataFrame({"count": [3.0, 7.0], "size": [0.5, 0.5]}))
    as_ints = dropping.predict(pd.DataFrame({"count": [3, 7], "size": [0.5, 0.5]}))
    pd.testing.assert_frame_equal(as_ints, as_floats)  # a float column of whole numbers too


def test_missing_values_are_refused_when_the_model_cannot_impute(trained: Trained):
    from mlpflow.data.prepared import load_meta
    from mlpflow.serving.pyfunc import Predictor

    meta = load_meta(trained.prepared)  # as prepared with data.nan_policy=error: no medians
    meta = replace(meta, nan_policy="error", numeric=replace(meta.numeric, medians=None))
    predictor = Predictor(load_weights(trained.checkpoint), meta)
    rows = raw_rows(trained.prepared).head(3)
    rows.iloc[1, 2] = np.nan
    with pytest.raises(DataError, match="nan_policy=error"):
        predictor.predict(rows)


def test_a_malicious_checkpoint_runs_no_code_and_gets_a_clear_error(tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Exploit(marker)}, evil)
    with pytest.raises(ModelError, match=r"refusing to load .*evil\.ckpt"):
        load_weights(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the file is a real exploit: unsafe loading runs it
    assert marker.exists()


def test_a_malicious_weights_file_inside_a_saved_model_is_refused(trained: Trained, tmp_path):
    from mlpflow.serving.predict import load_model

    model_dir = tmp_path / "model"
    export.save_model(trained.checkpoint, trained.prepared, model_dir)
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "hyper_parameters": Exploit(marker)}, tmp_path / "w.pt")
    shutil.copy(tmp_path / "w.pt", model_dir / "artifacts" / "weights.pt")
    with pytest.raises(ModelError, match="refusing to load"):
        load_model(str(model_dir), trained.uri, str(trained.prepared))
    assert not marker.exists()


def test_a_checkpoint_that_is_not_ours_is_named_as_such(tmp_path: Path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    with pytest.raises(ModelError, match="not an mlpflow checkpoint"):
        load_weights(tmp_path / "other.ckpt")
