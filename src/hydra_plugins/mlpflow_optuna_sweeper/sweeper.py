"""An Optuna search as a Hydra sweeper: ask a batch of trials, launch them, tell the results.

Each trial learns its study and trial (`mlpflow.tracking.optuna_trial`) through environment
variables set with Hydra's `hydra.job.env_set`, so `mlpflow.tracking.pruning` can report
intermediate val metrics from inside the job (even in a joblib worker process) and prune it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlpflow.tracking.optuna_trial import trial_key
from mlpflow.tracking.trials import PRUNER_ENV, STORAGE_ENV, STUDY_ENV, TRIAL_ENV

log = logging.getLogger(__name__)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """Hydra sweep syntax -> an Optuna distribution."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(
            list(override.sweep_iterator(transformer=Transformer.encode))
        )
    if isinstance(value, RangeSweep):
        return optuna.distributions.IntDistribution(
            int(value.start), int(value.stop) - int(value.step), step=int(value.step)
        )
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(f"{override.input_line}: use choice(), range() or interval() to search it")


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        direction: str,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        seed: int | None,
        max_failure_rate: float,
        pruner: DictConfig,  # a _target_ config: built here, and again inside each trial
        params: dict[str, str],
    ) -> None:
        self.direction = {"min": "minimize", "max": "maximize"}.get(direction, direction)
        self.study_name, self.storage = study_name, storage
        self.n_trials, self.n_jobs, self.seed = n_trials, n_jobs, seed
        self.max_failure_rate, self.params = max_failure_rate, params
        self.pruner_config = json.dumps(OmegaConf.to_container(pruner, resolve=True))
        self.pruner = instantiate(pruner)
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.parser = OverridesParser.create(config_loader=hydra_context.config_loader)

    def _space(self, arguments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """Searched keys -> distributions; every other override is passed to all trials."""
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        space: dict[str, Any] = {}
        fixed: list[str] = []
        for override in self.parser.parse_overrides(lines):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
        return space, fixed

    def sweep(self, arguments: list[str]) -> None:
        space, fixed = self._space(arguments)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            direction=self.direction,
            sampler=optuna.samplers.TPESampler(seed=self.seed),
            pruner=self.pruner,
            load_if_exists=True,
        )
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # Left RUNNING by an interrupted search: it will not finish; run it again.
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        if done:
            log.info("study %s resumes with %d finished trials", self.study_name, done)
        failures, launched, job_idx = 0, 0, done
        while done < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = [self._overrides(study, trial, fixed) for trial in trials]
            for trial, result in zip(trials, self.launcher.launch(batch, job_idx), strict=True):
                state, value = self._outcome(result)
                study.tell(trial, value if state is None else None, state=state)
                failures += state == optuna.trial.TrialState.FAIL
            launched += len(trials)
            job_idx += len(trials)
            done = len(study.get_trials(deepcopy=False, states=FINISHED))
            if failures / launched > self.max_failure_rate:
                raise RuntimeError(
                    f"{failures} of {launched} trials failed "
                    f"(max_failure_rate={self.max_failure_rate}); search stopped"
                )
        best = study.best_trial
        log.info("best trial #%d: %s = %s", best.number, best.params, best.value)

    def _overrides(self, study: optuna.Study, trial: optuna.Trial, fixed: list[str]) -> list[str]:
        env = {
            STORAGE_ENV: self.storage or "",
            STUDY_ENV: study.study_name,
            TRIAL_ENV: trial_key(trial),
            PRUNER_ENV: self.pruner_config,
        }
        env_overrides = [f"++hydra.job.env_set.{k}='{v}'" for k, v in env.items()]
        return [*fixed, *(f"{k}={v}" for k, v in trial.params.items()), *env_overrides]

    @staticmethod
    def _outcome(result: Any) -> tuple[optuna.trial.TrialState | None, float | None]:
        """(state, objective) of a finished job. Reading a failed job's `return_value` raises
        its error, Hydra's "Error executing job with overrides" line first: the line stays for
        a failure and goes for a pruned trial, which is not one."""
        hydra_says = io.StringIO()
        try:
            with contextlib.redirect_stderr(hydra_says):
                value = result.return_value
        except optuna.TrialPruned:
            return optuna.trial.TrialState.PRUNED, None
        except Exception:
            sys.stderr.write(hydra_says.getvalue())
            return optuna.trial.TrialState.FAIL, None
        if value is None or not math.isfinite(value):
            return optuna.trial.TrialState.FAIL, None
        return None, float(value)
