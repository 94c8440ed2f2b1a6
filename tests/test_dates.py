"""Date and time columns as features: the parts of a moment, which cells read as dates, the
prepare table's roles (dates, free text, day/month dates), and raw rows (date text, datetime64,
Timestamps, Parquet date32 and time-zone timestamps, missing cells) becoming exactly the inputs
prepare wrote, in each cross-validation fold too."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from test_locales import splits

from mlpflow.config.schema import CVConfig, DataConfig
from mlpflow.data.build import prepare_dataset
from mlpflow.data.dates import date_seconds, part_codes, part_values
from mlpflow.data.folds import HELDOUT, HELDOUT_ROWS, load_folds
from mlpflow.data.prepared import load_codes, load_meta, load_split
from mlpflow.errors import DataError
from mlpflow.evaluation.importance import column_groups
from mlpflow.serving.raw_rows import network_inputs

from conftest import DATA_DEFAULTS, REPO, prepare_data

SEED = 0


def csv_data(path: Path, target: str = "y", **keys: object) -> dict[str, object]:
    return {"name": "csv", "task": "auto", "path": str(path), "target": target, **keys}


# --- a moment's parts ---------------------------------------------------------------------------


def test_parts_of_a_moment_agree_with_pandas_across_leap_years_and_before_1970():
    rng = np.random.default_rng(SEED)
    seconds = rng.integers(-40 * 365 * 86400, 80 * 365 * 86400, 2000).astype(np.float64)
    seconds[:3] = [0.0, 951782400.0 + 86399, np.nan]  # 1970-01-01, 2000-02-29 23:59:59
    moments = pd.to_datetime(pd.Series(seconds), unit="s")
    expected = {
        "year": moments.dt.year,
        "month": moments.dt.month,
        "day": moments.dt.day,
        "weekday": moments.dt.day_of_week,
        "dayofyear": moments.dt.day_of_year,
        "hour": moments.dt.hour,
    }
    for part, values in expected.items():
        np.testing.assert_array_equal(part_values(seconds, part), values.to_numpy(float), part)
    np.testing.assert_allclose(part_values(seconds, "elapsed"), seconds / 86400)
    assert part_codes(seconds[:3], "month").tolist() == [0, 1, -1]  # Jan, Feb, missing


def test_iso_dates_read_as_moments_and_day_month_forms_never_do():
    utc = lambda *parts: (dt.datetime(*parts) - dt.datetime(1970, 1, 1)).total_seconds()  # noqa: E731
    assert date_seconds("2023-01-07") == utc(2023, 1, 7)
    assert date_seconds(" 2023-01-07 13:45 ") == utc(2023, 1, 7, 13, 45)
    assert date_seconds("2023-01-07T13:45:00.5Z") == utc(2023, 1, 7, 13, 45) + 0.5
    assert date_seconds("2023-01-07 13:45:00+02:00") == utc(2023, 1, 7, 11, 45)
    for text in ("03/04/2023", "2023-02-30", "13:45", "20230107", "January 7, 2023", "", None):
        assert math.isnan(date_seconds(text)), text


# --- the prepare table ------------------------------------------------------------------------


def test_prepare_plans_dates_as_parts_and_names_free_text_and_day_month_dates(tmp_path: Path):
    rng = np.random.default_rng(SEED)
    n = 300
    when = pd.Timestamp("2021-03-01") + pd.to_timedelta(rng.integers(0, 900 * 24, n), unit="h")
    frame = pd.DataFrame(
        {
            "stamp": when.strftime("%Y-%m-%d %H:%M:%S"),  # Arrow: timestamp
            "day": when.strftime("%Y-%m-%d"),  # Arrow: date32
            "shipped": when.strftime("%Y-%m-%dT%H:%M+01:00"),  # text: a zone Arrow leaves as is
            "kept": when.strftime("%Y-%m-%d"),
            "note": [f"parcel {i} arrived a little late" for i in range(n)],
            "code": [f"A{i:05d}" for i in range(n)],
            "local": when.strftime("%d/%m/%Y"),
            "y": rng.normal(size=n),
        }
    )
    frame.loc[[3, 4], "shipped"] = ["unknown", None]
    frame.to_csv(tmp_path / "t.csv", index=False)
    meta = prepare_data(csv_data(tmp_path / "t.csv", categorical=["kept"]), SEED, tmp_path / "p")
    plans = {plan.name: plan for plan in meta.columns}
    timed = ["year", "month", "day", "weekday", "dayofyear", "hour", "elapsed"]
    assert (plans["stamp"].role, plans["stamp"].parts) == ("date", timed)
    assert (plans["day"].role, plans["day"].dtype) == ("date", "date32[day]")
    assert plans["day"].parts == [part for part in timed if part != "hour"]
    assert plans["day"].action.startswith(
        "date parts: year, day, dayofyear, elapsed; month, weekday as levels; standard"
    )
    shipped = plans["shipped"]
    assert (shipped.role, shipped.dtype, shipped.missing) == ("date", "string", 2)
    assert "1 stray cells missing" in shipped.action
    assert plans["kept"].role == "categorical"  # data.categorical keeps a date as levels
    assert plans["note"].action.startswith("dropped: free text (300 distinct)")
    assert plans["code"].action.startswith("dropped: ID")
    assert plans["local"].role == "categorical"
    assert "day/month order unknown, write the dates as YYYY-MM-DD" in plans["local"].action
    assert meta.numeric.names[:4] == ["stamp_year", "stamp_day", "stamp_dayofyear", "stamp_elapsed"]
    assert meta.categorical.names[:3] == ["stamp_month", "stamp_weekday", "stamp_hour"]
    assert meta.numeric.indicators == ["shipped_year"]  # one per date column missing in train
    x_index, c_index = column_groups(meta)["shipped"]  # importance permutes the parts together
    assert len(x_index) == 5 and len(c_index) == 3


def test_a_date_part_named_like_a_column_is_refused_in_one_line(tmp_path: Path):
    days = pd.date_range("2022-01-01", periods=40).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"when": days, "when_year": np.arange(40) % 3, "y": np.arange(40) % 2})
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"date column 'when' becomes when_year, .* 'when_year'"):
        prepare_data(csv_data(tmp_path / "t.csv"), SEED, tmp_path / "p")


# --- raw rows: the inputs prepare wrote ---------------------------------------------------------


def assert_rows_give_the_test_split(meta, prepared: Path, rows: pd.DataFrame) -> None:
    x, codes = network_inputs(meta, rows, meta.numeric.estimator())
    np.testing.assert_allclose(x, load_split(prepared, "test")[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(codes, load_codes(prepared, "test"))


@pytest.fixture(scope="module")
def dated_csv(tmp_path_factory: pytest.TempPathFactory):
    """A CSV with a timestamp column (a missing cell among them), a date column as text with a
    stray cell, and a number; prepared; its test rows as the file has them."""
    tmp = tmp_path_factory.mktemp("dates")
    rng = np.random.default_rng(SEED)
    n = 400
    when = pd.Timestamp("2020-02-01") + pd.to_timedelta(rng.integers(0, 800 * 24 * 60, n), "min")
    frame = pd.DataFrame(
        {
            "when": when.strftime("%Y-%m-%d %H:%M:%S").astype(object),
            "day": when.strftime("%Y-%m-%d").astype(object),
            "x": rng.normal(size=n),
        }
    )
    frame["y"] = when.month.to_numpy() % 3 + when.day_of_week.to_numpy() / 7 + frame["x"]
    frame.loc[::17, "when"] = None
    frame.loc[5, "day"] = "n/k"
    frame.to_csv(tmp / "t.csv", index=False)
    meta = prepare_data(csv_data(tmp / "t.csv"), SEED, tmp / "p")
    rows = pd.read_csv(tmp / "t.csv", dtype=str, keep_default_na=False, na_values=[""])
    test = rows.iloc[splits(n, SEED)["test"]].drop(columns="y").reset_index(drop=True)
    assert test["when"].isna().any() and test["x"].notna().all()
    return meta, tmp / "p", test


def test_date_text_rows_give_the_prepared_inputs(dated_csv):
    meta, prepared, rows = dated_csv
    assert [plan.role for plan in meta.columns] == ["date", "date", "numeric"]
    assert_rows_give_the_test_split(meta, prepared, rows)


def test_datetime64_and_timestamp_cells_give_the_prepared_inputs(dated_csv):
    meta, prepared, rows = dated_csv
    as_datetime64 = rows.assign(
        when=pd.to_datetime(rows["when"]),
        day=pd.to_datetime(rows["day"], errors="coerce"),  # "n/k": NaT, as it was missing
        x=rows["x"].astype(float),
    )
    assert as_datetime64["when"].dtype.kind == "M"
    assert_rows_give_the_test_split(meta, prepared, as_datetime64)
    as_objects = as_datetime64.astype(object).assign(
        day=[None if pd.isna(d) else d.date() for d in as_datetime64["day"]]
    )
    assert_rows_give_the_test_split(meta, prepared, as_objects)


@pytest.mark.parametrize("kind", ["date32", "timestamp with a zone"])
def test_parquet_date_columns_give_the_prepared_inputs(tmp_path: Path, kind: str):
    rng = np.random.default_rng(SEED)
    n = 200
    when = pd.Timestamp("2022-06-01") + pd.to_timedelta(rng.integers(0, 500 * 24, n), "h")
    if kind == "date32":
        cells = pd.Series(when.date, dtype=object)  # pyarrow writes date32
    else:
        cells = pd.Series(when.tz_localize("Europe/Paris", ambiguous="NaT", nonexistent="NaT"))
    cells[::13] = None
    frame = pd.DataFrame({"when": cells, "x": rng.normal(size=n)})
    frame["y"] = when.month.to_numpy() + frame["x"]
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    meta = prepare_data(csv_data(tmp_path / "t.parquet"), SEED, tmp_path / "p")
    plan = meta.columns[0]
    assert plan.role == "date" and plan.dtype.startswith(("date32", "timestamp"))
    assert ("hour" in plan.parts) == (kind != "date32")
    rows = pd.read_parquet(tmp_path / "t.parquet")
    test = rows.iloc[splits(n, SEED)["test"]].drop(columns="y").reset_index(drop=True)
    assert_rows_give_the_test_split(meta, tmp_path / "p", test)


def test_a_missing_date_the_model_cannot_impute_is_named_by_its_column(tmp_path: Path):
    """With data.nan_policy=error the served model names the raw date column, not a part."""
    when = pd.date_range("2021-01-01", periods=120, freq="D")
    frame = pd.DataFrame({"when": when, "x": np.arange(120.0), "y": when.month % 2})
    frame.to_csv(tmp_path / "t.csv", index=False)
    meta = prepare_data(csv_data(tmp_path / "t.csv", nan_policy="error"), SEED, tmp_path / "p")
    rows = frame.drop(columns="y").head(3).astype(object)
    rows.loc[1, "when"] = None
    with pytest.raises(DataError, match=r"in 1 row\(s\), columns when; .*nan_policy=error"):
        network_inputs(meta, rows, meta.numeric.estimator())


def test_each_fold_derives_the_parts_of_its_heldout_rows_as_the_served_model_does(dated_csv):
    """cv=kfold: a fold fits its own numeric transform of the parts; its held-out rows, served
    raw, give the inputs it wrote."""
    _, prepared, _ = dated_csv
    table = prepared.parent / "t.csv"
    kfold = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "cv" / "kfold.yaml"))
    data = DataConfig.parse({**DATA_DEFAULTS, **csv_data(table)})
    out = prepared.parent / "folded"
    prepare_dataset(data, SEED, out, CVConfig.parse({**kfold, "folds": 3}))
    rows = pd.read_csv(table, dtype=str, keep_default_na=False, na_values=[""])
    folds = load_folds(out)
    assert folds is not None and len(folds.dirs) == 3
    means = set()
    for directory in folds.dirs:
        meta = load_meta(directory)
        held = rows.iloc[np.load(directory / HELDOUT_ROWS)].drop(columns="y")
        x, codes = network_inputs(meta, held, meta.numeric.estimator())
        np.testing.assert_allclose(x, load_split(directory, HELDOUT)[0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(codes, load_codes(directory, HELDOUT))
        means.add(meta.numeric.fitted["mean_"][meta.numeric.names.index("when_elapsed")])
    assert len(means) == 3
