from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from mlpflow.config import compose

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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
