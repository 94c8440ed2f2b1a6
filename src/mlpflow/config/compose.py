"""Compose and load the config: conf/ through Hydra, or params.yaml as DVC runs it.

Two entry paths share one config: Hydra composes conf/ for `python -m mlpflow.train`, and
params.yaml (conf/ composed, as `dvc exp run` and `mlpflow compose` write it) feeds `dvc repro`.
Hydra is imported inside the functions that compose or instantiate: importing it costs ~0.6 s
(1.3 s on a loaded machine), which a DVC stage reading params.yaml (prepare) does not need.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpflow.config.schema import (
    AUTO,
    AUTO_LOSS,
    CLASS_WEIGHT,
    EMBEDDED_KIND,
    EMBEDDED_TABLE_ROWS,
    LARGE_BATCH,
    LOSS_FOR_TASK,
    MAIN_METRIC,
    MOVED_KEYS,
    SMALL_TABLE_BATCH,
    SMALL_TABLE_ROWS,
    check_class_weight_fits,
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
    check_moved_overrides(overrides)
    try:
        return _hydra_compose(overrides)
    except ConfigError:
        check_overrides(overrides)  # an unknown option or key: its own line
        raise


def _hydra_compose(overrides: Sequence[str], with_hydra: bool = False) -> DictConfig:
    """Hydra's composition of conf/; its errors as one-line ConfigErrors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(conf_dir()), version_base=None):
            return hydra_compose("config", list(overrides), return_hydra_config=with_hydra)
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


# Hydra's command-line flags that take the next argument as their value.
HYDRA_VALUE_FLAGS = frozenset(
    {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c"}
    | {"--package", "-p", "--experimental-rerun"}
)


def is_multirun(argv: Sequence[str]) -> bool:
    """-m/--multirun on the command line, or Hydra's mode set to it by an override."""
    return any(a in ("-m", "--multirun", "hydra.mode=MULTIRUN") for a in argv)


def command_line_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides among Hydra's command-line arguments (flags and their values dropped)."""
    overrides: list[str] = []
    flag_value = False
    for arg in argv:
        if flag_value and "=" not in arg:
            flag_value = False
        elif arg.startswith("-"):
            flag_value = arg in HYDRA_VALUE_FLAGS
        else:
            overrides.append(arg)
    return overrides


def check_overrides(overrides: Sequence[str], multirun: bool = True) -> None:
    """Each override names an option of its group and a key of the composed config, or fails
    with one line: what is unknown and what exists, closest first (Hydra's own messages are a
    search path or a struct error). A sweep's values are options too; `+key` adds a key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    check_moved_overrides(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(f"cannot parse the overrides: {str(error).splitlines()[0]}") from error
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise ConfigError(f"{sweeps[0]} is a sweep: add -m (--multirun) to run one job per value")
    parsed = [o for o in parsed if not o.key_or_group.startswith("hydra") and not o.is_delete()]
    conf = conf_dir()
    choices: list[str] = []
    keys: list[str] = []
    for override in parsed:
        name = override.key_or_group
        if (conf / name).is_dir() and override.package is None:
            values = _override_values(override)
            for value in values:
                _check_option(conf, name, value)
            if values and values[0] not in ("null", "None"):
                choices.append(f"{name}={values[0]}")
        elif not (override.is_add() or override.is_force_add()):
            keys.append(name)
    if not keys:
        return
    cfg = _hydra_compose(choices, with_hydra=True)
    for key in keys:
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            raise _unknown_key(cfg, key, conf)


_ABSENT = object()


def _override_values(override: Any) -> list[str]:
    """An override's values as text: its one value, or each value of a choice/range sweep."""
    if override.is_sweep_override():
        try:
            return list(override.sweep_string_iterator())
        except Exception:  # an interval sweep has no options to check
            return []
    return [override.get_value_element_as_str()]


def _check_option(conf: Path, group: str, value: str) -> None:
    if value in ("null", "None") or (conf / group / f"{value}.yaml").is_file():
        return
    options = [p.stem for p in sorted((conf / group).glob("*.yaml")) if p.stem[0] != "_"]
    closest = ", ".join(_closest(value, options))
    raise ConfigError(f"{group}={value}: no such {group} option; choose one of: {closest}")


def _unknown_key(cfg: DictConfig, key: str, conf: Path) -> ConfigError:
    """The key is unknown: name the option that has it, or the keys that exist beside it."""
    group, _, rest = key.partition(".")
    chosen = cfg.hydra.runtime.choices.get(group) if "hydra" in cfg else None
    if rest and (conf / group).is_dir():
        for option in sorted((conf / group).glob("*.yaml")):
            if (
                option.stem != chosen
                and OmegaConf.select(OmegaConf.load(option), rest, default=_ABSENT) is not _ABSENT
            ):
                return ConfigError(
                    f"{key} is a key of {group}={option.stem}, not of {group}={chosen}: "
                    f"add {group}={option.stem} to the command"
                )
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    while parent and not OmegaConf.is_dict(node):  # climb to the deepest node that exists
        parent, _, leaf = parent.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
    existing = [k for k in node if k != "hydra" and not k.startswith("_")]
    where = f"{parent} has" if parent else "top-level keys are"
    return ConfigError(
        f"{key} is not a config key; {where}: {', '.join(_closest(leaf, existing))} "
        f"(`+{key}=...` adds a new key)"
    )


def _closest(word: str, candidates: list[str]) -> list[str]:
    """Every candidate, the most similar to `word` first."""
    return sorted(candidates, key=lambda c: -SequenceMatcher(None, word, c).ratio())


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
    optimizer steps (SMALL_TABLE_BATCH below SMALL_TABLE_ROWS train rows, else LARGE_BATCH),
    model.numeric_embedding.kind=auto an embedding where the train split can fit its bins
    (EMBEDDED_KIND from EMBEDDED_TABLE_ROWS train rows, else none), monitor.metric=auto the
    task's main metric on the validation split (MAIN_METRIC: val/roc_auc, val/acc, val/r2).
    The run's params show what `auto` became."""
    if cfg.loss.name == AUTO_LOSS:
        class_weight = cfg.loss.get(CLASS_WEIGHT)
        cfg.loss = OmegaConf.load(conf_dir() / "loss" / f"{LOSS_FOR_TASK[task]}.yaml")
        check_class_weight_fits(class_weight, task)
        if class_weight is not None:
            cfg.loss[CLASS_WEIGHT] = class_weight
    if cfg.loader.batch_size == AUTO:
        small = n_train < SMALL_TABLE_ROWS
        cfg.loader.batch_size = SMALL_TABLE_BATCH if small else LARGE_BATCH
    embedding = cfg.model.get("numeric_embedding")
    if embedding is not None and embedding.get("kind") == AUTO:
        embedding.kind = EMBEDDED_KIND if n_train >= EMBEDDED_TABLE_ROWS else "none"
    if cfg.monitor.metric == AUTO:
        cfg.monitor.metric = f"val/{MAIN_METRIC[task]}"


# optimizer.clip_grad_norm: the gradients' global L2 norm is clipped to it before each step
CLIP_GRAD_NORM = "clip_grad_norm"


def build_partial(cfg: Any, **kwargs: Any) -> Any:
    """Hydra-instantiate a `_target_` group (loss, optimizer...); its `name` only labels runs,
    and `clip_grad_norm` is how the training step uses the optimizer, not one of its
    arguments."""
    from hydra.utils import instantiate

    return instantiate(
        {k: v for k, v in cfg.items() if k not in ("name", CLIP_GRAD_NORM)}, **kwargs
    )
