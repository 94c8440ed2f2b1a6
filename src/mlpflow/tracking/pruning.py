"""Optuna pruning from inside a trial: report the monitored val metric each epoch.

Active only when the Optuna sweeper launched this job (it sets the environment variables).
"""

from __future__ import annotations

import json
import os

import optuna
import pytorch_lightning as pl
from hydra.utils import instantiate

from mlpflow.tracking.optuna_trial import reopen_trial
from mlpflow.tracking.trials import PRUNER_ENV, STORAGE_ENV, STUDY_ENV, TRIAL_ENV


class OptunaPruning(pl.Callback):
    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        pruner = instantiate(json.loads(os.environ.get(PRUNER_ENV) or "null"))
        study = optuna.load_study(
            study_name=os.environ[STUDY_ENV], storage=os.environ[STORAGE_ENV], pruner=pruner
        )
        self.trial = reopen_trial(study, os.environ[TRIAL_ENV])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial pruned at epoch {epoch}")
