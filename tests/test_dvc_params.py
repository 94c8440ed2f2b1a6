"""Every key of params.yaml reruns the stages that read it, and only those (`dvc status`).

The keys come from params.yaml (conf/ composed), so a key or group added to conf/ is checked
without an edit here; a group nobody classified below fails with its name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.repo import Repo
from mlflow import MlflowClient

from conftest import copy_project, sh

pytestmark = pytest.mark.slow

ALL = frozenset({"prepare", "train", "evaluate"})
TRAIN = frozenset({"train"})
# Which stages read each key (first matching prefix wins), and why.
READERS: list[tuple[str, frozenset[str]]] = [
    ("seed", ALL),  # the split, the initial weights, the importance permutations
    ("data.name", ALL),  # prepare's source; the run's and the test dataset's names
    ("data.", frozenset({"prepare", "train"})),  # prepare's input; train's run records it
    ("cv.", frozenset({"prepare"})),  # the folds; train and evaluate read them from folds.json
    ("paths.prepared", ALL),  # prepare writes it, train and evaluate read it
    ("paths.", frozenset({"train", "evaluate"})),
    ("evaluate.threshold", frozenset({"train", "evaluate"})),  # train's val accuracy/F1
    ("evaluate.", frozenset({"evaluate"})),  # only evaluate's reports: no retraining
    ("tracking.", frozenset({"train", "evaluate"})),
    *(
        (f"{group}.", TRAIN)
        for group in (
            "loader",
            "model",
            "loss",
            "regularization",
            "optimizer",
            "scheduler",
            "trainer",
            "callbacks",
            "monitor",
        )
    ),
]


def readers(key: str) -> frozenset[str]:
    for prefix, stages in READERS:
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return stages
    raise AssertionError(f"params.yaml key {key!r}: add which stages read it to READERS")


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        return [pair for key, value in node.items() for pair in leaves(value, f"{prefix}{key}.")]
    return [(prefix[:-1], node)]


def changed(key: str, value: Any) -> Any:
    """Another value of the same kind (dvc status compares values, it does not validate them)."""
    if key == "data.source":  # a templated dep: another file that exists
        return "conf/data/diabetes.yaml"
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value, "changed"]
    if isinstance(value, dict):
        return {"changed": 1}
    return "changed" if value is None else f"{value}-changed"


def set_key(params: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


def stale_stages(project: Path) -> set[str]:
    with Repo(str(project)) as repo:
        return {name.split(":")[-1] for name in repo.status()}


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone after `dvc repro`; the status test leaves it so, the last test edits it."""
    project = copy_project(tmp_path_factory.mktemp("dvc-params") / "project")
    sh("dvc", "repro", cwd=project)
    return project


def test_each_param_reruns_exactly_the_stages_that_read_it(reproduced: Path) -> None:
    project = reproduced
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    keys = leaves(params)
    assert {key for key, _ in keys} >= {"data.numeric_transform", "data.soft_clip", "seed"}
    assert stale_stages(project) == set()

    wrong = {}
    for key, value in keys:
        edited = yaml.safe_load(original)
        set_key(edited, key, changed(key, value))
        params_file.write_text(yaml.safe_dump(edited, sort_keys=False))
        if (stale := stale_stages(project)) != readers(key):
            wrong[key] = sorted(stale)
    params_file.write_text(original)
    assert wrong == {}, f"dvc status after changing each key (expected: READERS): {wrong}"


def test_an_evaluate_setting_reruns_evaluate_alone_and_tags_the_run(reproduced: Path) -> None:
    project = reproduced
    run_id = json.loads((project / "reports" / "train.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert "evaluate.calibration_bins" not in run.data.params  # not train's: it cannot change
    assert run.data.params["evaluate.threshold"] == "0.5"
    assert run.data.tags["evaluate.calibration_bins"] == "10"

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["calibration_bins"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh("dvc", "repro", cwd=project)
    assert "Running stage 'evaluate'" in out and "Running stage 'train'" not in out
    assert client.get_run(run_id).data.tags["evaluate.calibration_bins"] == "5"
    calibration = json.loads((project / "reports" / "plots" / "calibration.json").read_text())
    assert 2 <= len(calibration["calibration"]) <= 5
