"""Resume an interrupted training: same checkpoint, same MLflow run, same result.

train keeps `<models>/resume.json` (config digest, MLflow store, prepared data's fingerprint,
run id, owner process) while it runs and removes it when it finishes. A later start of the same
config on the same data finds it next to `last.ckpt` and continues from there; any other config,
data (an edited table), or a finished run starts afresh.
The DVC path's models/ is fixed; `python -m mlpflow.train` keys its models dir by the config
digest (`keyed_models_dir`), so the same command finds its run whatever Hydra's run dir.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from mlpflow.config.compose import project_root
from mlpflow.errors import MlpflowError
from mlpflow.files import read_json, write_json
from mlpflow.model.checkpoint import last_checkpoint
from mlpflow.tracking.lineage import config_digest
from mlpflow.tracking.owner import is_alive, is_worker, this_process

STATE_FILE = "resume.json"  # the models dir's other files: model/checkpoint.py


class AlreadyRunning(MlpflowError):
    """The same config is training right now, in another live process."""


@dataclass(frozen=True)
class RunIdentity:
    """What an interrupted run must share with a new start to be continued by it."""

    config_digest: str
    store: str | None  # the tracking URI (None: tracking off): a run continues in its own store
    data: str  # prepare's fingerprint of the split arrays: the same config on another table


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path | None = None
    run_id: str | None = None


def identity(cfg: DictConfig, data: str) -> RunIdentity:
    """The identity of cfg's run on the data of fingerprint `data`."""
    from mlpflow.tracking.store import tracking_uri

    store = tracking_uri(cfg) if cfg.tracking.enabled else None
    return RunIdentity(config_digest(cfg), store, data)


def keyed_models_dir(cfg: DictConfig) -> Path:
    """<paths.checkpoints>/<data>-<config digest>: where this config's models always live."""
    return project_root() / cfg.paths.checkpoints / f"{cfg.data.name}-{config_digest(cfg)[:12]}"


def find(models_dir: str | Path, identity: RunIdentity) -> ResumePoint:
    """Where an interrupted run of this identity stopped; clears what cannot be resumed."""
    models = Path(models_dir)
    state_path, last = models / STATE_FILE, last_checkpoint(models)
    if state_path.exists():
        state = read_json(state_path)
        if all(state.get(key) == value for key, value in asdict(identity).items()):
            owner = state.get("owner")
            if owner and owner != this_process() and not is_worker() and is_alive(owner):
                raise AlreadyRunning(
                    f"this config is training now (process {owner}, models in {models}): "
                    "wait for it to end, or stop it and run the same command again to resume"
                )
            return ResumePoint(last if last.exists() else None, state.get("run_id"))
    if models.exists():
        shutil.rmtree(models)  # a finished or different run's files: never mix them in
    return ResumePoint()


def discard(models_dir: str | Path) -> ResumePoint:
    """Start afresh: an interrupted run that cannot be continued (its MLflow run is gone)."""
    shutil.rmtree(models_dir, ignore_errors=True)
    return ResumePoint()


def begin(models_dir: str | Path, identity: RunIdentity, run_id: str | None) -> None:
    state = {**asdict(identity), "run_id": run_id, "owner": this_process()}
    write_json(Path(models_dir) / STATE_FILE, state)


def finish(models_dir: str | Path) -> None:
    (Path(models_dir) / STATE_FILE).unlink(missing_ok=True)
