"""The private Lightning, MLflow and Optuna APIs mlpflow relies on, each behind one adapter
(docs/architecture.md, "Private APIs we rely on"), and the MLFlowLogger behaviour that replaced
two more. An upgrade that moves one fails here, naming the adapter to fix, instead of silently
miscounting steps, logging into the wrong store or pruning the wrong trial."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
import optuna
import pytest
import pytorch_lightning as pl
import torch
from mlflow import MlflowClient
from pytorch_lightning.core.optimizer import LightningOptimizer

from mlpflow.model.fast_step import DirectStep
from mlpflow.stages import prepare, train
from mlpflow.tracking.logger import TrackingLogger
from mlpflow.tracking.optuna_trial import reopen_trial, trial_key
from mlpflow.tracking.store import use_tracking_uri


@contextmanager
def relied_on(adapter: str, what: str) -> Iterator[None]:
    """A failure inside the block says what changed and which adapter to fix."""
    try:
        yield
    except (AttributeError, TypeError, ImportError, KeyError, AssertionError) as error:
        pytest.fail(f"{what} changed ({type(error).__name__}: {error}); fix {adapter}")


# --- Lightning: the manual-optimization step counter (model/fast_step.py) ---------------------


def test_lightning_exposes_the_manual_optimization_step_counter() -> None:
    optimizer = LightningOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]))
    with relied_on("mlpflow/model/fast_step.py", "Lightning's optim_step_progress"):
        progress = DirectStep(pl.Trainer(logger=False), optimizer, None).progress
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
    with relied_on("mlpflow/model/fast_step.py", "how trainer.global_step counts steps"):
        assert report["global_step"] == 2 * 7  # 700 train rows: 7 optimizer steps an epoch


# --- MLflow: the global tracking URI for one block (tracking/store.py::use_tracking_uri) -------


def test_mlflow_tracking_uri_is_set_for_a_block_and_restored(tmp_path) -> None:
    inner = f"sqlite:///{tmp_path / 'inner.db'}"
    before, env_before = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    with relied_on("mlpflow/tracking/store.py::use_tracking_uri", "MLflow's _use_tracking_uri"):
        with use_tracking_uri(inner):
            assert mlflow.get_tracking_uri() == inner
        assert mlflow.get_tracking_uri() == before
        assert os.environ.get("MLFLOW_TRACKING_URI") == env_before


# --- Optuna: a trial handed from the sweeper to its job (tracking/optuna_trial.py) -------------


def test_an_asked_trial_is_reopened_in_another_study_object_and_reported_to(tmp_path) -> None:
    """As the sweeper asks and a job (another process) loads the study from the storage."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweeper = optuna.create_study(study_name="s", storage=storage)
    sweeper.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # another trial first
    asked = sweeper.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    job = optuna.load_study(study_name="s", storage=storage, pruner=optuna.pruners.NopPruner())
    with relied_on("mlpflow/tracking/optuna_trial.py", "Optuna's Trial._trial_id or Trial()"):
        key = trial_key(asked)
        trial = reopen_trial(job, key)
        trial.report(0.25, step=3)
        assert trial.should_prune() is False
        assert trial.number == asked.number
        assert sweeper.trials[asked.number].intermediate_values == {3: 0.25}


# --- Lightning's MLFlowLogger: public behaviour that replaced its private attributes ----------
# (tracking/logger.py: the run's id read without creating the run; the URI from the caller)


def test_mlflow_logger_creates_its_run_on_first_use_of_experiment(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = TrackingLogger(experiment_name="e", tracking_uri=uri, run_name="r")
    adapter = "mlpflow/tracking/logger.py::TrackingLogger.existing_run_id"
    with relied_on(adapter, "when MLFlowLogger creates its run"):
        assert logger.existing_run_id() is None  # nothing asked of the store yet
        assert MlflowClient(uri).get_experiment_by_name("e") is None
        client = logger.experiment
        run_id = logger.existing_run_id()
        assert run_id is not None and run_id == logger.run_id
        assert client.get_run(run_id).info.run_name == "r"


def test_a_continued_runs_id_is_known_before_the_store_answers(tmp_path) -> None:
    """Continuing a run on a store that is down: its id names the run in the warning."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = TrackingLogger(experiment_name="e", tracking_uri=uri, run_id="0" * 32)
    with relied_on("mlpflow/tracking/logger.py", "MLFlowLogger(run_id=...)"):
        assert logger.existing_run_id() == "0" * 32
