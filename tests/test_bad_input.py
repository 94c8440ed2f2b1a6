"""Every bad input a user can give: exit code != 0, one line naming what and how to fix,
no traceback, and no output left looking complete."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mlpflow.files import write_json
from mlpflow.stages import prepare

from conftest import REPO, make_cfg, subprocess_env

pytestmark = pytest.mark.slow
HEADER = "a,b,c,y\n"


def rows(n: int, make) -> str:
    return HEADER + "".join(make(i) for i in range(n))


GOOD = rows(40, lambda i: f"{i * 0.5 + 3},{i % 7},{i * 1.5},{i % 2}\n")
# name -> (what to write as data.csv, extra overrides, words the message must contain)
CSV_CASES = {
    "missing file": (None, [], ["not found", "data.path"]),
    "empty file": ("", [], ["empty"]),
    "missing target": (GOOD, ["data.target=label"], ["label", "a, b, c, y"]),
    "no usable column": (
        rows(40, lambda i: f"{i},x{i},7,{i % 2}\n"),
        [],
        ["no usable feature column", "a (dropped: row number)", "b (dropped: ID", "constant"],
    ),
    "numeric on text": (
        rows(40, lambda i: f"{i * 0.5},x{i % 3},{i * 1.5},{i % 2}\n"),
        ["data.numeric=[b]"],
        ["data.numeric lists 'b'", "40 of its 40 cells are not numbers"],
    ),
    "categorical names no column": (GOOD, ["data.categorical=[colour]"], ["colour", "a, b, c"]),
    "nan in features, nan_policy=error": (
        rows(40, lambda i: f"{i * 0.5},{'' if i == 3 else i % 7},{i * 1.5},{i % 2}\n"),
        ["data.nan_policy=error"],
        ["missing values in numeric or date columns: b (1)", "data.nan_policy=median"],
    ),
    "single class": (rows(40, lambda i: f"{i * 0.5},{i % 7},{i * 1.5},1\n"), [], ["single class"]),
    "one class left with a target": (
        rows(40, lambda i: f"{i * 0.5},{i % 7},{i * 1.5},{'' if i % 2 else 1}\n"),
        [],
        ["single class '1'"],
    ),
    "tiny dataset": (rows(3, lambda i: f"{i * 0.5},{i % 7},{i * 1.5},{i % 2}\n"), [], ["rows"]),
    "more folds than rows of a class": (
        GOOD,
        ["cv=kfold", "cv.folds=20"],
        ["cv.folds=20 is more than the", "non-test rows of class", "lower cv.folds"],
    ),
    "cv.group names no column": (
        GOOD,
        ["cv=kfold", "cv.group=site"],
        ["cv.group='site'", "a, b, c"],
    ),
    "fewer groups than folds": (
        GOOD,
        ["cv=kfold", "cv.group=b", "cv.folds=10"],
        ["cv.group='b' has", "distinct groups", "fewer than cv.folds=10"],
    ),
    "cv.group is the target": (GOOD, ["cv=kfold", "cv.group=y"], ["cv.group='y' is the target"]),
    "a row weight missing": (
        rows(40, lambda i: f"{i * 0.5},{'' if i == 5 else i % 7},{i * 1.5},{i % 2}\n"),
        ["data.weight=b"],
        ["data.weight='b' is missing on 1 of the 40 rows", "fill in their weights"],
    ),
    "log1p of a target <= -1": (
        rows(40, lambda i: f"{i * 0.5 + 3},{i % 7},{i * 1.5},{i * 0.37 - 2}\n"),
        ["data.target_transform=log1p"],
        ["data.target_transform=log1p needs every target > -1", "'y' has 3 values <= -1"],
    ),
    "target transform of classes found by task auto": (
        GOOD,
        ["data.target_transform=quantile"],
        ["data.target_transform=quantile", "task is binary", "data.target_transform=none"],
    ),
}
CONFIG_CASES = {
    "auto threshold of a multiclass task": (
        ["data=wine", "evaluate.threshold=auto"],
        ["evaluate.threshold=auto", "the task is multiclass", "evaluate.threshold=0.5"],
    ),
    "unknown group option": (["optimizer=rmsprop"], ["optimizer=rmsprop", "sgd, adam, adamw, gd"]),
    "wrong type": (["optimizer.lr=fast"], ["optimizer.lr", "number"]),
    "negative lr": (["optimizer.lr=-0.1"], ["optimizer.lr", "> 0"]),
    "empty hidden_dims": (["model.hidden_dims=[]"], ["model.hidden_dims", "non-empty"]),
    "loss/task mismatch": (["data=digits", "loss=bce"], ["loss=bce", "loss=cross_entropy"]),
    "a column numeric and categorical": (
        [
            "data=csv",
            "data.path=t.csv",
            "data.target=y",
            "data.numeric=[a]",
            "data.categorical=[a]",
        ],
        ["data.categorical and data.numeric both list a"],
    ),
    "unknown target transform": (
        ["data.target_transform=log"],
        ["data.target_transform='log'", "none, log1p, quantile"],
    ),
    "target transform of classes": (
        ["data=digits", "data.target_transform=log1p"],
        ["data.target_transform=log1p", "task is multiclass", "data.target_transform=none"],
    ),
    "min_category_count below 1": (["data.min_category_count=0"], ["data.min_category_count=0"]),
    "class weights of a regression": (
        ["data=diabetes", "loss.class_weight=balanced"],
        ["loss.class_weight", "regression", "drop it"],
    ),
    "class weight that is not a weight": (
        ["loss.class_weight=heavy"],
        ["loss.class_weight='heavy'", "none, balanced or {class: weight}"],
    ),
    "no train data": (["data.val_size=0.5", "data.test_size=0.5"], ["leaves no train data"]),
    "unknown cv.name": (["cv=kfold", "cv.name=loo"], ["cv.name='loo'", "none, kfold"]),
    "a single fold": (["cv=kfold", "cv.folds=1"], ["cv.folds=1", ">= 2", "cv.folds=5"]),
    "no repeat": (["cv=kfold", "cv.repeats=0"], ["cv.repeats=0", ">= 1"]),
    "no fold at once": (["cv=kfold", "cv.n_jobs=0"], ["cv.n_jobs=0", ">= 1"]),
    "refit neither": (["cv=kfold", "cv.refit=maybe"], ["cv.refit='maybe'", "true or false"]),
    "key not in the config": (
        ["trainer.limit_val_batches=0"],
        ["trainer.limit_val_batches", "+trainer.limit_val_batches=..."],
    ),
    "validation off": (["+trainer.limit_val_batches=0"], ["limit_val_batches", "never validates"]),
    "validation after the last epoch": (
        ["trainer.max_epochs=5", "+trainer.check_val_every_n_epoch=10"],
        ["check_val_every_n_epoch=10", "never validates"],
    ),
}


# Overrides of the Hydra entry that Hydra itself reports as a search path or a struct error.
HYDRA_CASES = {
    "unknown option": (["model=foo"], ["model=foo", "no such model option", "mlp"]),
    "unknown option in a sweep": (["-m", "optimizer=adam,sgdd"], ["optimizer=sgdd", "sgd, gd"]),
    "misspelt key": (["optimizer.lrr=0.1"], ["optimizer.lrr", "optimizer has: lr, "]),
    "unknown group": (["foo.bar=1"], ["foo.bar", "top-level keys are", "model"]),
    "key of another option": (["loss.pos_weight=75"], ["loss.pos_weight", "add loss=bce"]),
    "option added to loss=auto": (["+loss.pos_weight=75"], ["loss=auto takes no options"]),
    "sweep without -m": (["optimizer.lr=0.1,0.01"], ["is a sweep", "-m"]),
    "a single fold": (["cv=kfold", "cv.folds=1"], ["cv.folds=1", ">= 2"]),
}


def test_a_class_weight_for_a_class_the_target_lacks_stops_before_training(tmp_path: Path):
    result = python_module(
        "mlpflow.train", "loss.class_weight={benign: 1, cancer: 3}", "tracking=none", cwd=tmp_path
    )
    assert_one_clear_line(result, ["loss.class_weight", "'cancer'", "malignant, benign"])
    assert result.returncode == 2
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("case", HYDRA_CASES)
def test_hydra_override_errors(case: str, tmp_path: Path):
    overrides, words = HYDRA_CASES[case]
    result = python_module("mlpflow.train", *overrides, cwd=tmp_path)
    assert_one_clear_line(result, words)
    assert result.returncode == 2
    assert result.stdout.strip() == ""  # stopped before the config tree, let alone training


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return python_module("mlpflow", *args, cwd=cwd)


def python_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python", "-m", module, *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess, words: list[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("error: ")
    for word in words:
        assert word in line, (word, line)
    return line


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_errors(case: str, tmp_path: Path):
    overrides, words = CONFIG_CASES[case]
    params = tmp_path / "params.yaml"
    result = cli("compose", *overrides, "--output", str(params), cwd=REPO)
    assert_one_clear_line(result, words)
    assert not params.exists()


@pytest.mark.parametrize("case", CSV_CASES)
def test_data_errors(case: str, tmp_path: Path):
    content, overrides, words = CSV_CASES[case]
    table = tmp_path / "data.csv"
    if content is not None:
        table.write_text(content)
    cfg = make_cfg(tmp_path, "data=csv", f"data.path={table}", "data.target=y", *overrides)
    params = tmp_path / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    assert_one_clear_line(cli("stage", "prepare", "--params", str(params), cwd=tmp_path), words)
    assert not (Path(cfg.paths.prepared) / "meta.json").exists()


def test_missing_prepared_data_names_commands_that_exist(tmp_path: Path):
    cfg = make_cfg(tmp_path, tracking=False)
    params = tmp_path / "params.yaml"
    OmegaConf.save(cfg, params, resolve=True)
    line = assert_one_clear_line(cli("stage", "train", "--params", str(params), cwd=tmp_path), [])
    commands = re.findall(r"`([^`]+)`", line)
    assert "no prepared data" in line and commands
    for command in commands:  # each command the message suggests runs
        help_run = subprocess.run(
            [*command.split(), "--help"], cwd=tmp_path, env=subprocess_env(), capture_output=True
        )
        assert help_run.returncode == 0, (command, help_run.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def prepared(tmp_path: Path):
    cfg = make_cfg(tmp_path)
    prepare.run(cfg)
    return cfg


def test_unreachable_tracking_server_stops_before_training(prepared, tmp_path: Path):
    uri = f"http://127.0.0.1:{free_port()}"
    prepared.tracking.uri = uri
    params = tmp_path / "params.yaml"
    OmegaConf.save(prepared, params, resolve=True)
    line = assert_one_clear_line(
        cli("stage", "train", "--params", str(params), cwd=tmp_path),
        ["unreachable", "tracking.required=false"],
    )
    assert uri in line
    assert not Path(prepared.paths.models).exists()
    assert not (Path(prepared.paths.reports) / "train.json").exists()


def test_corrupt_checkpoint_at_evaluate(prepared, tmp_path: Path):
    models, reports = Path(prepared.paths.models), Path(prepared.paths.reports)
    models.mkdir()
    (models / "best.ckpt").write_bytes(b"not a checkpoint at all")
    write_json(reports / "train.json", {"run_id": None})
    params = tmp_path / "params.yaml"
    OmegaConf.save(prepared, params, resolve=True)
    assert_one_clear_line(
        cli("stage", "evaluate", "--params", str(params), cwd=tmp_path), ["best.ckpt"]
    )
    assert not (reports / "metrics.json").exists()


def test_predict_csv_with_another_column_set(prepared, tmp_path: Path):
    from mlpflow.stages import train

    prepared.tracking.enabled = False
    prepared.trainer.max_epochs = 1
    train.run(prepared)
    rows = tmp_path / "rows.csv"
    rows.write_text("mean radius,mean texture\n14.1,19.3\n")
    output = tmp_path / "preds.csv"
    checkpoint = Path(prepared.paths.models) / "best.ckpt"
    result = cli(
        "predict",
        "--model",
        str(checkpoint),
        "--prepared",
        prepared.paths.prepared,
        "--input",
        str(rows),
        "--output",
        str(output),
        cwd=tmp_path,
    )
    assert_one_clear_line(result, ["mean smoothness", "expected"])
    assert not output.exists()
