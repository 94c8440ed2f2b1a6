"""The trial a pruning job reports to, when one process runs several trials (the basic
launcher, a joblib worker) and loads each study once."""

from __future__ import annotations

import json

import optuna
import pytest

from mlpflow.tracking.optuna_trial import trial_key
from mlpflow.tracking.pruning import this_trial
from mlpflow.tracking.trials import PRUNER_ENV, STORAGE_ENV, STUDY_ENV, TRIAL_ENV

SPACE = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
PRUNER = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0}


def job_trial(monkeypatch: pytest.MonkeyPatch, study: optuna.Study) -> optuna.Trial:
    """Ask `study` for a trial as the sweeper does; the job's view of it, through the env."""
    asked = study.ask(SPACE)
    monkeypatch.setenv(STUDY_ENV, study.study_name)
    monkeypatch.setenv(TRIAL_ENV, trial_key(asked))
    trial = this_trial()
    assert trial.number == asked.number
    return trial


def test_later_trials_of_a_process_see_the_trials_finished_since_and_their_own_study(
    tmp_path, monkeypatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    monkeypatch.setenv(STORAGE_ENV, storage)
    monkeypatch.setenv(PRUNER_ENV, json.dumps(PRUNER))
    sweeper = optuna.create_study(study_name="a", storage=storage)
    other = optuna.create_study(study_name="b", storage=storage)

    first = job_trial(monkeypatch, sweeper)
    first.report(1.0, step=0)
    assert not first.should_prune()  # nothing finished to compare with
    sweeper.tell(first.number, 1.0)

    worse = job_trial(monkeypatch, sweeper)
    worse.report(5.0, step=0)
    assert worse.should_prune()  # the median of the finished trial, told after the first job
    assert sweeper.trials[worse.number].intermediate_values == {0: 5.0}

    elsewhere = job_trial(monkeypatch, other)
    elsewhere.report(5.0, step=0)
    assert not elsewhere.should_prune()  # study b has no finished trial
    assert other.trials[elsewhere.number].intermediate_values == {0: 5.0}
    assert len(sweeper.trials) == 2
