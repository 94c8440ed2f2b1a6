"""The one adapter over Optuna internals: a trial asked in the sweeper's process and reported to
from the Hydra job that trains it (another process, with joblib or a cluster launcher).

Optuna hands a trial to the code that evaluates it as a `Trial` object in the same process
(`study.optimize`, `study.ask`); a Hydra job gets environment variables instead. So the sweeper
passes the trial's id in the study's storage, `Trial._trial_id` (private; a FrozenTrial keeps it
private too, and mapping the public `trial.number` to it takes storage methods that Optuna keeps
for itself), and the job rebuilds the trial on the study it loads from the same storage with
`optuna.trial.Trial(study, trial_id)`, a documented constructor that Optuna advises against
calling. tests/test_private_apis.py fails, naming this module, if an upgrade changes either.
"""

from __future__ import annotations

import optuna


def trial_key(trial: optuna.trial.Trial) -> str:
    """What a job needs to find `trial` again: its id in the study's storage, as text."""
    return str(trial._trial_id)


def reopen_trial(study: optuna.Study, key: str) -> optuna.trial.Trial:
    """The trial `key` (`trial_key`) names, on `study` loaded from the same storage: its
    `report` and `should_prune` read and write that trial."""
    return optuna.trial.Trial(study, int(key))
