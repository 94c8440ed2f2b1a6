"""Stage prepare: the data config -> splits + meta.json. Imports no torch (see DESIGN.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpflow.config import project_root, validate
from mlpflow.data.splits import prepare_dataset

# data.* keys read by train, not by prepare: changing them must not re-prepare.
LOADER_KEYS = ("batch_size", "batches_per_step")


def prepare_inputs(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return {"data": {k: v for k, v in data.items() if k not in LOADER_KEYS}, "seed": cfg.seed}


def cache_dir(cfg: DictConfig) -> Path:
    """Where runs outside DVC keep prepared data: one folder per distinct prepare input."""
    key = hashlib.sha1(json.dumps(prepare_inputs(cfg), sort_keys=True).encode()).hexdigest()[:12]
    return project_root() / "data" / "cache" / f"{cfg.data.name}-{key}"


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    inputs = prepare_inputs(cfg)
    return prepare_dataset(inputs["data"], inputs["seed"], cfg.paths.prepared)


def ensure_prepared(cfg: DictConfig) -> dict[str, Any]:
    """Prepare into the cache unless an earlier run already did (sweep trials share it)."""
    from mlpflow.data.splits import load_meta

    if (Path(cfg.paths.prepared) / "meta.json").exists():
        return load_meta(cfg.paths.prepared)
    return run(cfg)
