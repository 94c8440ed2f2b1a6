"""`mlflow models serve -m models:/NAME@champion --env-manager local` answers /invocations with
the predictions `mlpflow predict` writes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlpflow.cli import main
from mlpflow.serving.registry import register

from mlflow_helpers import Trained, free_port, raw_rows, serving, trained_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_runs(tmp_path_factory)


def invoke(url: str, frame: pd.DataFrame) -> tuple[int, dict]:
    body = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_served_model_answers_like_the_cli(trained: Trained, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    register(MlflowClient(trained.uri), trained.run_id, "served", "champion")
    rows = raw_rows(trained.prepared)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    main(
        [
            *("predict", "--model", "models:/served@champion", "--uri", trained.uri),
            *("--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "preds.csv")),
        ]
    )
    expected = pd.read_csv(tmp_path / "preds.csv")

    command = [
        *("mlflow", "models", "serve", "-m", "models:/served@champion", "--env-manager", "local"),
        *("--host", "127.0.0.1", "--port", str(free_port())),
    ]
    with serving(
        command, tmp_path / "serve.log", timeout=80, MLFLOW_TRACKING_URI=trained.uri
    ) as url:
        status, answer = invoke(url, rows)
        assert status == 200, answer
        served = pd.DataFrame(answer["predictions"])
        assert list(served.columns) == list(expected.columns)
        assert served["label"].tolist() == expected["label"].tolist()
        np.testing.assert_allclose(
            served[["proba_malignant", "proba_benign"]],
            expected[["proba_malignant", "proba_benign"]],
        )

        status, answer = invoke(url, rows.drop(columns=["mean radius"]))
        assert status == 400 and "mean radius" in answer["message"]
