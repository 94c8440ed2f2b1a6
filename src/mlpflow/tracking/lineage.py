"""What identifies a run and leads back from it: the flattened config, its hash, the run name,
and the lineage tags (git commit, data fingerprint, DVC hash, DVC experiment)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from mlpflow import __version__
from mlpflow.config.compose import project_root


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as dotted keys, for MLflow params (lists kept as their repr)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The params of train's run: the flattened config but evaluate's own settings. Those shape
    only evaluate's reports and change without retraining (`dvc repro` reruns evaluate alone),
    so evaluate tags the run with them (`evaluation_tags`); MLflow params cannot change.
    `evaluate.threshold` stays a param: train scores its validation split with it."""
    return {key: value for key, value in flatten(cfg).items() if not _evaluate_only(key)}


def evaluation_tags(cfg: DictConfig) -> dict[str, str]:
    """evaluate's own settings as tags on the run it evaluates: the latest evaluation's."""
    return {key: str(value) for key, value in flatten(cfg).items() if _evaluate_only(key)}


def _evaluate_only(key: str) -> bool:
    return key.startswith("evaluate.") and key != "evaluate.threshold"


def config_digest(cfg: DictConfig) -> str:
    """Hash of what determines the result: everything but where files and runs go (paths,
    tracking, the callbacks' `dirpath`, which interpolates paths.models, and cv.n_jobs: how many
    folds train at once). It identifies an interrupted run: the same command finds it again
    whatever its output directory."""
    keep = {
        key: value
        for key, value in flatten(cfg).items()
        if not key.startswith(("paths.", "tracking."))
        and not key.endswith(".dirpath")
        and key != "cv.n_jobs"
    }
    return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def config_hash(cfg: DictConfig) -> str:
    """The digest's first 6 characters: for run names and the `config.hash` tag."""
    return config_digest(cfg)[:6]


def run_name(cfg: DictConfig) -> str:
    """Readable and explicit: mlp128x64-relu-bce-l2-adam-1a2b3c, tabm32x2x512-relu-... (k
    members x blocks x width); MLflow's random names collide."""
    if cfg.tracking.get("run_name"):
        return str(cfg.tracking.run_name)
    model = cfg.model
    if model.get("name", "mlp") == "tabm":
        network = f"tabm{model.k}x{model.n_blocks}x{model.d_block}"
    else:
        network = "mlp" + "x".join(str(w) for w in model.hidden_dims)
    parts = [
        network,
        cfg.model.activation,
        cfg.loss.name,
        cfg.regularization.name,
        cfg.optimizer.name,
        config_hash(cfg),
    ]
    return "-".join(str(p) for p in parts)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=project_root()
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# With data.weight, what its weights weigh (docs/math.md): every loss and metric logged, not
# evaluate's plots, figures and permutation importance.
WEIGHTED_METRICS = "train/loss, val/*, test/*, heldout/*, oof/*, cv/*"


def lineage_tags(cfg: DictConfig, task: str, fingerprint: str) -> dict[str, str]:
    """Tags that lead from a run back to its code, data and config."""
    tags = {
        "mlpflow.version": __version__,
        "data.name": str(cfg.data.name),
        "data.fingerprint": fingerprint,
        "task": task,
        "config.hash": config_hash(cfg),
        "config.digest": config_digest(cfg),
    }
    if (weight := cfg.data.get("weight")) is not None:
        tags["metrics.weighted"] = f"{WEIGHTED_METRICS}, by data.weight={weight}"
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        # Dirty: tracked files changed, or new (not ignored) files where the code and config live.
        changed = _git("status", "--porcelain", "--untracked-files=no")
        new_code = _git("ls-files", "--others", "--exclude-standard", "--", "src", "conf")
        tags["git.dirty"] = str(bool(changed or new_code))
    dvc_md5 = dvc_output_md5(Path(cfg.paths.prepared))
    if dvc_md5:
        tags["data.dvc_md5"] = dvc_md5
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def dvc_output_md5(path: Path, lock: Path = Path("dvc.lock")) -> str | None:
    """The md5 that dvc.lock records for the output at `path`, if it matches the files there now.

    DVC runs a stage in the directory of dvc.yaml, where dvc.lock lives. The hash is re-derived
    from the files as DVC 3 does it (md5 of the sorted JSON list of file md5s, plus ".dir"), so a
    stale lock (data prepared again outside DVC) never tags a run with another data version.
    """
    try:
        stages = yaml.safe_load(lock.read_text())["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    target = path.resolve()
    for stage in stages.values():
        for out in stage.get("outs", []):
            if (lock.parent / out["path"]).resolve() == target:
                recorded = out.get("md5")
                return recorded if recorded and recorded == _dvc_md5(target) else None
    return None


def _dvc_md5(path: Path) -> str | None:
    if path.is_file():
        return _file_md5(path)
    if not path.is_dir():
        return None
    entries = sorted(
        (
            {"md5": _file_md5(f), "relpath": f.relative_to(path).as_posix()}
            for f in path.rglob("*")
            if f.is_file()
        ),
        key=lambda entry: entry["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def column_tags(columns: list[Any]) -> dict[str, str]:
    """`data.<role>` tags: which raw columns were numeric, boolean, categorical, or dropped
    (and why), searchable in the MLflow UI."""
    tags: dict[str, list[str]] = {}
    for column in columns:
        shown = column.name
        if column.role == "drop":
            shown += f" ({column.action.removeprefix('dropped: ').split(' (')[0]})"
        tags.setdefault(f"data.{column.role}", []).append(shown)
    return {key: ", ".join(names)[:5000] for key, names in tags.items()}
