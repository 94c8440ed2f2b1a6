"""A feature column whose values determine the target: flagged by prepare and on the run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf
from sklearn.datasets import load_breast_cancer, load_diabetes

from mlpflow.data.leakage import determining_columns
from mlpflow.data.prepared import load_meta
from mlpflow.files import read_json
from mlpflow.stages import train

from conftest import make_cfg, subprocess_env


def no_codes(rows: int) -> np.ndarray:
    return np.zeros((rows, 0), dtype=np.int64)


def test_real_columns_do_not_determine_the_target() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    names = [f"f{i}" for i in range(x.shape[1])]
    assert determining_columns(x, no_codes(len(y)), y, names, [], 2) == []
    x, y = load_diabetes(return_X_y=True)
    names = [f"f{i}" for i in range(x.shape[1])]
    assert determining_columns(x, no_codes(len(y)), y, names, [], None) == []


def test_a_copy_a_threshold_and_a_level_map_of_the_target_are_found() -> None:
    x, _ = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, len(x))  # three classes no real column knows
    copy = y.astype(float)
    threshold = np.where(y == 0, rng.uniform(0, 1, len(y)), rng.uniform(2, 3, len(y))) + y
    features = np.c_[x[:, :3], copy, threshold]
    names = ["f0", "f1", "f2", "copy", "threshold"]
    codes = np.c_[(y + 1) % 3, rng.integers(0, 4, len(y))]  # a relabelled copy; noise
    found = determining_columns(features, codes, y, names, ["level_map", "noise"], 3)
    assert found == ["copy", "threshold", "level_map"]


def test_a_regression_target_computed_from_a_column_is_found() -> None:
    x, y = load_diabetes(return_X_y=True)
    features = np.c_[x, np.log(y), np.log(y) + np.random.default_rng(0).normal(0, 0.3, len(y))]
    names = [*(f"f{i}" for i in range(x.shape[1])), "log_target", "noisy_log_target"]
    assert determining_columns(features, no_codes(len(y)), y, names, [], None) == ["log_target"]


@pytest.mark.slow
def test_prepare_warns_once_and_the_run_is_tagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 2, n)
    lines = ["a,b,outcome_code,y"]
    lines += [
        f"{rng.normal():.4f},{rng.normal() + y[i]:.4f},{'won' if y[i] else 'lost'},{y[i]}"
        for i in range(n)
    ]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(lines) + "\n")
    cfg = make_cfg(
        tmp_path, "data=csv", f"data.path={table}", "data.target=y", "trainer.max_epochs=1"
    )
    params = tmp_path / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    result = subprocess.run(
        ["python", "-m", "mlpflow", "stage", "prepare", "--params", str(params)],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "determines the target" in line]
    assert len(warnings) == 1 and "'outcome_code'" in warnings[0], result.stderr
    assert "'b'" not in warnings[0]  # predictive, not determining
    assert load_meta(cfg.paths.prepared).schema["determines_target"] == ["outcome_code"]

    train.run(cfg)
    run_id = read_json(Path(cfg.paths.reports) / "train.json")["run_id"]
    tags = MlflowClient(cfg.tracking.uri).get_run(run_id).data.tags
    assert tags["data.determines_target"] == "outcome_code"
