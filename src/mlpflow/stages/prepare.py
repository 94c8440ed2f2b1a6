"""Stage prepare: the data config -> splits + meta.json. Imports no torch (train pays for it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mlpflow.config.compose import project_root
from mlpflow.config.schema import CVConfig, DataConfig, validate
from mlpflow.console import console, print_columns
from mlpflow.data.build import prepare_dataset
from mlpflow.data.folds import load_folds
from mlpflow.data.prepared import META_FILE, Meta, load_meta


def cache_dir(cfg: DictConfig) -> Path:
    """Where runs outside DVC keep prepared data: one folder per distinct prepare input, the
    table file included (an edited or another file of the same name is prepared anew), the cv
    config too (cv=kfold's folder holds the folds as well), but for cv.n_jobs: how many folds
    train at once."""
    cv = cfg.get("cv")
    folds = OmegaConf.to_container(cv, resolve=True) if cv is not None else None
    inputs = {
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "cv": {k: v for k, v in folds.items() if k != "n_jobs"} if folds else None,
        "seed": cfg.seed,
        "file": file_stamp(cfg.data.get("path")),
    }
    key = hashlib.sha1(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    return project_root() / "data" / "cache" / f"{cfg.data.name}-{key}"


def file_stamp(path: str | None) -> list[str | int] | None:
    """The table file's resolved path, size and modification time (ns): what tells it apart
    from the file a cached preparation read, without reading it (as make and DVC first do)."""
    resolved = Path(path).expanduser().resolve() if path else None
    if resolved is None or not resolved.is_file():
        return None  # a built-in dataset, or a missing file that prepare reports
    stat = resolved.stat()
    return [str(resolved), stat.st_size, stat.st_mtime_ns]


def run(cfg: DictConfig) -> Meta:
    """Prepare cfg.paths.prepared (and its folds, with cv=kfold); print what was done with each
    column."""
    validate(cfg)
    data, cv = DataConfig.parse(cfg.data), CVConfig.parse(cfg.get("cv"))
    meta = prepare_dataset(data, cfg.seed, cfg.paths.prepared, cv)
    print_columns(meta)
    if (folds := load_folds(cfg.paths.prepared)) is not None:
        repeats = f" x {folds.repeats} repeats" if folds.repeats > 1 else ""
        console.print(
            f"cross-validation: {folds.folds} folds{repeats} of the {folds.rows} non-test rows, "
            f"each fold's network trained on the others (their own train/val split)"
        )
    return meta


def ensure_prepared(cfg: DictConfig) -> Meta:
    """Prepare into the cache unless an earlier run already did (sweep trials share it)."""
    if (Path(cfg.paths.prepared) / META_FILE).exists():
        return load_meta(cfg.paths.prepared)
    return run(cfg)
