"""The one validation of the config: every value and combination the stages rely on.

conf/ holds the defaults (DVC composes it without importing mlpflow, so the schema cannot live in
Hydra's ConfigStore); this module holds the rules, once. Stages call `validate` before any work,
and the data layer takes a parsed `DataConfig` and trusts it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpflow.config.choices import ACTIVATIONS, NUMERIC_EMBEDDINGS
from mlpflow.errors import ConfigError

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
# The task's main metric, as metrics.json names it (higher is better): what monitor.metric=auto
# follows and what permutation importance measures.
MAIN_METRIC = {"binary": "roc_auc", "multiclass": "acc", "regression": "r2"}
AUTO = "auto"
NONE, BALANCED = "none", "balanced"
CLASS_WEIGHT = "class_weight"  # loss.class_weight, resolved per class by model/losses.py
CLASS_WEIGHT_KEY = f"loss.{CLASS_WEIGHT}"
AUTO_LOSS = AUTO  # loss=auto (the default): LOSS_FOR_TASK of the task prepare found
# loader.batch_size=auto (the default): SMALL_TABLE_BATCH below SMALL_TABLE_ROWS train rows.
SMALL_TABLE_ROWS, SMALL_TABLE_BATCH, LARGE_BATCH = 5000, 32, 256
# model.numeric_embedding.kind=auto (mlp's default): piecewise_linear from EMBEDDED_TABLE_ROWS
# train rows, none below (benchmarks/README.md: PLE gains on tables of 900+ train rows, loses on
# those of 400 and fewer, whose 48 bins hold a handful of rows each).
EMBEDDED_TABLE_ROWS, EMBEDDED_KIND = 500, "piecewise_linear"
# model.name -> the options its network takes (`model/network.py` builds it)
MODEL_OPTIONS = {
    "mlp": (
        "hidden_dims", "activation", "dropout", "batch_norm", "categorical", "numeric_embedding",
    ),
    "tabm": (
        "k", "n_blocks", "d_block", "dropout", "activation", "arch_type", "categorical",
        "numeric_embedding",
    ),
}  # fmt: skip
TABM_ARCH_TYPES = ("tabm", "tabm-mini", "tabm-packed")
NAN_POLICIES = ("error", "drop", "median")
NUMERIC_TRANSFORMS = ("standard", "robust", "quantile")
TARGET_TRANSFORMS = ("none", "log1p", "quantile")
CV_NAMES = ("none", "kfold")
MIN_SYNTHETIC_ROWS = 10  # 15 % val and test of fewer rows leave train a handful of rows
MISSING = (None, "", "???")  # "???" is OmegaConf's mark for a mandatory value not given
# Keys that moved to the loader group: an old params.yaml or override gets the new name.
MOVED_KEYS = {
    "data.batch_size": "loader.batch_size",
    "data.batches_per_step": "loader.batches_per_step",
    "optimizer.full_batch": "loader.full_batch",
}


def _fail(key: str, value: Any, requirement: str) -> None:
    raise ConfigError(f"{key}={value!r} {requirement}")


def check_number(
    key: str,
    value: Any,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    """`value` is a number (an integer) in [low, high) or (low, high); a ConfigError naming
    `key` otherwise."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        _fail(key, value, f"must be {'an integer' if integer else 'a number'}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value >= high):
        bound = f"> {low}" if low_open else f">= {low}"
        _fail(key, value, f"must be {bound}" + (f" and < {high}" if high is not None else ""))


def check_choice(key: str, value: Any, options: Sequence[str]) -> None:
    if value not in options:
        _fail(key, value, f"is not one of: {', '.join(options)}")


@dataclass(frozen=True)
class DataConfig:
    """The `data` group, checked: what prepare reads (defaults live in conf/data/_schema.yaml)."""

    name: str
    task: str
    path: str | None
    target: str | None
    n_samples: int | None
    n_features: int | None
    n_classes: int | None
    val_size: float
    test_size: float
    nan_policy: str
    categorical: list[str]
    numeric: list[str]
    drop: list[str]
    weight: str | None  # the column of row weights (loss and metrics), never a feature
    min_category_count: int
    max_categories: int
    numeric_transform: str
    soft_clip: float | None
    target_transform: str
    csv: dict[str, str | None]  # delimiter, decimal, thousands: marks; None: read from the file

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> DataConfig:
        """The checked config; a ConfigError naming the key and the fix otherwise."""
        if OmegaConf.is_config(data):
            data = OmegaConf.to_container(data, resolve=True)  # type: ignore[assignment]
        for key in ("categorical", "numeric", "drop"):  # data.drop=id means data.drop=[id]
            if isinstance(data.get(key), str):
                data = {**data, key: [data[key]]}
        names = [field.name for field in fields(cls)]
        absent = [name for name in names if name not in data]
        if absent:
            raise ConfigError(f"data config lacks {', '.join(absent)}: compose it from conf/")
        parsed = cls(**{name: data[name] for name in names})
        object.__setattr__(parsed, "csv", _csv_options(parsed.csv))
        parsed._check_source()
        parsed._check_split()
        parsed._check_columns()
        return parsed

    def _check_source(self) -> None:
        check_choice("data.name", self.name, list(DATASETS))
        if self.name == "csv":
            for key, example in (("path", "my_table.csv"), ("target", "label")):
                if getattr(self, key) in MISSING:
                    raise ConfigError(
                        f"data=csv needs data.{key}: pass data.{key}={example} on the command line"
                    )
        fixed = DATASETS[self.name]
        if fixed is not None and self.task not in ("auto", fixed):
            _fail("data.task", self.task, f"does not fit data={self.name}: use data.task={fixed}")
        check_choice("data.task", self.task, [*TASKS, "auto"])
        if self.name == "synthetic":
            self._check_synthetic()
        check_choice("data.target_transform", self.target_transform, TARGET_TRANSFORMS)
        task = fixed or self.task
        if task in ("binary", "multiclass"):
            check_target_transform_fits(self.target_transform, task)

    def _check_synthetic(self) -> None:
        if self.task == "auto":
            raise ConfigError(
                "data=synthetic cannot infer its task: set data.task=binary, multiclass or "
                "regression"
            )
        check_number("data.n_samples", self.n_samples, MIN_SYNTHETIC_ROWS, integer=True)
        check_number("data.n_features", self.n_features, 1, integer=True)
        if self.task == "binary" and self.n_classes not in (None, 2):
            _fail("data.n_classes", self.n_classes, "does not fit data.task=binary: use 2")
        if self.task == "multiclass":
            check_number("data.n_classes", self.n_classes, 3, integer=True)

    def _check_split(self) -> None:
        check_choice("data.nan_policy", self.nan_policy, NAN_POLICIES)
        # Both > 0: the best checkpoint follows a val metric, and evaluate scores the test split.
        check_number("data.val_size", self.val_size, 0, 1, low_open=True)
        check_number("data.test_size", self.test_size, 0, 1, low_open=True)
        if self.val_size + self.test_size >= 1:
            raise ConfigError(
                f"data.val_size + data.test_size = {self.val_size + self.test_size:g} "
                "leaves no train data: make their sum < 1"
            )

    def _check_columns(self) -> None:
        lists = {key: getattr(self, key) for key in ("categorical", "numeric", "drop")}
        for key, names in lists.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                _fail(f"data.{key}", names, "must be a list of column names, e.g. [city,plan]")
        pairs = (("categorical", "numeric"), ("categorical", "drop"), ("numeric", "drop"))
        for first, second in pairs:
            both = sorted(set(lists[first]) & set(lists[second]))
            if both:
                raise ConfigError(
                    f"data.{first} and data.{second} both list {', '.join(both)}: "
                    "give each column one role"
                )
        if self.weight is not None and (not isinstance(self.weight, str) or self.weight in MISSING):
            _fail("data.weight", self.weight, "must be a column name or null: e.g. data.weight=w")
        if self.weight is not None and self.weight == self.target:
            _fail("data.weight", self.weight, "is the target: weigh rows by another column")
        check_number("data.min_category_count", self.min_category_count, 1, integer=True)
        check_number("data.max_categories", self.max_categories, 1, integer=True)
        check_choice("data.numeric_transform", self.numeric_transform, NUMERIC_TRANSFORMS)
        if self.soft_clip is not None:
            check_number("data.soft_clip", self.soft_clip, 0, low_open=True)


# data.csv.*: the marks each option takes, by their word (the marks themselves work too).
CSV_OPTIONS = {
    "delimiter": {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"},
    "decimal": {"point": ".", "comma": ","},
    "thousands": {"comma": ",", "point": ".", "space": " ", "apostrophe": "'", "none": ""},
}


def _csv_options(options: Any) -> dict[str, str | None]:
    """data.csv as marks: {"delimiter": ";", "decimal": ",", "thousands": "."}, None where the
    file tells; a ConfigError names a key or value that is not one of the options."""
    if not isinstance(options, Mapping):
        _fail("data.csv", options, "must be a mapping of delimiter, decimal, thousands")
    unknown = sorted(set(options) - set(CSV_OPTIONS))
    if unknown:
        raise ConfigError(
            f"data.csv has no option {', '.join(unknown)}; set data.csv.delimiter, "
            "data.csv.decimal or data.csv.thousands"
        )
    marks: dict[str, str | None] = {}
    for key, words in CSV_OPTIONS.items():
        value = options.get(key)
        if isinstance(value, str) and value.lower() in words:
            value = words[value.lower()]
        if value is not None and value not in words.values():
            choices = ", ".join(words)
            _fail(f"data.csv.{key}", value, f"is not one of: {choices} (or null: read the file)")
        marks[key] = value
    decimal, thousands = marks["decimal"], marks["thousands"]
    if decimal is not None and decimal == thousands:
        raise ConfigError(
            f"data.csv.decimal and data.csv.thousands are both {decimal!r}: a number has one "
            "decimal mark; change one of them"
        )
    return marks


@dataclass(frozen=True)
class CVConfig:
    """The `cv` group, checked: whether prepare also writes k-fold folds (conf/cv/). With
    cv=none, folds, repeats and group are None."""

    name: str
    folds: int | None = None
    repeats: int | None = None
    group: str | None = None
    n_jobs: int = 1  # folds trained at once: where they run, not what they compute
    refit: bool = False  # each fold's member retrained on all its training folds

    @property
    def kfold(self) -> bool:
        return self.name == "kfold"

    @classmethod
    def parse(cls, cv: Mapping[str, Any] | None) -> CVConfig:
        """The checked config (no `cv` group, as in an older params.yaml: cv=none); a
        ConfigError naming the key and the fix otherwise."""
        if cv is None:
            return cls("none")
        if OmegaConf.is_config(cv):
            cv = OmegaConf.to_container(cv, resolve=True)  # type: ignore[assignment]
        check_choice("cv.name", cv.get("name"), CV_NAMES)
        if cv["name"] == "none":
            return cls("none")
        absent = [key for key in ("folds", "repeats", "group") if key not in cv]
        if absent:
            raise ConfigError(f"cv config lacks {', '.join(absent)}: compose it from conf/")
        folds, repeats, group = cv["folds"], cv["repeats"], cv["group"]
        if not _is_int(folds) or folds < 2:
            _fail(
                "cv.folds",
                folds,
                "must be an integer >= 2 (each fold is held out once): use e.g. cv.folds=5",
            )
        if not _is_int(repeats) or repeats < 1:
            _fail(
                "cv.repeats",
                repeats,
                "must be an integer >= 1 (1: plain k-fold): use e.g. cv.repeats=1",
            )
        if group is not None and (not isinstance(group, str) or group in MISSING):
            _fail("cv.group", group, "must be a column name or null: use e.g. cv.group=patient")
        n_jobs = cv.get("n_jobs", 1)
        if not _is_int(n_jobs) or n_jobs < 1:
            _fail("cv.n_jobs", n_jobs, "must be an integer >= 1 (folds trained at once)")
        refit = cv.get("refit", False)
        if not isinstance(refit, bool):
            _fail("cv.refit", refit, "must be true or false: use e.g. cv.refit=true")
        return cls("kfold", folds, repeats, group, n_jobs, refit)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_target_transform_fits(transform: str, task: str) -> None:
    """A target transform is for a regression target: a ConfigError for one on classes."""
    if transform != "none" and task != "regression":
        raise ConfigError(
            f"data.target_transform={transform} transforms a regression target, but the task "
            f"is {task}: use data.target_transform=none"
        )


def data_task(cfg: DictConfig) -> str | None:
    """The task the data config declares, or None when it is inferred from the data (auto)."""
    declared = cfg.data.get("task")
    return DATASETS.get(cfg.data.name) or (declared if declared in TASKS else None)


def check_loss_fits(loss: str, task: str, data_name: str) -> None:
    if loss != AUTO_LOSS and task not in LOSS_TASKS[loss]:
        raise ConfigError(
            f"loss={loss} does not fit the {task} task of data={data_name}: "
            f"use loss={LOSS_FOR_TASK[task]}"
            + ("" if data_name in ("csv", "synthetic") else f" or experiment={data_name}")
        )


def check_monitor_fits(metric: str, task: str, metrics: Sequence[str]) -> None:
    """monitor.metric names what validation logs for the task: val/loss or one of its
    `metrics` (Lightning would fail on another only after the first epoch)."""
    logged = ["val/loss", *(f"val/{name}" for name in metrics)]
    if metric not in logged:
        raise ConfigError(
            f"monitor.metric={metric!r} is not logged for the {task} task: choose one of "
            f"{', '.join(logged)}, or auto (the task's main metric)"
        )


def check_class_weight(option: Any) -> None:
    """loss.class_weight: none, balanced, or a positive weight per named class."""
    if option in (None, NONE, BALANCED):
        return
    if not isinstance(option, Mapping) or not option:
        _fail(CLASS_WEIGHT_KEY, option, "must be none, balanced or {class: weight}")
    for name, weight in option.items():
        check_number(f"{CLASS_WEIGHT_KEY}.{name}", weight, 0, low_open=True)


def check_class_weight_fits(option: Any, task: str) -> None:
    if option not in (None, NONE) and task == "regression":
        raise ConfigError(f"{CLASS_WEIGHT_KEY} weighs classes, but the task is regression: drop it")


def check_threshold_fits(threshold: Any, task: str) -> None:
    """evaluate.threshold=auto picks a binary classifier's threshold: a ConfigError on
    another task (multiclass predicts the argmax, regression no class)."""
    if threshold == AUTO and task != "binary":
        raise ConfigError(
            f"evaluate.threshold=auto picks the F1-optimal threshold of a binary classifier, "
            f"but the task is {task}: set evaluate.threshold=0.5 (binary tasks read it only)"
        )


def moved_key_error(key: str) -> ConfigError:
    new = MOVED_KEYS[key]
    return ConfigError(f"{key} is now {new}: pass {new}=... (or `mlpflow compose` params.yaml)")


def check_moved_keys(cfg: DictConfig) -> None:
    """An old params.yaml or override (data.batch_size, ...) names the key's new home."""
    for key in MOVED_KEYS:
        group, name = key.split(".")
        if name in (cfg.get(group) or {}):
            raise moved_key_error(key)


def check_monitor(monitor: DictConfig) -> None:
    """monitor.metric: a val/ metric, or auto (the task's MAIN_METRIC, all maximized)."""
    check_choice("monitor.mode", monitor.mode, ("min", "max"))
    if monitor.metric == AUTO:
        if monitor.mode != "max":
            _fail(
                "monitor.mode",
                monitor.mode,
                "monitor.metric=auto follows the task's main metric (roc_auc, acc or r2), "
                "which is maximized: set monitor.mode=max",
            )
    elif not str(monitor.metric).startswith("val/"):
        _fail("monitor.metric", monitor.metric, "must be a val/ metric, e.g. val/loss, or auto")


def validate(cfg: DictConfig) -> None:
    """Check every value and combination the stages rely on, before any work starts."""
    check_moved_keys(cfg)
    DataConfig.parse(cfg.data)
    CVConfig.parse(cfg.get("cv"))
    check_number("seed", cfg.seed, 0, 2**32, integer=True)
    if cfg.loader.batch_size != AUTO:
        check_number("loader.batch_size", cfg.loader.batch_size, 1, integer=True)
    check_number("loader.batches_per_step", cfg.loader.batches_per_step, 1, integer=True)
    _check_model(cfg.model)
    check_choice("loss.name", cfg.loss.name, [AUTO_LOSS, *LOSS_TASKS])
    auto_options = ("name", CLASS_WEIGHT)
    if cfg.loss.name == AUTO_LOSS and (options := [k for k in cfg.loss if k not in auto_options]):
        raise ConfigError(
            f"loss=auto takes no options but class_weight (got loss.{options[0]}): choose the "
            "loss that has it, e.g. loss=bce loss.pos_weight=..."
        )
    check_class_weight(cfg.loss.get(CLASS_WEIGHT))
    task = data_task(cfg)
    if task is not None:
        check_loss_fits(cfg.loss.name, task, cfg.data.name)
        check_class_weight_fits(cfg.loss.get(CLASS_WEIGHT), task)
    check_number("regularization.l1", cfg.regularization.l1, 0)
    check_number("regularization.l2", cfg.regularization.l2, 0)
    check_number("optimizer.lr", cfg.optimizer.lr, 0, low_open=True)
    if (clip := cfg.optimizer.get("clip_grad_norm")) is not None:
        check_number("optimizer.clip_grad_norm", clip, 0, low_open=True)
    check_number("trainer.max_epochs", cfg.trainer.max_epochs, 1, integer=True)
    interval = cfg.tracking.get("system_metrics_interval", 1.0)
    check_number("tracking.system_metrics_interval", interval, 0, low_open=True)
    check_monitor(cfg.monitor)
    _check_validation_runs(cfg)
    if cfg.evaluate.threshold != AUTO:
        check_number("evaluate.threshold", cfg.evaluate.threshold, 0, 1, low_open=True)
    if task is not None:
        check_threshold_fits(cfg.evaluate.threshold, task)
    if not isinstance(cfg.evaluate.importance, bool):
        _fail("evaluate.importance", cfg.evaluate.importance, "must be true or false")
    check_number("evaluate.importance_repeats", cfg.evaluate.importance_repeats, 1, integer=True)


def _check_model(model: DictConfig) -> None:
    name = model.get("name", "mlp")
    check_choice("model.name", name, tuple(MODEL_OPTIONS))
    options = MODEL_OPTIONS[name]
    if unknown := [key for key in model if key != "name" and key not in options]:
        raise ConfigError(
            f"model.{unknown[0]} is not an option of model={name} (its options: "
            f"{', '.join(options)})"
        )
    if name == "mlp":
        hidden = model.hidden_dims
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
    else:
        for key in ("k", "n_blocks", "d_block"):
            check_number(f"model.{key}", model[key], 1, integer=True)
        check_choice("model.arch_type", model.arch_type, TABM_ARCH_TYPES)
    check_choice("model.activation", model.activation, tuple(ACTIVATIONS))
    check_number("model.dropout", model.dropout, 0, 1)
    _check_numeric_embedding(model.get("numeric_embedding"))


def _check_numeric_embedding(options: Any) -> None:
    """model.numeric_embedding: a kind and valid options (every kind's options may be there,
    each kind reads its own); absent: none."""
    key = "model.numeric_embedding"
    if options is None:
        return
    if not isinstance(options, Mapping):
        _fail(key, options, "must be a mapping with kind: auto, none, periodic or piecewise_linear")
    kind = options.get("kind", "none")
    check_choice(f"{key}.kind", kind, (AUTO, *NUMERIC_EMBEDDINGS))
    known = ["kind", *dict.fromkeys(o for opts in NUMERIC_EMBEDDINGS.values() for o in opts)]
    if unknown := [name for name in options if name not in known]:
        raise ConfigError(f"{key}.{unknown[0]} is not an option (its options: {', '.join(known)})")
    for name in ("d_embedding", "n_frequencies"):
        if name in options:
            check_number(f"{key}.{name}", options[name], 1, integer=True)
    if "frequency_scale" in options:
        check_number(f"{key}.frequency_scale", options["frequency_scale"], 0, low_open=True)
    if "n_bins" in options:
        check_number(f"{key}.n_bins", options["n_bins"], 2, integer=True)
    if not isinstance(options.get("activation", False), bool):
        _fail(f"{key}.activation", options["activation"], "must be true or false")


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
