"""`hydra/sweeper=mlpflow_optuna`: the settings of a search (see conf/hparams_search/).

No `from __future__ import annotations` here: Hydra's plugin scan executes this module outside
sys.modules, where dataclasses cannot resolve string annotations (and OmegaConf wants real types).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


def _median_pruner() -> Dict[str, Any]:
    return {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3, "n_warmup_steps": 3}


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mlpflow_optuna_sweeper.sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the pruner, and hands its config to each trial
    direction: str = "min"  # min | max (or minimize | maximize), as the objective needs
    study_name: str = "mlpflow"  # the same name (and storage) continues an interrupted search
    storage: Optional[str] = None  # e.g. sqlite:///optuna.db; null: in memory, nothing to resume
    n_trials: int = 20  # finished trials (complete or pruned) the study should end with
    n_jobs: int = 1  # trials launched together (parallel with hydra/launcher=joblib)
    seed: Optional[int] = 42  # of the TPE sampler
    max_failure_rate: float = 0.5  # stop the search when more trials than this fail
    pruner: Dict[str, Any] = field(default_factory=_median_pruner)
    # Search space in Hydra's sweep syntax: choice(...), range(...), interval(...), tag(log, ...)
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="mlpflow_optuna", node=OptunaSweeperConf, provider="mlpflow"
)
