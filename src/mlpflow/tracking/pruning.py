"""Optuna pruning from inside a trial: report the monitored val metric each epoch.

Active only when the Optuna sweeper launched this job (it sets the environment variables).
"""

from __future__ import annotations

import json
import os

import pytorch_lightning as pl

from mlpflow.tracking.trials import PRUNER_ENV, STORAGE_ENV, STUDY_ENV, TRIAL_ENV


class OptunaPruning(pl.Callback):
    def __init__(self, monitor: str) -> None:
        import optuna

        self.monitor = monitor
        from hydra.utils import instantiate

        storage = optuna.storages.get_storage(os.environ[STORAGE_ENV])
        pruner = instantiate(json.loads(os.environ.get(PRUNER_ENV) or "null"))
        study = optuna.load_study(study_name=os.environ[STUDY_ENV], storage=storage, pruner=pruner)
        self.trial = optuna.trial.Trial(study, int(os.environ[TRIAL_ENV]))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import optuna

        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial pruned at epoch {epoch}")
