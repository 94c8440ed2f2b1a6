"""Compose and load the config: conf/ through Hydra, or params.yaml as DVC runs it.

Two entry paths share one config: Hydra composes conf/ for `python -m mlpflow.train`, and
params.yaml (conf/ composed, as `dvc exp run` and `mlpflow compose` write it) feeds `dvc repro`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpflow.config.schema import (
    AUTO,
    AUTO_LOSS,
    LARGE_BATCH,
    LOSS_FOR_TASK,
    MOVED_KEYS,
    SMALL_TABLE_BATCH,
    SMALL_TABLE_ROWS,
    moved_key_error,
)
from mlpflow.errors import ConfigError

SOURCE_ROOT = Path(__file__).resolve().parents[3]
PARAMS_FILE = "params.yaml"


def project_root(start: Path | None = None) -> Path:
    """The nearest directory holding dvc.yaml, skipping DVC's temp copies under .dvc/.

    Queued `dvc exp run` executes in a copy under <repo>/.dvc/tmp/exps/; climbing out of it keeps
    one MLflow store per project whichever copy runs.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if ".dvc" in directory.parts:
            continue
        if (directory / "dvc.yaml").exists():
            return directory
    return SOURCE_ROOT


def conf_dir() -> Path:
    """conf/ of the project around the working directory (as DVC uses it), else of this checkout."""
    local = project_root() / "conf"
    return local if (local / "config.yaml").exists() else SOURCE_ROOT / "conf"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/ composed with Hydra overrides, exactly as DVC's Hydra integration composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_moved_overrides(overrides)
    try:
        with initialize_config_dir(str(conf_dir()), version_base=None):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        lines = str(error).strip().splitlines()
        message = lines[0]
        message += "".join(f" {line}" for line in lines[1:] if line.startswith("To append"))
        options = [o for o in getattr(error, "options", None) or [] if not o.startswith("_")]
        if options:
            message += f"; available: {', '.join(options)}"
        raise ConfigError(message) from error


def check_moved_overrides(overrides: Sequence[str]) -> None:
    """`data.batch_size=64` and the other moved keys: name the new key, not Hydra's `+key`."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in MOVED_KEYS:
            raise moved_key_error(key)


def params_yaml(cfg: DictConfig) -> str:
    """The text DVC writes to params.yaml for this config (resolved, YAML)."""
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.resolve(resolved)
    return OmegaConf.to_yaml(resolved)


def load_params(path: str | Path = PARAMS_FILE) -> DictConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: run `mlpflow compose` to write it from conf/")
    return OmegaConf.load(path)


def resolve_data_defaults(cfg: DictConfig, task: str, n_train: int) -> None:
    """What `auto` means once prepare has seen the data: loss=auto becomes the task's loss
    option from conf/loss/, loader.batch_size=auto a batch that gives a small table enough
    optimizer steps (SMALL_TABLE_BATCH below SMALL_TABLE_ROWS train rows, else LARGE_BATCH)."""
    if cfg.loss.name == AUTO_LOSS:
        cfg.loss = OmegaConf.load(conf_dir() / "loss" / f"{LOSS_FOR_TASK[task]}.yaml")
    if cfg.loader.batch_size == AUTO:
        small = n_train < SMALL_TABLE_ROWS
        cfg.loader.batch_size = SMALL_TABLE_BATCH if small else LARGE_BATCH


def build_partial(cfg: Any, **kwargs: Any) -> Any:
    """Hydra-instantiate a `_target_` group (loss, optimizer...); its `name` only labels runs."""
    from hydra.utils import instantiate

    return instantiate({k: v for k, v in cfg.items() if k != "name"}, **kwargs)
