"""Optuna pruning from inside a trial: report the monitored val metric each epoch, or under
cross-validation the running mean of the folds' held-out scores after each fold.

Active only when the Optuna sweeper launched this job (it sets the environment variables).
"""

from __future__ import annotations

import json
import os
from functools import cache

import optuna
import pytorch_lightning as pl
from hydra.utils import instantiate

from mlpflow.tracking.optuna_trial import reopen_trial
from mlpflow.tracking.trials import PRUNER_ENV, STORAGE_ENV, STUDY_ENV, TRIAL_ENV


def this_trial() -> optuna.trial.Trial:
    """The trial the sweeper asked for this job, on its study loaded from the shared storage."""
    study = _study(os.environ[STORAGE_ENV], os.environ[STUDY_ENV], os.environ.get(PRUNER_ENV))
    return reopen_trial(study, os.environ[TRIAL_ENV])


@cache
def _study(storage: str, name: str, pruner: str | None) -> optuna.Study:
    """The study, loaded once per process: the trials a process runs (the basic launcher's,
    a joblib worker's) share it, as `study.optimize`'s do. A load opens the storage and checks
    its schema (~0.1 s of a small trial); the handle reads the trials from the storage each
    time the pruner asks."""
    return optuna.load_study(
        study_name=name, storage=storage, pruner=instantiate(json.loads(pruner or "null"))
    )


def report_fold(value: float, fold: int) -> None:
    """Report the objective so far (the mean over the folds done) as step `fold`; raise
    TrialPruned when the pruner stops the trial there."""
    trial = this_trial()
    trial.report(value, step=fold)
    if trial.should_prune():
        raise optuna.TrialPruned(f"trial pruned after fold {fold}")


class OptunaPruning(pl.Callback):
    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.trial = this_trial()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial pruned at epoch {epoch}")
