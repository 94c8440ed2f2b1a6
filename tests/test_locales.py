"""Tables from other locales and formats, as a new user brings them: a European CSV (`;`,
decimal commas, `.` thousands), quoted decimal commas in a comma-delimited CSV, a target with
thousands separators, an ambiguous column (refused in one line), and a Parquet file with a date
column whose rows score alike from CSV text, from the Parquet file and from `pd.read_parquet`;
a date column kept as levels (data.categorical) matches its cells by meaning."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.model_selection import train_test_split

from mlpflow.cli import main
from mlpflow.config.schema import DataConfig
from mlpflow.data.prepared import load_split
from mlpflow.data.text import TextFormat
from mlpflow.errors import ConfigError, friendly_errors
from mlpflow.serving import export
from mlpflow.stages import evaluate, prepare, train

from conftest import DATA_DEFAULTS, evaluate_scores, make_cfg, prepare_data

SEED = 42  # make_cfg's (conf/config.yaml's) seed


def german(value: float, decimals: int = 2) -> str:
    """A number as a German spreadsheet writes it: 1.234.567,89."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "_").replace(".", ",").replace("_", ".")


def csv_data(path: Path, target: str, **keys: object) -> dict[str, object]:
    return {"name": "csv", "task": "auto", "path": str(path), "target": target, **keys}


def splits(n: int, seed: int, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """mlpflow's split (docs/architecture.md): test, then val, 15 % each; rows in file order."""
    size = math.ceil(0.15 * n - 1e-9)
    rows = np.arange(n)
    strata = None if labels is None else np.unique(labels, return_inverse=True)[1]
    rest, test = train_test_split(rows, test_size=size, random_state=seed, stratify=strata)
    strata = None if strata is None else strata[rest]
    fit, val = train_test_split(rest, test_size=size, random_state=seed, stratify=strata)
    return {"train": np.sort(fit), "val": np.sort(val), "test": np.sort(test)}


def raw_values(cfg_dir: Path, meta, split: str) -> pd.DataFrame:
    """The continuous columns of a prepared split, the fitted standard scaling inverted."""
    x, _ = load_split(cfg_dir, split)
    numeric = meta.numeric
    mean, scale = (np.asarray(numeric.fitted[k]) for k in ("mean_", "scale_"))
    values = x[:, : numeric.n_continuous].astype(np.float64) * scale + mean
    return pd.DataFrame(values, columns=numeric.names[: numeric.n_continuous])


def assert_read_as(read: pd.Series, truth: pd.Series) -> None:
    """Equal up to float32 (the prepared arrays): each value, not just the distribution."""
    scale = float(np.abs(truth).max())
    np.testing.assert_allclose(read, truth, rtol=1e-6, atol=1e-6 * scale)


def predict_cli(model: Path, rows: Path, out: Path) -> pd.DataFrame:
    main(["predict", "--model", str(model), "--input", str(rows), "--output", str(out)])
    return pd.read_csv(out)


def one_line_error(capsys: pytest.CaptureFixture, run) -> str:
    """`run` under the stages' error handling: exit code 2 and exactly one line on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info, friendly_errors():
        run()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# --- a European CSV: `;`, decimal commas, `.` thousands -------------------------------------


def european_table(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the values, the table as a German Excel export writes them)."""
    rng = np.random.default_rng(seed)
    values = pd.DataFrame(
        {
            "temp": np.round(rng.normal(18, 6, n), 2),
            "druck": np.round(rng.normal(101_300, 900, n), 2),  # 101.325,40
            "anteil": np.round(rng.random(n), 3),  # 0,708
            "stadt": rng.choice(["Köln", "Bonn", "Münster"], n),
        }
    )
    effect = values["stadt"].map({"Köln": 3.0, "Bonn": -2.0, "Münster": 0.0})
    values["ertrag"] = np.round(
        1500 + 40 * values["temp"] + 900 * values["anteil"] + 100 * effect, 2
    )  # 2.317,45
    text = values.copy()
    for name, decimals in (("temp", 2), ("druck", 2), ("anteil", 3), ("ertrag", 2)):
        text[name] = [german(v, decimals) for v in values[name]]
    return values, text


@pytest.fixture(scope="module")
def european_model(tmp_path_factory: pytest.TempPathFactory):
    """The European CSV trained through the stages, and its model saved."""
    tmp = tmp_path_factory.mktemp("european")
    values, text = european_table()
    path = tmp / "ertrag.csv"
    text.to_csv(path, sep=";", index=False)
    cfg = make_cfg(
        tmp, "data=csv", f"data.path={path}", "data.target=ertrag", "data.soft_clip=null",
        "trainer.max_epochs=3", tracking=False,
    )  # fmt: skip
    meta = prepare.run(cfg)
    train.run(cfg)
    evaluate.run(cfg)
    export.save_model(Path(cfg.paths.models) / "best.ckpt", cfg.paths.prepared, tmp / "model")
    return cfg, meta, values, path, tmp / "model"


def test_a_european_csv_trains_with_the_values_the_spreadsheet_shows(european_model):
    cfg, meta, values, path, _ = european_model
    header, first = path.read_text(encoding="utf-8").splitlines()[:2]
    assert header == "temp;druck;anteil;stadt;ertrag" and first.count(",") == 4, first
    assert meta.text_format == TextFormat(";", ",", ".")
    assert meta.task == "regression"  # ertrag: 2.317,45 are numbers, not 240 classes
    roles = {column.name: column.role for column in meta.columns}
    assert roles == {"temp": "numeric", "druck": "numeric", "anteil": "numeric",
                     "stadt": "categorical"}  # fmt: skip
    rows = splits(len(values), SEED)
    medians = dict(zip(meta.numeric.names, meta.numeric.medians or [], strict=True))
    for name in ("temp", "druck", "anteil"):
        assert medians[name] == pytest.approx(values[name].iloc[rows["train"]].median())
        for split in ("train", "test"):  # every cell read as the spreadsheet shows it
            read = raw_values(Path(cfg.paths.prepared), meta, split)[name]
            assert_read_as(read, values[name].iloc[rows[split]])
    _, y = load_split(cfg.paths.prepared, "test")
    np.testing.assert_allclose(y, values["ertrag"].iloc[rows["test"]], rtol=1e-6)


def test_the_european_model_scores_rows_as_the_file_writes_them(european_model, tmp_path):
    cfg, _, values, path, model_dir = european_model
    test = splits(len(values), SEED)["test"]
    lines = path.read_text(encoding="utf-8").splitlines()
    rows_csv = tmp_path / "rows.csv"  # the test rows, as the file has them, target left in
    rows_csv.write_text("\n".join([lines[0], *(lines[1 + i] for i in test)]) + "\n")
    expected = evaluate_scores(cfg)
    predicted = predict_cli(model_dir, rows_csv, tmp_path / "preds.csv")
    np.testing.assert_allclose(predicted["prediction"], expected, rtol=1e-5, atol=1e-5)
    model = mlflow.pyfunc.load_model(str(model_dir))
    types = {spec.name: repr(spec.type) for spec in model.metadata.signature.inputs.inputs}
    assert set(types.values()) == {"Any"}  # every cell read by meaning
    # As pandas reads the file: druck (text in training: 101.325,40) arrives as numbers.
    raw = pd.read_csv(rows_csv, sep=";", decimal=",", thousands=".").drop(columns="ertrag")
    assert raw["druck"].dtype == np.float64
    np.testing.assert_allclose(model.predict(raw)["prediction"], expected, rtol=1e-5, atol=1e-5)
    text = raw.assign(druck=[german(v) for v in raw["druck"]])  # or as the file writes it
    np.testing.assert_allclose(model.predict(text)["prediction"], expected, rtol=1e-5, atol=1e-5)


def test_a_file_in_another_format_reads_every_number_column_in_its_own(european_model, tmp_path):
    """The test rows as an English spreadsheet writes them (`,` and decimal points): the number
    columns typed double and the one that was text in training (druck: any type) alike."""
    cfg, _, values, _, model_dir = european_model
    test = splits(len(values), SEED)["test"]
    values.iloc[test].drop(columns="ertrag").to_csv(tmp_path / "rows.csv", index=False)
    predicted = predict_cli(model_dir, tmp_path / "rows.csv", tmp_path / "preds.csv")
    np.testing.assert_allclose(predicted["prediction"], evaluate_scores(cfg), rtol=1e-5, atol=1e-5)


# --- other number formats ----------------------------------------------------------------------


def test_quoted_decimal_commas_in_a_comma_delimited_csv_are_decimals(tmp_path: Path):
    rng = np.random.default_rng(1)
    n = 120
    values = pd.DataFrame({"x": np.round(rng.normal(0, 2, n), 2), "k": rng.integers(0, 9, n)})
    values["y"] = rng.choice(["a", "b"], n)
    text = values.assign(x=[f"{v:.2f}".replace(".", ",") for v in values["x"]])
    text.to_csv(tmp_path / "t.csv", index=False)  # "0,86","-1,74": quoted, pandas' default
    assert f'"{text["x"][0]}",' in (tmp_path / "t.csv").read_text()
    meta = prepare_data(csv_data(tmp_path / "t.csv", "y", soft_clip=None), 0, tmp_path / "out")
    rows = splits(n, 0, values["y"].to_numpy())
    x_read = raw_values(tmp_path / "out", meta, "train")["x"]
    assert_read_as(x_read, values["x"].iloc[rows["train"]])  # 0,86 is 0.86, not 86
    assert meta.numeric.medians[0] == pytest.approx(values["x"].iloc[rows["train"]].median())
    assert meta.text_format == TextFormat(",", ",", ".")


@pytest.mark.parametrize("task", ["auto", "regression"])
def test_a_target_with_thousands_separators_is_a_numeric_target(tmp_path: Path, task: str):
    rng = np.random.default_rng(2)
    n = 150
    x = rng.normal(size=n)
    y = np.round(5000 * x + rng.normal(0, 300, n), 1)  # -1,049.8  12,345.6
    frame = pd.DataFrame({"x": x, "y": [f"{v:,.1f}" for v in y]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    meta = prepare_data(csv_data(tmp_path / "t.csv", "y", task=task), 0, tmp_path / "out")
    assert meta.task == "regression" and meta.classes is None
    assert meta.text_format == TextFormat(",", ".", ",")
    rows = splits(n, 0)
    _, y_test = load_split(tmp_path / "out", "test")
    np.testing.assert_allclose(y_test, y[rows["test"]], rtol=1e-6)


def ambiguous_table(path: Path) -> Path:
    """Every price cell like 1,234: 1234 or 1.234; integers elsewhere tell nothing."""
    rng = np.random.default_rng(3)
    n = 60
    frame = pd.DataFrame(
        {
            "price": [f"{a},{b:03d}" for a, b in rng.integers([1, 0], [999, 999], (n, 2))],
            "rooms": rng.integers(1, 6, n),
            "y": rng.choice(["a", "b"], n),
        }
    )  # fmt: skip
    frame.to_csv(path, index=False)
    return path


def test_an_ambiguous_column_is_refused_in_one_line_naming_the_option(tmp_path, capsys):
    path = ambiguous_table(tmp_path / "t.csv")
    cfg = make_cfg(tmp_path, "data=csv", f"data.path={path}", "data.target=y", tracking=False)
    err = one_line_error(capsys, lambda: prepare.run(cfg))
    assert "'price'" in err and "data.csv.decimal=point" in err and "data.csv.decimal=comma" in err
    assert not Path(cfg.paths.prepared).exists()
    cells = pd.read_csv(path, dtype=str)["price"]
    for word, expected in (
        ("point", cells.str.replace(",", "")),
        ("comma", cells.str.replace(",", ".")),
    ):
        keys = {"csv": {"delimiter": None, "decimal": word, "thousands": None}, "soft_clip": None}
        meta = prepare_data(csv_data(path, "y", **keys), 0, tmp_path / word)
        assert meta.columns[0].role == "numeric", meta.columns[0]
        rows = splits(len(cells), 0, pd.read_csv(path)["y"].to_numpy())
        read = raw_values(tmp_path / word, meta, "train")["price"]
        truth = expected.astype(float).iloc[rows["train"]]
        assert_read_as(read, truth)


def test_two_ways_of_writing_decimals_are_refused_in_one_line(tmp_path: Path, capsys):
    frame = pd.DataFrame(
        {"a": ["0.5", "1.25", "2.0"] * 10, "b": ["0,86", "1,5", "2,25"] * 10, "y": [0, 1, 0] * 10}
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = make_cfg(tmp_path, "data=csv", f"data.path={tmp_path / 't.csv'}", "data.target=y")
    err = one_line_error(capsys, lambda: prepare.run(cfg))
    assert "'a'" in err and "'b'" in err and "data.csv.decimal=comma or point" in err


@pytest.mark.parametrize(
    ("csv", "words"),
    [
        ({"decimal": "semicolon"}, ["data.csv.decimal='semicolon'", "point, comma"]),
        ({"decimal": "comma", "thousands": ","}, ["both ','"]),
        ({"delimiter": "x"}, ["data.csv.delimiter='x'", "comma, semicolon, tab, pipe"]),
        ({"decimals": ","}, ["no option decimals", "data.csv.decimal"]),
    ],
)
def test_bad_csv_options_get_one_line(csv: dict, words: list[str]):
    options = {"delimiter": None, "decimal": None, "thousands": None, **csv}
    with pytest.raises(ConfigError) as error:
        DataConfig.parse({**DATA_DEFAULTS, "name": "csv", "task": "auto", "path": "t.csv",
                          "target": "y", "csv": options})  # fmt: skip
    assert "\n" not in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_csv_options_take_words_and_marks_from_the_command_line(tmp_path: Path):
    cfg = make_cfg(
        tmp_path, "data=csv", "data.path=t.csv", "data.target=y",
        "data.csv.delimiter=semicolon", "data.csv.decimal=','", "data.csv.thousands=none",
    )  # fmt: skip
    assert DataConfig.parse(cfg.data).csv == {"delimiter": ";", "decimal": ",", "thousands": ""}


# --- a Parquet file with a date column ---------------------------------------------------------


@pytest.fixture(scope="module")
def parquet_model(tmp_path_factory: pytest.TempPathFactory):
    """A model trained on Parquet: a date column (a timestamp, midnight: its parts) and a
    category column carry the signal; the test rows as the file has them."""
    tmp = tmp_path_factory.mktemp("parquet")
    rng = np.random.default_rng(4)
    n = 900
    days = pd.date_range("2023-01-02", periods=15, freq="D")
    frame = pd.DataFrame(
        {
            "day": rng.choice(days, n),
            "shop": pd.Categorical(rng.choice(["north", "south", "east"], n)),
            "size": rng.normal(size=n),
        }
    )
    effect = dict(zip(days, np.linspace(-3, 3, len(days)), strict=True))
    logit = frame["day"].map(effect) + (frame["shop"] == "north") * 1.5 + 0.3 * frame["size"]
    frame["churn"] = np.where(logit + rng.logistic(size=n) > 0, "yes", "no")
    path = tmp / "t.parquet"
    frame.to_parquet(path, index=False)
    cfg = make_cfg(
        tmp, "data=csv", f"data.path={path}", "data.target=churn", "trainer.max_epochs=4",
        tracking=False,
    )  # fmt: skip
    meta = prepare.run(cfg)
    train.run(cfg)
    export.save_model(Path(cfg.paths.models) / "best.ckpt", cfg.paths.prepared, tmp / "model")
    test = splits(n, SEED, frame["churn"].to_numpy())["test"]
    return cfg, meta, frame.iloc[test].drop(columns="churn").reset_index(drop=True), tmp


def test_a_date_column_is_one_level_per_day_whatever_its_print(parquet_model, tmp_path):
    cfg, meta, _, _ = parquet_model
    assert meta.categorical.names == ["day_month", "day_weekday", "shop"]
    data = {**OmegaConf.to_container(cfg.data), "categorical": ["day"]}
    kept = prepare_data(data, SEED, tmp_path / "levels")
    assert kept.categorical.names == ["day", "shop"]
    levels = kept.categorical.vocabularies[0]
    assert sorted(levels) == [f"2023-01-{d:02d}" for d in range(2, 17)]  # no 00:00:00.000000


def test_parquet_rows_score_alike_from_csv_text_parquet_and_pandas(parquet_model, tmp_path):
    cfg, _, rows, tmp = parquet_model
    model_dir = tmp / "model"
    expected = evaluate_scores(cfg)
    # CSV text, dates printed two ways
    for form in ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S"):
        text = rows.assign(day=rows["day"].dt.strftime(form))
        text.to_csv(tmp_path / "rows.csv", index=False)
        assert text["day"].iloc[0] == rows["day"].iloc[0].strftime(form)
        predicted = predict_cli(model_dir, tmp_path / "rows.csv", tmp_path / "p.csv")
        np.testing.assert_allclose(predicted["proba_yes"], expected, atol=1e-6, err_msg=form)
    # the Parquet file itself, through `mlpflow predict`
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    predicted = predict_cli(model_dir, tmp_path / "rows.parquet", tmp_path / "p.csv")
    np.testing.assert_allclose(predicted["proba_yes"], expected, atol=1e-6)
    # pd.read_parquet's frame (category and datetime columns) straight into the pyfunc model
    frame = pd.read_parquet(tmp_path / "rows.parquet")
    assert isinstance(frame["shop"].dtype, pd.CategoricalDtype)
    assert frame["day"].dtype.kind == "M"
    served = mlflow.pyfunc.load_model(str(model_dir)).predict(frame)
    np.testing.assert_allclose(served["proba_yes"], expected, atol=1e-6)
    # a date never seen in training scores differently: the dates above were matched
    unseen = mlflow.pyfunc.load_model(str(model_dir)).predict(
        frame.assign(day=pd.Timestamp("1999-01-01"))
    )
    assert not np.allclose(unseen["proba_yes"], expected, atol=1e-3)


def test_a_model_trained_on_dates_as_text_matches_timestamps(tmp_path: Path):
    """The other way round: dates in a CSV (Arrow reads them as dates) and pandas Timestamps."""
    from mlpflow.data.prepared import load_meta
    from mlpflow.serving.raw_rows import column_levels

    days = pd.date_range("2023-03-01", periods=6, freq="D")
    frame = pd.DataFrame({"day": np.tile(days.strftime("%Y-%m-%d"), 20), "x": np.arange(120) % 7})
    frame["y"] = np.tile([0, 1], 60)
    frame.to_csv(tmp_path / "t.csv", index=False)
    prepare_data(csv_data(tmp_path / "t.csv", "y", categorical=["day"]), 0, tmp_path / "out")
    meta = load_meta(tmp_path / "out")
    plan = next(column for column in meta.columns if column.name == "day")
    assert plan.role == "categorical" and plan.dtype.startswith(("date32", "timestamp"))
    cells = pd.Series([days[0], "2023-03-02 00:00:00", "2023-03-03T00:00", None, "2023-03-04"])
    assert column_levels(cells, plan.dtype) == [
        "2023-03-01", "2023-03-02", "2023-03-03", None, "2023-03-04"
    ]  # fmt: skip
    assert set(meta.categorical.vocabularies[0]) == set(days.strftime("%Y-%m-%d"))
