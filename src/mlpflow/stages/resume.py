"""Resume a killed training: same checkpoint, same MLflow run, same result.

train keeps `<models>/resume.json` (config hash + MLflow run id) while it runs and removes it
when it finishes. A later start with the same config finds it next to `last.ckpt` and continues
from there; any other config, or a finished run, starts afresh.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mlpflow.files import read_json, write_json

STATE_FILE = "resume.json"
LAST_CHECKPOINT = "last.ckpt"


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path | None = None
    run_id: str | None = None


def find(models_dir: str | Path, config_hash: str) -> ResumePoint:
    """Where an interrupted run of this config stopped; clears what cannot be resumed."""
    models = Path(models_dir)
    state_path, last = models / STATE_FILE, models / LAST_CHECKPOINT
    if state_path.exists():
        state = read_json(state_path)
        if state.get("config_hash") == config_hash:
            return ResumePoint(last if last.exists() else None, state.get("run_id"))
    if models.exists():
        shutil.rmtree(models)  # a finished or different run's files: never mix them in
    return ResumePoint()


def begin(models_dir: str | Path, config_hash: str, run_id: str | None) -> None:
    write_json(Path(models_dir) / STATE_FILE, {"config_hash": config_hash, "run_id": run_id})


def finish(models_dir: str | Path) -> None:
    (Path(models_dir) / STATE_FILE).unlink(missing_ok=True)
