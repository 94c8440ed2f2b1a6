"""The private Lightning and MLflow attributes mlpflow relies on, each in one adapter
(`model/fast_step.py`, `tracking/store.use_tracking_uri`). An upgrade that moves them fails here,
by name, instead of silently miscounting steps or logging into the wrong store."""

from __future__ import annotations

import os

import mlflow
import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer

from mlpflow.model.fast_step import DirectStep
from mlpflow.stages import prepare, train
from mlpflow.tracking.store import use_tracking_uri


def test_lightning_exposes_the_manual_optimization_step_counter() -> None:
    optimizer = LightningOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]))
    progress = DirectStep(pl.Trainer(logger=False), optimizer).progress
    assert callable(progress.increment_ready) and callable(progress.increment_completed)


def test_global_step_counts_every_direct_optimizer_step(cfg_factory) -> None:
    cfg = cfg_factory(
        "data=synthetic",
        "data.n_samples=1000",
        "loader.batch_size=100",
        "loader.batches_per_step=3",  # chunks of 3, 3 and 1 minibatches an epoch
        "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
        tracking=False,
    )
    prepare.run(cfg)
    report = train.run(cfg)
    assert report["global_step"] == 2 * 7  # 700 train rows: 7 optimizer steps an epoch


def test_mlflow_tracking_uri_is_set_for_a_block_and_restored(tmp_path) -> None:
    inner = f"sqlite:///{tmp_path / 'inner.db'}"
    before, env_before = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    with use_tracking_uri(inner):
        assert mlflow.get_tracking_uri() == inner
    assert mlflow.get_tracking_uri() == before
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before
