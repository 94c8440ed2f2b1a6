"""Lineage: from a run, and from a registered model, back to the commit, data and config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mlpflow.config.compose import compose
from mlpflow.serving.registry import register
from mlpflow.tracking.lineage import config_digest, dvc_output_md5, lineage_tags

from conftest import REPO, subprocess_env
from mlflow_helpers import Trained, trained_runs


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_runs(tmp_path_factory)


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, env=subprocess_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_registered_model_leads_back_to_commit_data_and_config(trained: Trained, tmp_path):
    client = MlflowClient(trained.uri)
    register(client, trained.run_id, "lineage", "champion")
    version = client.get_model_version_by_alias("lineage", "champion")

    tags = client.get_run(version.run_id).data.tags
    head = run("git", "rev-parse", "HEAD", cwd=REPO).strip()
    assert tags["mlflow.source.git.commit"] == head == version.tags["git.commit"]
    assert tags["git.dirty"] in ("True", "False")
    meta = yaml.safe_load((trained.prepared / "meta.json").read_text())
    assert tags["data.fingerprint"] == meta["fingerprint"] == version.tags["data.fingerprint"]
    assert tags["mlpflow.version"] == version.tags["mlpflow.version"]

    local = client.download_artifacts(version.run_id, "config/config.yaml", str(tmp_path))
    config = yaml.safe_load(Path(local).read_text())
    assert config["optimizer"]["lr"] == trained.cfg.optimizer.lr
    assert config["model"]["hidden_dims"] == list(trained.cfg.model.hidden_dims)
    assert config["paths"]["prepared"] == trained.cfg.paths.prepared


def test_data_fingerprint_is_equal_for_equal_prepared_data(trained: Trained):
    client = MlflowClient(trained.uri)
    first, second = (client.get_run(r).data.tags for r in (trained.run_id, trained.other_run_id))
    assert first["data.fingerprint"] == second["data.fingerprint"]  # prepared twice, same data
    assert first["config.hash"] != second["config.hash"]  # the learning rates differ


def test_config_digest_ignores_where_outputs_go_and_nothing_else():
    """The same command finds its interrupted run again: a new Hydra run dir, another store or
    callbacks' dirpath (interpolated from paths.models) leave the digest as it is."""
    base = compose()
    moved = compose(["paths.models=/elsewhere/models", "tracking.uri=sqlite:///other.db"])
    assert moved.callbacks.model_checkpoint.dirpath != base.callbacks.model_checkpoint.dirpath
    assert config_digest(moved) == config_digest(base)
    assert config_digest(compose(["optimizer.lr=0.002"])) != config_digest(base)
    assert config_digest(compose(["seed=1"])) != config_digest(base)


MAKE_DATA = """
from pathlib import Path
out = Path("data/prepared")
(out / "nested").mkdir(parents=True, exist_ok=True)
(out / "X_train.npy").write_bytes(bytes(range(256)) * 10)
(out / "nested" / "meta.json").write_text('{"task": "binary"}')
"""


@pytest.fixture
def dvc_project(tmp_path: Path) -> Path:
    """A git + DVC project whose one stage writes data/prepared, after `dvc repro`."""
    (tmp_path / "make_data.py").write_text(MAKE_DATA)
    stage = {"cmd": "python make_data.py", "deps": ["make_data.py"], "outs": ["data/prepared"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"prepare": stage}}))
    run("git", "init", "-q", cwd=tmp_path)
    run("dvc", "init", "-q", cwd=tmp_path)
    run("dvc", "repro", "-q", cwd=tmp_path)
    return tmp_path


def test_dvc_hash_of_prepared_data_comes_from_dvc_lock_while_it_is_current(
    dvc_project: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(dvc_project)
    lock = yaml.safe_load((dvc_project / "dvc.lock").read_text())
    recorded = lock["stages"]["prepare"]["outs"][0]["md5"]
    assert dvc_output_md5(Path("data/prepared")) == recorded
    assert dvc_output_md5(dvc_project / "data" / "prepared") == recorded  # absolute path too

    cfg = compose()
    cfg.paths.prepared = "data/prepared"
    assert lineage_tags(cfg, "binary", "")["data.dvc_md5"] == recorded

    assert dvc_output_md5(Path("data/other")) is None  # not a DVC output
    (dvc_project / "data" / "prepared" / "nested" / "meta.json").write_text("{}")
    assert dvc_output_md5(Path("data/prepared")) is None  # changed since dvc.lock: no stale tag
    assert "data.dvc_md5" not in lineage_tags(cfg, "binary", "")


def test_git_dirty_counts_new_code_and_dvc_experiment_name_is_tagged(
    dvc_project: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(dvc_project)
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    run(*git, "add", "-A", cwd=dvc_project)
    run(*git, "commit", "-qm", "init", cwd=dvc_project)
    cfg = compose()
    tags = lineage_tags(cfg, "binary", "")
    assert tags["git.dirty"] == "False"
    assert (
        tags["mlflow.source.git.commit"] == run("git", "rev-parse", "HEAD", cwd=dvc_project).strip()
    )
    assert "dvc.exp_name" not in tags

    (dvc_project / "src").mkdir()
    (dvc_project / "src" / "new_module.py").write_text("")  # untracked code changes results
    monkeypatch.setenv("DVC_EXP_NAME", "bumpy-lark")  # what `dvc exp run` sets for a stage
    tags = lineage_tags(cfg, "binary", "")
    assert tags["git.dirty"] == "True"
    assert tags["dvc.exp_name"] == "bumpy-lark"
