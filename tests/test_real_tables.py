"""Real tables as a user exports them: column roles, categorical codes fitted on train only,
missing values, the numeric transforms, a network that learns from categories, raw-row serving."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler

from mlpflow.data.prepared import Meta, load_codes, load_split
from mlpflow.data.transforms import FIRST_LEVEL, MISSING, RARE, UNKNOWN
from mlpflow.model.checkpoint import load_weights
from mlpflow.serving import export
from mlpflow.stages import evaluate, prepare, train

from conftest import evaluate_scores, make_cfg, prepare_data

CITIES = [f"city-{k}" for k in range(12)]


def export_table(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """A customer table as exported with pandas' index: every kind of column prepare meets."""
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES, n)
    frame = pd.DataFrame(
        {
            "row": np.arange(1, n + 1),  # 1..n
            "customer": [f"cust-{k:05d}" for k in rng.permutation(n)],
            "country": "NZ",
            "notes": np.nan,
            "age": rng.integers(18, 90, n),
            "income": [f"{v:,.0f}" for v in rng.lognormal(10, 1, n)],
            "member": rng.choice(["yes", "no"], n),
            "active": rng.random(n) < 0.5,
            "city": city,
            "zip": rng.choice([1010, 2020, 3030], n),
            "noise": rng.normal(size=n),
        }
    )
    frame.loc[::40, "income"] = "n/a?"
    frame.loc[::25, "city"] = None
    effect = dict(zip(CITIES, np.linspace(-2, 2, len(CITIES)), strict=True))
    logit = frame["city"].map(effect).fillna(0) + (frame["member"] == "yes") - frame["age"] / 60
    frame["churn"] = np.where(logit + rng.logistic(size=n) > 0, "churn", "stay")
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path)  # with the index, as pandas writes it: an unnamed first column
    return path


def csv_data(path: Path, **keys: object) -> dict[str, object]:
    return {"name": "csv", "task": "auto", "path": str(path), "target": "churn", **keys}


def split_rows(y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """mlpflow's split (docs/architecture.md): test first, then val, stratified, rows in order."""
    n = len(y)
    size = math.ceil(0.15 * n - 1e-9)
    classes = np.unique(y, return_inverse=True)[1]
    rest, test = train_test_split(np.arange(n), test_size=size, random_state=seed, stratify=classes)
    train_rows, val = train_test_split(
        rest, test_size=size, random_state=seed, stratify=classes[rest]
    )
    return {"train": np.sort(train_rows), "val": np.sort(val), "test": np.sort(test)}


def test_every_kind_of_column_gets_its_role(tmp_path: Path):
    meta = prepare_data(csv_data(write(export_table(), tmp_path / "t.csv")), 0, tmp_path / "out")
    roles = {c.name: (c.role, c.action.split(";")[0]) for c in meta.columns}
    assert roles == {
        "Unnamed: 0": ("drop", "dropped: row number"),
        "row": ("drop", "dropped: row number"),
        "customer": ("drop", "dropped: ID (1200 distinct of 1200)"),
        "country": ("drop", "dropped: constant"),
        "notes": ("drop", "dropped: empty"),
        "age": ("numeric", "numeric"),
        "income": ("numeric", "numeric: text, 30 stray cells missing"),
        "member": ("boolean", "boolean: no/yes"),
        "active": ("boolean", "boolean: 0/1"),
        "city": ("categorical", "categorical"),
        "zip": ("categorical", "categorical: integer codes, by its name"),
        "noise": ("numeric", "numeric"),
    }
    assert meta.numeric.names == ["age", "income", "noise", "member", "active"]
    assert meta.numeric.indicators == ["income"]
    assert meta.numeric.features[-1] == "income_na"
    assert meta.categorical.names == ["city", "zip"]
    assert meta.schema["nan_counts"] == {"notes": 1200, "income": 30, "city": 48}


def test_a_timestamp_on_every_row_becomes_its_parts_not_an_id(tmp_path: Path):
    """Unique on every row or on few, a date column is its parts (with the hour when a cell has
    a time of day), never an ID nor levels."""
    frame = export_table(n=600)
    frame["signup"] = pd.date_range("2024-01-01", periods=600, freq="h")  # unique
    frame["day"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(600) % 30, unit="D")
    meta = prepare_data(csv_data(write(frame, tmp_path / "t.csv")), 0, tmp_path / "out")
    plans = {c.name: c for c in meta.columns}
    assert (plans["signup"].role, "hour" in plans["signup"].parts) == ("date", True)
    assert (plans["day"].role, "hour" in plans["day"].parts) == ("date", False)
    assert plans["customer"].action.startswith("dropped: ID")


def test_overrides_win_over_the_inference(tmp_path: Path):
    path = write(export_table(), tmp_path / "t.csv")
    keys = {"categorical": ["zip"], "numeric": ["row"], "drop": ["noise", "member"]}
    meta = prepare_data(csv_data(path, **keys), 0, tmp_path / "out")
    roles = {c.name: c.role for c in meta.columns}
    assert (roles["zip"], roles["row"], roles["noise"], roles["member"]) == (
        "categorical",
        "numeric",
        "drop",
        "drop",
    )
    assert meta.categorical.names == ["city", "zip"]
    zip_levels = meta.categorical.vocabularies[1]
    assert sorted(zip_levels) == ["1010", "2020", "3030"]  # the numbers as text


def test_an_edited_table_is_prepared_anew_by_the_hydra_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Runs outside DVC cache prepared data by the data config: an edited table, or another
    file of the same name in another directory, is not the one the cache was prepared from."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")  # the project root: the cache goes here
    monkeypatch.chdir(tmp_path)
    write(export_table(n=1200), tmp_path / "t.csv")
    cfg = make_cfg(tmp_path, "data=csv", "data.path=t.csv", "data.target=churn")

    def prepared_rows() -> int:
        cfg.paths.prepared = str(prepare.cache_dir(cfg))
        return sum(prepare.ensure_prepared(cfg).rows.values())

    assert prepared_rows() == 1200
    assert prepare.cache_dir(cfg) == Path(cfg.paths.prepared)  # unchanged file: same cache
    write(export_table(n=600, seed=1), tmp_path / "t.csv")
    assert prepared_rows() == 600
    (tmp_path / "other").mkdir()
    write(export_table(n=900, seed=2), tmp_path / "other" / "t.csv")
    monkeypatch.chdir(tmp_path / "other")
    assert prepared_rows() == 900
    assert len(list((tmp_path / "data" / "cache").iterdir())) == 3


def test_vocabularies_come_from_train_rows_only(tmp_path: Path):
    frame = export_table()
    rows = split_rows(frame["churn"].to_numpy(), seed=0)
    frame.loc[rows["test"][:3], "city"] = "city-new"  # a level seen in test only
    frame.loc[rows["train"][:2], "city"] = "city-rare"  # 2 train rows: below min_category_count
    frame.loc[rows["val"][:4], "city"] = "city-rare"
    meta = prepare_data(csv_data(write(frame, tmp_path / "t.csv")), 0, tmp_path / "out")
    assert meta.rows["test"] == len(rows["test"])
    assert meta.categorical.names[0] == "city"
    vocabulary, rare = meta.categorical.vocabularies[0], meta.categorical.rare[0]
    assert "city-new" not in vocabulary + rare and rare == ["city-rare"]
    train_counts = frame.loc[rows["train"], "city"].value_counts()
    assert vocabulary == list(train_counts[train_counts >= 5].index)  # by train frequency
    for split in ("train", "val", "test"):
        codes = load_codes(tmp_path / "out", split)[:, 0]
        cells = frame.loc[rows[split], "city"].to_numpy()
        expected = [
            MISSING if cell is None or cell != cell
            else FIRST_LEVEL + vocabulary.index(cell) if cell in vocabulary
            else RARE if cell in rare
            else UNKNOWN
            for cell in cells
        ]  # fmt: skip
        assert codes.tolist() == expected, split
    assert (load_codes(tmp_path / "out", "test")[:3, 0] == UNKNOWN).sum() >= 1


@pytest.mark.parametrize(
    ("transform", "clip"),
    [("standard", None), ("robust", None), ("quantile", None), ("robust", 3.0)],
)
def test_numeric_transforms_are_scikit_learns_fitted_on_train(tmp_path: Path, transform, clip):
    rng = np.random.default_rng(1)
    n = 900
    frame = pd.DataFrame({"skewed": rng.lognormal(0, 1.5, n), "heavy": rng.standard_t(2, n)})
    frame["churn"] = np.where(frame["skewed"] + rng.normal(size=n) > 1.5, "churn", "stay")
    frame.to_csv(tmp_path / "t.csv", index=False)
    keys = {"numeric_transform": transform, "soft_clip": clip}
    meta = prepare_data(csv_data(tmp_path / "t.csv", **keys), 0, tmp_path / "out")
    rows = split_rows(frame["churn"].to_numpy(), seed=0)
    values = frame[["skewed", "heavy"]].to_numpy()
    reference = {
        "standard": StandardScaler(),
        "robust": RobustScaler(),
        "quantile": QuantileTransformer(
            n_quantiles=len(rows["train"]), output_distribution="normal"
        ),
    }[transform].fit(values[rows["train"]])
    for split in ("train", "test"):
        expected = reference.transform(values[rows[split]])
        if clip:
            expected = expected / np.sqrt(1 + (expected / clip) ** 2)
            assert np.abs(expected).max() < clip
        x, _ = load_split(tmp_path / "out", split)
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    assert isinstance(meta, Meta) and meta.numeric.transform == transform


@pytest.mark.slow
@pytest.mark.parametrize("one_hot_max_levels", [100, 0])  # one-hot, embeddings
def test_the_network_learns_a_signal_carried_by_categories_alone(
    tmp_path: Path, one_hot_max_levels
):
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame({"shop": rng.choice(CITIES, n), "noise": rng.normal(size=n)})
    effect = dict(zip(CITIES, rng.permutation(np.linspace(-3, 3, len(CITIES))), strict=True))
    frame["churn"] = np.where(frame["shop"].map(effect) + rng.logistic(size=n) > 0, "yes", "no")
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = make_cfg(
        tmp_path,
        "data=csv",
        f"data.path={tmp_path / 't.csv'}",
        "data.target=churn",
        f"model.categorical.one_hot_max_levels={one_hot_max_levels}",
        "trainer.max_epochs=8",
        tracking=False,
    )
    prepare.run(cfg)
    train.run(cfg)
    metrics = evaluate.run(cfg)
    assert metrics["test/roc_auc"] > 0.8  # the noise column alone scores ~0.5
    weights = load_weights(Path(cfg.paths.models) / "best.ckpt")
    embedded = any(key.startswith("net.categorical.embeddings") for key in weights.state_dict)
    assert embedded == (one_hot_max_levels == 0)


@pytest.fixture(scope="module")
def served_table(tmp_path_factory: pytest.TempPathFactory):
    """A model trained on a mixed table whose test rows hold unseen levels and missing cells."""
    tmp = tmp_path_factory.mktemp("served")
    frame = export_table(1500, seed=5)
    rows = split_rows(frame["churn"].to_numpy(), seed=42)  # make_cfg: the default seed
    frame.loc[rows["test"][:5], "city"] = "city-never-seen"
    frame = frame.astype({"active": object})
    frame.loc[rows["test"][5:9], ["age", "member", "active"]] = [np.nan, None, None]
    path = write(frame, tmp / "t.csv")
    cfg = make_cfg(
        tmp, "data=csv", f"data.path={path}", "data.target=churn", "trainer.max_epochs=3",
        tracking=False,
    )  # fmt: skip
    prepare.run(cfg)
    train.run(cfg)
    export.save_model(Path(cfg.paths.models) / "best.ckpt", cfg.paths.prepared, tmp / "model")
    raw = pd.read_csv(path).iloc[rows["test"]].drop(columns="churn")  # as a user's file reads
    return cfg, tmp / "model", raw


def test_the_model_takes_raw_rows_and_scores_them_as_evaluate_does(served_table):
    cfg, model_dir, raw = served_table
    model = mlflow.pyfunc.load_model(str(model_dir))
    types = {spec.name: repr(spec.type) for spec in model.metadata.signature.inputs.inputs}
    assert set(types.values()) == {"Any"}  # every cell read by meaning, as pandas parsed it
    assert "customer" not in types and "Unnamed: 0" not in types  # dropped: not needed
    assert (raw.dtypes == np.int64).any()  # int columns as pandas reads them: taken as they are
    predictions = model.predict(raw)
    np.testing.assert_allclose(predictions["proba_stay"], evaluate_scores(cfg), atol=1e-6)
    assert raw["city"].eq("city-never-seen").sum() == 5 and raw["age"].isna().sum() == 4


def test_predict_cli_on_the_raw_test_rows(served_table, tmp_path: Path):
    from mlpflow.cli import main

    cfg, model_dir, raw = served_table
    raw.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "preds.csv"
    main(["predict", "--model", str(model_dir), "--input", str(tmp_path / "rows.csv"),
          "--output", str(out)])  # fmt: skip
    predictions = pd.read_csv(out)
    np.testing.assert_allclose(predictions["proba_stay"], evaluate_scores(cfg), atol=1e-6)


@pytest.mark.slow
def test_mlflow_models_serve_answers_raw_rows(served_table, tmp_path: Path):
    import json
    import urllib.request

    from mlflow_helpers import free_port, serving

    cfg, model_dir, raw = served_table
    command = [
        *("mlflow", "models", "serve", "-m", str(model_dir), "--env-manager", "local"),
        *("--host", "127.0.0.1", "--port", str(free_port())),
    ]
    body = raw.astype(object).where(raw.notna(), None).to_dict(orient="split", index=False)
    request = json.dumps({"dataframe_split": body}).encode()
    with serving(command, tmp_path / "serve.log", timeout=80) as url:
        http = urllib.request.Request(
            f"{url}/invocations", data=request, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(http, timeout=30) as response:
            served = pd.DataFrame(json.loads(response.read())["predictions"])
    np.testing.assert_allclose(served["proba_stay"], evaluate_scores(cfg), atol=1e-6)


@pytest.mark.slow
def test_a_mixed_table_trains_through_the_hydra_entry_and_dvc_repro(tmp_path: Path):
    from mlflow import MlflowClient

    from conftest import copy_project, sh

    project = copy_project(tmp_path / "project")
    write(export_table(), project / "customers.csv")
    data = ("data=csv", "data.path=customers.csv", "data.target=churn")
    out = sh("python", "-m", "mlpflow.train", *data, cwd=project)  # nothing but the data
    assert "categorical" in out and "city" in out  # prepare's table of column roles
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    assert run.data.params["loss.name"] == "bce" and run.data.params["loader.batch_size"] == "32"
    assert run.data.tags["data.categorical"] == "city, zip"
    assert "customer (ID)" in run.data.tags["data.drop"]
    assert run.data.metrics["test/roc_auc"] > 0.65  # 4 epochs; chance is 0.5
    assert "data/columns.json" in [a.path for a in client.list_artifacts(run.info.run_id, "data")]

    sh("mlpflow", "compose", *data, cwd=project)
    sh("dvc", "repro", cwd=project)
    metrics = pd.read_json(project / "reports" / "metrics.json")
    assert metrics.loc["roc_auc", "test"] > 0.65
    assert "Running stage" not in sh("dvc", "repro", cwd=project)
    # The table is prepare's dependency (data.source): an edited table is prepared again.
    write(export_table(n=900, seed=3), project / "customers.csv")
    out = sh("dvc", "repro", cwd=project)
    assert "Running stage 'prepare'" in out and "Running stage 'train'" in out
    rows = json.loads((project / "data" / "prepared" / "meta.json").read_text())["rows"]
    assert sum(rows.values()) == 900


def test_a_wide_categorical_column_is_capped_by_frequency(tmp_path: Path):
    rng = np.random.default_rng(2)
    n = 2000
    frame = pd.DataFrame(
        {"shop": [f"shop-{k}" for k in rng.zipf(1.6, n) % 300], "x": rng.normal(size=n)}
    )
    frame["churn"] = rng.choice(["a", "b"], n)
    frame.to_csv(tmp_path / "t.csv", index=False)
    meta = prepare_data(csv_data(tmp_path / "t.csv", max_categories=10), 0, tmp_path / "out")
    (vocabulary,), (rare,) = meta.categorical.vocabularies, meta.categorical.rare
    assert len(vocabulary) == 10 and len(rare) > 10
    counts = frame["shop"].value_counts()
    assert set(vocabulary) <= set(counts.index[:15])  # the most frequent (train counts)
    plan = next(column for column in meta.columns if column.name == "shop")
    assert "capped at data.max_categories=10" in plan.action
    codes = np.concatenate(
        [load_codes(tmp_path / "out", s)[:, 0] for s in ("train", "val", "test")]
    )
    assert codes.max() < FIRST_LEVEL + 10 and (codes == RARE).sum() > 0
