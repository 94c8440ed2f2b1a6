from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from mlpflow.config.compose import compose
from mlpflow.config.schema import DataConfig
from mlpflow.data.build import prepare_dataset
from mlpflow.data.prepared import Meta, load_codes, load_split
from mlpflow.model.checkpoint import best_checkpoint, load_weights
from mlpflow.model.outputs import network_outputs, network_scores

REPO = Path(__file__).resolve().parents[1]
DATA_DEFAULTS = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / "_schema.yaml"))
BIN = Path(sys.executable).parent


def prepare_data(data: Any, seed: int, out: str | Path) -> Meta:
    """prepare as the stage runs it: the data keys given, conf/'s defaults for the rest."""
    if OmegaConf.is_config(data):
        data = OmegaConf.to_container(data)
    return prepare_dataset(DataConfig.parse({**DATA_DEFAULTS, **data}), seed, out)


def make_cfg(tmp_path: Path, *overrides: str, tracking: bool = True) -> DictConfig:
    """conf/ composed with overrides, every output under tmp_path, a tmp SQLite store."""
    quiet = [] if "callbacks=none" in overrides else ["callbacks.progress_bar=null"]
    cfg = compose([*overrides, *quiet])
    cfg.paths.prepared = str(tmp_path / "prepared")
    cfg.paths.models = str(tmp_path / "models")
    cfg.paths.reports = str(tmp_path / "reports")
    cfg.tracking.enabled = tracking
    cfg.tracking.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return cfg


@pytest.fixture
def cfg_factory(tmp_path: Path):
    return lambda *overrides, **kw: make_cfg(tmp_path, *overrides, **kw)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a user shell with the venv activated, without inherited MLflow state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def sh(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def copy_project(dest: Path) -> Path:
    """What a fresh clone holds (tracked and new files), made its own git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in listed.splitlines():
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    trainer = dest / "conf" / "trainer" / "default.yaml"  # keep the test short
    trainer.write_text(trainer.read_text().replace("max_epochs: 50", "max_epochs: 4"))
    sh("mlpflow", "compose", cwd=dest)
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=dest)
    return dest


def evaluate_scores(cfg: DictConfig) -> np.ndarray:
    """What evaluate scores: the checkpoint's network on the prepared test split."""
    weights = load_weights(best_checkpoint(cfg.paths.models))
    x, _ = load_split(cfg.paths.prepared, "test")
    codes = load_codes(cfg.paths.prepared, "test")
    outputs = network_outputs(weights.network(), torch.from_numpy(x), torch.from_numpy(codes))
    return network_scores(outputs, weights.spec).numpy()
