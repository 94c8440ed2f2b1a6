"""conf/ composes for every option; params.yaml is conf/ composed; bad values fail early."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint

from mlpflow.config.compose import (
    build_partial,
    compose,
    conf_dir,
    params_yaml,
    resolve_data_defaults,
)
from mlpflow.config.schema import data_task, validate
from mlpflow.errors import ConfigError
from mlpflow.model.checkpoint import BEST_CHECKPOINT, LAST_CHECKPOINT

REPO = Path(__file__).resolve().parents[1]
# A dataset that fits each loss, so that every option composes into a valid config.
DATA_FOR_LOSS = {
    "bce": "breast_cancer",
    "cross_entropy": "digits",
    "mse": "diabetes",
    "huber": "diabetes",
    "auto": "wine",
}


def group_options() -> list[tuple[str, str]]:
    return [
        (group.name, option.stem)
        for group in sorted(conf_dir().iterdir())
        if group.is_dir()
        for option in sorted(group.glob("*.yaml"))
        if not option.stem.startswith("_")
    ]


def test_committed_params_yaml_is_conf_composed() -> None:
    committed = (REPO / "params.yaml").read_text()
    assert committed == params_yaml(compose()), "params.yaml is stale: run `mlpflow compose`"


def test_params_yaml_has_no_hydra_interpolations() -> None:
    assert "${" not in (REPO / "params.yaml").read_text()


@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_option_composes_validates_and_instantiates(group: str, option: str) -> None:
    overrides = [f"{group}={option}"]
    if group == "loss":
        overrides.append(f"data={DATA_FOR_LOSS[option]}")
    if group == "data" and option == "csv":
        overrides += ["data.path=rows.csv", "data.target=y"]
    cfg = compose(overrides)  # loss=auto: no data option needs a loss override
    validate(cfg)

    task = data_task(cfg) or "binary"
    resolve_data_defaults(cfg, task, n_train=100)
    outputs = torch.zeros(4, 3) if task == "multiclass" else torch.zeros(4)
    assert build_partial(cfg.loss, task=task)(outputs, torch.zeros(4).long()) >= 0
    optimizer = build_partial(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer.defaults["lr"] == cfg.optimizer.lr
    if cfg.scheduler.get("_target_"):
        assert hasattr(build_partial(cfg.scheduler)(optimizer), "step")
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    assert all(isinstance(c, pl.Callback) for c in callbacks)
    if cfg.trainer.accelerator == "cpu":
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
        assert trainer.max_epochs == cfg.trainer.max_epochs
    else:  # no GPU on CI machines: check the config asks for one
        assert cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["optimizer.lr=-0.1"], "optimizer.lr"),
        (["optimizer.lr=fast"], "optimizer.lr"),
        (["model.hidden_dims=[]"], "model.hidden_dims"),
        (["model.hidden_dims=[64,0]"], "model.hidden_dims"),
        (["model.activation=swish"], "model.activation"),
        (["model.dropout=1.5"], "model.dropout"),
        (["data=digits", "loss=bce"], "loss=bce"),
        (["experiment=diabetes", "loss=cross_entropy"], "loss=cross_entropy"),
        (["loss=huber"], "loss=huber"),
        (["data.val_size=0.6", "data.test_size=0.4"], "leaves no train data"),
        (["loader.batch_size=0"], "loader.batch_size"),
        (["loader.batches_per_step=1.5"], "loader.batches_per_step"),
        (["seed=-1"], "seed"),
        (["data.val_size=0"], "data.val_size"),
        (["data.test_size=0"], "data.test_size"),
        (["data=synthetic", "data.n_samples=9"], "data.n_samples=9 must be >= 10"),
        (["trainer.max_epochs=0"], "trainer.max_epochs"),
        (["regularization=l1", "regularization.l1=-1"], "regularization.l1"),
        (["monitor.metric=train/loss"], "monitor.metric"),
        (["monitor.metric=auto"], "monitor.metric=auto follows the task's main metric"),
        (["data.nan_policy=ignore"], "data.nan_policy"),
        (["model=tabm", "model.k=0"], "model.k"),
        (["model=tabm", "model.arch_type=tabm-large"], "model.arch_type"),
        (["model=tabm", "+model.hidden_dims=[64]"], "model.hidden_dims is not an option of"),
        (["+model.k=8"], "model.k is not an option of model=mlp"),
        (["model=tabm", "optimizer.clip_grad_norm=0"], "optimizer.clip_grad_norm=0 must be > 0"),
        (
            ["model.numeric_embedding.kind=ple"],
            "model.numeric_embedding.kind='ple' is not one of: auto, none, periodic, "
            "piecewise_linear",
        ),
        (
            ["model.numeric_embedding.kind=piecewise_linear", "model.numeric_embedding.n_bins=1"],
            "model.numeric_embedding.n_bins=1 must be >= 2",
        ),
        (
            [
                "model.numeric_embedding.kind=piecewise_linear",
                "model.numeric_embedding.activation=maybe",
            ],
            "numeric_embedding.activation='maybe'",
        ),
        (
            [
                "model=tabm",
                "model.numeric_embedding.kind=periodic",
                "model.numeric_embedding.frequency_scale=0",
            ],
            "frequency_scale=0 must be > 0",
        ),
        (
            ["model.numeric_embedding.kind=periodic", "model.numeric_embedding.d_embedding=0"],
            "model.numeric_embedding.d_embedding=0 must be >= 1",
        ),
        (["+model.numeric_embedding.bins=[1,2]"], "model.numeric_embedding.bins is not an option"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(overrides: list[str], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("[", r"\[")):
        validate(compose(overrides))


def test_unknown_group_option_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"optimizer=rmsprop: .* one of: sgd, adam, adamw, gd"):
        compose(["optimizer=rmsprop"])


def test_model_tabm_brings_its_recipe_and_an_override_still_wins() -> None:
    cfg = compose(["model=tabm"])
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == (
        "adamw", 2e-3, 3e-4,
    )  # fmt: skip
    assert cfg.optimizer.clip_grad_norm == 1.0 and cfg.loader.batch_size == 256
    assert cfg.callbacks.early_stopping.patience == 16
    assert cfg.trainer.max_epochs == 1000 and compose([]).trainer.max_epochs == 50
    # TabM with PLE: numbers through piecewise-linear embeddings, 2 blocks of 512
    assert cfg.model.numeric_embedding.kind == "piecewise_linear"
    assert (cfg.model.n_blocks, cfg.model.d_block) == (2, 512)
    cfg = compose(["model=tabm", "optimizer=adam", "optimizer.lr=0.01", "loader.batch_size=64"])
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.loader.batch_size) == ("adam", 0.01, 64)
    assert compose([]).optimizer.get("clip_grad_norm") is None  # model=mlp: no recipe


def test_experiment_presets_pick_the_loss_of_their_task() -> None:
    assert compose(["experiment=digits"]).loss.name == "cross_entropy"
    assert compose(["experiment=diabetes"]).loss.name == "mse"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("data.batch_size=64", "loader.batch_size"),
        ("data.batches_per_step=4", "loader.batches_per_step"),
        ("optimizer.full_batch=true", "loader.full_batch"),
    ],
)
def test_moved_keys_name_their_new_home(old: str, new: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{old.split('=')[0]} is now {new}"):
        compose([old])
    group, rest = old.split(".", 1)
    key, value = rest.split("=")
    stale = compose()
    with open_dict(stale):
        stale[group][key] = value  # an old params.yaml
    with pytest.raises(ConfigError, match=f"is now {new}"):
        validate(stale)


def test_config_boundaries_are_where_the_schema_says() -> None:
    validate(compose(["data=synthetic", "data.n_samples=10"]))
    validate(compose(["seed=0"]))
    validate(compose([f"seed={2**32 - 1}"]))
    with pytest.raises(ConfigError, match="seed"):
        validate(compose([f"seed={2**32}"]))
    validate(compose(["data.val_size=0.01", "data.test_size=0.98"]))


@pytest.mark.parametrize(("n_train", "batch"), [(398, 32), (4999, 32), (5000, 256), (10**6, 256)])
def test_an_auto_batch_follows_the_train_rows(n_train: int, batch: int) -> None:
    cfg = compose()
    assert cfg.loader.batch_size == "auto"
    resolve_data_defaults(cfg, "binary", n_train)
    assert cfg.loader.batch_size == batch


@pytest.mark.parametrize(
    ("n_train", "kind"),
    [(398, "none"), (499, "none"), (500, "piecewise_linear"), (10**6, "piecewise_linear")],
)
def test_an_auto_numeric_embedding_follows_the_train_rows(n_train: int, kind: str) -> None:
    cfg = compose()
    assert cfg.model.numeric_embedding.kind == "auto"
    resolve_data_defaults(cfg, "binary", n_train)
    assert cfg.model.numeric_embedding.kind == kind
    chosen = compose(["model.numeric_embedding.kind=periodic"])
    resolve_data_defaults(chosen, "binary", n_train)
    assert chosen.model.numeric_embedding.kind == "periodic"


@pytest.mark.parametrize(
    ("task", "metric"),
    [("binary", "val/roc_auc"), ("multiclass", "val/acc"), ("regression", "val/r2")],
)
def test_an_auto_monitor_follows_the_task(task: str, metric: str) -> None:
    cfg = compose(["monitor.metric=auto", "monitor.mode=max"])
    validate(cfg)
    resolve_data_defaults(cfg, task, 1000)
    assert (cfg.monitor.metric, cfg.callbacks.model_checkpoint.monitor) == (metric, metric)
    assert cfg.callbacks.early_stopping.monitor == metric
    chosen = compose(["monitor.metric=val/f1", "monitor.mode=max"])
    resolve_data_defaults(chosen, task, 1000)
    assert chosen.monitor.metric == "val/f1"


def test_loader_follows_the_optimizer_and_overrides() -> None:
    cfg = compose(["data=digits", "loader.batch_size=64"])
    resolve_data_defaults(cfg, "multiclass", 1000)
    assert cfg.loader.batch_size == 64
    assert not compose().loader.full_batch
    assert compose(["optimizer=gd"]).loader.full_batch


@pytest.mark.parametrize(
    ("data", "loss"),
    [("breast_cancer", "bce"), ("digits", "cross_entropy"), ("diabetes", "mse")],
)
def test_the_default_loss_is_the_tasks(data: str, loss: str) -> None:
    cfg = compose([f"data={data}"])
    validate(cfg)
    assert cfg.loss.name == "auto"
    resolve_data_defaults(cfg, data_task(cfg), n_train=100)
    assert cfg.loss.name == loss and "_target_" in cfg.loss


def test_the_checkpoint_callbacks_write_the_files_the_stages_read():
    """conf/callbacks' `filename`s are config; model/checkpoint.py names the files that evaluate,
    resume and train's report read: kept equal here."""
    expected = {"model_checkpoint": BEST_CHECKPOINT, "last_checkpoint": LAST_CHECKPOINT}
    for option in sorted((conf_dir() / "callbacks").glob("*.yaml")):
        callbacks = OmegaConf.load(option)
        assert "model_checkpoint" in callbacks, option.name
        for name, file in expected.items():
            if name in callbacks:
                written = callbacks[name].filename + ModelCheckpoint.FILE_EXTENSION
                assert written == file, f"{option.name}: {name} writes {written}"
