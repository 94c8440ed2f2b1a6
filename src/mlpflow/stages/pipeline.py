"""The Hydra entry (`python -m mlpflow.train`, `mlpflow train`): cached prepare -> train ->
evaluate for one run, or for each trial of a multirun (`-m`)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mlpflow.config.compose import check_overrides, command_line_overrides, conf_dir, is_multirun
from mlpflow.errors import friendly_errors


def use_run_dir(cfg: DictConfig) -> Path:
    """Outside DVC, reports go to Hydra's run dir and data to a shared prepared-data cache."""
    from hydra.core.hydra_config import HydraConfig

    from mlpflow.stages.prepare import cache_dir

    out = Path(HydraConfig.get().runtime.output_dir)
    cfg.paths.reports = str(out / "reports")
    cfg.paths.prepared = str(cache_dir(cfg))
    return out


def use_keyed_models_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Models go to the config's own dir (the same command finds an interrupted run there),
    linked from the run dir as models/."""
    from mlpflow.stages.resume import keyed_models_dir

    models = keyed_models_dir(cfg)
    cfg.paths.models = str(models)
    link = run_dir / "models"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(models, target_is_directory=True)


def pipeline(cfg: DictConfig) -> float:
    """prepare (cached) -> train -> evaluate; returns the objective for sweeps."""
    from mlpflow.config.compose import resolve_data_defaults
    from mlpflow.stages import evaluate, train
    from mlpflow.stages.prepare import ensure_prepared
    from mlpflow.tracking.trials import finished_trial

    run_dir = use_run_dir(cfg)
    meta = ensure_prepared(cfg)
    resolve_data_defaults(cfg, meta.task, meta.rows["train"])
    use_keyed_models_dir(cfg, run_dir)
    done = finished_trial(cfg)
    if done is not None:
        return done
    report = trained_here(cfg) or train.run(cfg)
    evaluate.run(cfg)
    return report["best_score"]


def trained_here(cfg: DictConfig) -> dict | None:
    """train's report when this run dir trained this config to the end but its evaluate did
    not finish: a job requeued (submitit) or stopped during evaluate evaluates again, rather than
    training a new run. A run dir whose evaluate finished, or that trained another config,
    trains anew, as a new command does."""
    from mlpflow.data.folds import CV_STATE, FOLDS_DIR
    from mlpflow.files import read_json
    from mlpflow.model.checkpoint import best_checkpoint
    from mlpflow.stages.evaluate import METRICS_FILE
    from mlpflow.stages.report import TRAIN_REPORT
    from mlpflow.stages.resume import STATE_FILE
    from mlpflow.tracking.lineage import config_digest

    reports, models = Path(cfg.paths.reports), Path(cfg.paths.models)
    network = best_checkpoint(models).exists() or (models / FOLDS_DIR).is_dir()  # or the folds'
    trained = (reports / TRAIN_REPORT).exists() and network
    unfinished = (models / STATE_FILE).exists() or (models / CV_STATE).exists()
    if not trained or (reports / METRICS_FILE).exists() or unfinished:
        return None
    report = read_json(reports / TRAIN_REPORT)
    if report.get("config_digest") != config_digest(cfg):
        return None
    from mlpflow.console import console

    console.print(f"train finished before in {reports.parent}: evaluating its best checkpoint")
    return report


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    from mlpflow.tracking.trials import in_multirun, run_trial

    if in_multirun():
        return run_trial(pipeline, cfg)
    from mlpflow.config.schema import validate
    from mlpflow.console import print_config_tree, print_run_summary

    with friendly_errors():
        validate(cfg)  # a bad value gets its one line before the tree, not after it
        print_config_tree(cfg)
        objective = pipeline(cfg)
        print_run_summary(cfg.paths.reports)
        return objective


def main() -> None:
    """An unknown option or key, or a moved one (data.batch_size, ...), gets its one line
    before Hydra composes the config (Hydra's own error is its search path, exit 1)."""
    from mlpflow.console import quiet_mlflow

    quiet_mlflow()
    with friendly_errors():
        argv = sys.argv[1:]
        check_overrides(command_line_overrides(argv), is_multirun(argv))
    hydra_main()
