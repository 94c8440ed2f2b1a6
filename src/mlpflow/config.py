"""Compose, load and validate the config. Every config error the user can make is raised here.

Two entry paths share one config: Hydra composes conf/ for `python -m mlpflow.train`, and
params.yaml (conf/ composed, as `dvc exp run` and `mlpflow compose` write it) feeds `dvc repro`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpflow.errors import ConfigError

SOURCE_ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = "params.yaml"

TASKS = ("binary", "multiclass", "regression")
DATASETS = {
    "breast_cancer": "binary",
    "digits": "multiclass",
    "wine": "multiclass",
    "diabetes": "regression",
    "synthetic": None,
    "csv": None,
}
LOSS_TASKS = {
    "bce": ("binary",),
    "cross_entropy": ("multiclass",),
    "mse": ("binary", "regression"),
    "huber": ("regression",),
}
LOSS_FOR_TASK = {"binary": "bce", "multiclass": "cross_entropy", "regression": "mse"}
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "leaky_relu", "selu")
NAN_POLICIES = ("error", "drop", "median")
# Keys of a config group that describe the component but are not constructor arguments.
DESCRIPTIVE_KEYS = ("name", "full_batch")


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


def _fail(key: str, value: Any, requirement: str) -> None:
    raise ConfigError(f"{key}={value!r} {requirement}")


def _number(
    cfg: DictConfig,
    key: str,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    value = OmegaConf.select(cfg, key)
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        _fail(key, value, f"must be {'an integer' if integer else 'a number'}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value >= high):
        bound = f"> {low}" if low_open else f">= {low}"
        _fail(key, value, f"must be {bound}" + (f" and < {high}" if high is not None else ""))


def _choice(cfg: DictConfig, key: str, options: Sequence[str]) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in options:
        _fail(key, value, f"is not one of: {', '.join(options)}")


def data_task(cfg: DictConfig) -> str | None:
    """The task the data config declares, or None when it is inferred from the data (auto)."""
    declared = cfg.data.get("task")
    return DATASETS.get(cfg.data.name) or (declared if declared in TASKS else None)


def check_loss_fits(loss: str, task: str, data_name: str) -> None:
    if task not in LOSS_TASKS[loss]:
        raise ConfigError(
            f"loss={loss} does not fit the {task} task of data={data_name}: "
            f"use loss={LOSS_FOR_TASK[task]}"
            + ("" if data_name in ("csv", "synthetic") else f" or experiment={data_name}")
        )


def validate(cfg: DictConfig) -> None:
    """Check every value and combination the stages rely on, before any work starts."""
    _choice(cfg, "data.name", list(DATASETS))
    if cfg.data.name in ("csv", "synthetic"):
        _choice(cfg, "data.task", [*TASKS, "auto"] if cfg.data.name == "csv" else TASKS)
    _choice(cfg, "data.nan_policy", NAN_POLICIES)
    _number(cfg, "data.val_size", 0, 1, low_open=True)
    _number(cfg, "data.test_size", 0, 1, low_open=True)
    if cfg.data.val_size + cfg.data.test_size >= 1:
        raise ConfigError(
            f"data.val_size + data.test_size = {cfg.data.val_size + cfg.data.test_size:g} "
            "leaves no train data: make their sum < 1"
        )
    _number(cfg, "data.batch_size", 1, integer=True)
    _number(cfg, "data.batches_per_step", 1, integer=True)
    if cfg.data.name == "synthetic":
        _number(cfg, "data.n_samples", 10, integer=True)
        _number(cfg, "data.n_features", 1, integer=True)
        if cfg.data.task != "regression":
            _number(cfg, "data.n_classes", 2, integer=True)

    hidden = cfg.model.hidden_dims
    if (
        not OmegaConf.is_list(hidden)
        or len(hidden) == 0
        or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in hidden)
    ):
        _fail(
            "model.hidden_dims",
            OmegaConf.to_object(hidden) if OmegaConf.is_config(hidden) else hidden,
            "must be a non-empty list of positive integers, e.g. [128,64]",
        )
    _choice(cfg, "model.activation", ACTIVATIONS)
    _number(cfg, "model.dropout", 0, 1)

    _choice(cfg, "loss.name", list(LOSS_TASKS))
    task = data_task(cfg)
    if task is not None:
        check_loss_fits(cfg.loss.name, task, cfg.data.name)
    _number(cfg, "regularization.l1", 0)
    _number(cfg, "regularization.l2", 0)
    _number(cfg, "optimizer.lr", 0, low_open=True)
    _number(cfg, "trainer.max_epochs", 1, integer=True)
    _choice(cfg, "monitor.mode", ("min", "max"))
    if not str(cfg.monitor.metric).startswith("val/"):
        _fail("monitor.metric", cfg.monitor.metric, "must be a val/ metric, e.g. val/loss")
    _check_validation_runs(cfg)
    _number(cfg, "evaluate.threshold", 0, 1, low_open=True)


def _check_validation_runs(cfg: DictConfig) -> None:
    """The best checkpoint (what evaluate scores) and early stopping follow a val/ metric: a
    trainer that never validates would train for nothing and fail at the end."""
    limit = cfg.trainer.get("limit_val_batches")
    every = cfg.trainer.get("check_val_every_n_epoch")
    if limit is not None and not isinstance(limit, bool) and limit == 0:
        key, value = "trainer.limit_val_batches", limit
    elif isinstance(every, int) and not isinstance(every, bool) and every > cfg.trainer.max_epochs:
        key, value = "trainer.check_val_every_n_epoch", every
    else:
        return
    _fail(
        key,
        value,
        f"never validates, but the best checkpoint follows monitor.metric={cfg.monitor.metric}: "
        "drop the override (validation picks the model that evaluate scores)",
    )


def build_partial(cfg: Any, **kwargs: Any) -> Any:
    """Hydra-instantiate a `_target_` config (loss, optimizer...), leaving out descriptive keys."""
    from hydra.utils import instantiate

    return instantiate({k: v for k, v in cfg.items() if k not in DESCRIPTIVE_KEYS}, **kwargs)
