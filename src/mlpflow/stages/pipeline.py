"""The Hydra entry (`python -m mlpflow.train`, `mlpflow train`): cached prepare -> train ->
evaluate for one run, or for each trial of a multirun (`-m`)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mlpflow.config.compose import check_moved_overrides, conf_dir
from mlpflow.errors import friendly_errors


def use_run_dir(cfg: DictConfig) -> None:
    """Outside DVC, outputs go to Hydra's run dir and data to a shared prepared-data cache."""
    from hydra.core.hydra_config import HydraConfig

    from mlpflow.stages.prepare import cache_dir

    out = Path(HydraConfig.get().runtime.output_dir)
    cfg.paths.models = str(out / "models")
    cfg.paths.reports = str(out / "reports")
    cfg.paths.prepared = str(cache_dir(cfg))


def pipeline(cfg: DictConfig) -> float:
    """prepare (cached) -> train -> evaluate; returns the objective for sweeps."""
    from mlpflow.stages import evaluate, train
    from mlpflow.stages.prepare import ensure_prepared

    use_run_dir(cfg)
    ensure_prepared(cfg)
    report = train.run(cfg)
    evaluate.run(cfg)
    return report["best_score"]


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    from mlpflow.tracking.sweep import in_multirun, run_trial

    if in_multirun():
        return run_trial(pipeline, cfg)
    from mlpflow.config.schema import validate
    from mlpflow.console import print_config_tree

    with friendly_errors():
        validate(cfg)  # a bad value gets its one line before the tree, not after it
        print_config_tree(cfg)
        return pipeline(cfg)


def main() -> None:
    """Moved keys (data.batch_size, ...) get their one line before Hydra parses the overrides."""
    from mlpflow.console import quiet_mlflow

    quiet_mlflow()
    with friendly_errors():
        check_moved_overrides(sys.argv[1:])
    hydra_main()
