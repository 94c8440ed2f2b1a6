"""train's completion: the best checkpoint and model logged, reports/train.json written last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mlpflow.files import write_json
from mlpflow.model.checkpoint import last_checkpoint, read_checkpoint
from mlpflow.notice import warn
from mlpflow.tracking.lineage import config_digest
from mlpflow.tracking.store import tracking_uri
from mlpflow.tracking.trials import objective_name

TRAIN_REPORT = "train.json"
THRESHOLD = "threshold"  # the run's metric and train.json's key: the model's auto threshold


def checkpoint_facts(cfg: DictConfig, trainer: Any) -> dict[str, Any]:
    """Best epoch and score, epochs run and global step (and, with evaluate.threshold=auto, the
    threshold the best epoch chose), read from the checkpoint files: after ddp_spawn, this
    process's trainer and callbacks are not restored."""
    best = Path(trainer.checkpoint_callback.best_model_path)
    saved = read_checkpoint(best)
    best_score = float(
        next(
            state["best_model_score"]
            for state in saved["callbacks"].values()
            if state.get("monitor") == cfg.monitor.metric and "best_model_score" in state
        )
    )
    last_path = last_checkpoint(best.parent)
    last = (
        read_checkpoint(last_path)
        if last_path.exists()
        else {"epoch": trainer.current_epoch - 1, "global_step": trainer.global_step}
    )
    facts = {
        "best_epoch": saved["epoch"],
        "epochs_run": last["epoch"] + 1,
        "checkpoint": best.name,
        "monitor": cfg.monitor.metric,
        "best_score": best_score,
        "global_step": last["global_step"],
        "path": best,
    }
    if saved["hyper_parameters"].get("auto_threshold"):
        facts[THRESHOLD] = float(saved["hyper_parameters"]["threshold"])
    return facts


def _log_best(cfg: DictConfig, logger: Any, facts: dict[str, Any]) -> tuple[str | None, ...]:
    """The best checkpoint (a CV fold's refit, when it has one), the pyfunc model (a LoggedModel
    at the best epoch) and the objective into the run; the run's name and the model's id."""
    from mlpflow.serving.export import log_model  # MLflow's model code, only for a tracked run

    client, run_id, best = logger.experiment, logger.run_id, facts["path"]
    logger.safely(client.log_artifact, run_id, str(best), "checkpoints")
    model = logger.safely(log_model, logger, best, cfg.paths.prepared, facts["best_epoch"])
    logger.safely(client.log_metric, run_id, objective_name(cfg), facts["best_score"])
    if THRESHOLD in facts:
        logger.safely(client.log_metric, run_id, THRESHOLD, facts[THRESHOLD])
    run = logger.safely(client.get_run, run_id)
    return (run.info.run_name if run else None), (model.model_id if model else None)


def write_train_report(
    cfg: DictConfig, trainer: Any, logger: Any, refit: Path | None = None
) -> dict[str, Any]:
    """Log the best checkpoint and model, or a CV fold's `refit` in their place; write
    train.json, the stage's completion mark."""
    facts = checkpoint_facts(cfg, trainer)
    if refit is not None:
        facts.update(path=refit, checkpoint=refit.name, refit_epochs=facts["best_epoch"] + 1)
    run_name, model_id = _log_best(cfg, logger, facts) if logger else (None, None)
    facts.pop("path")
    report = {
        "run_id": logger.run_id if logger else None,
        "run_name": run_name,
        "model_id": model_id,
        "tracking": tracking_state(logger),
        "experiment": cfg.tracking.experiment if logger else None,
        "experiment_id": logger.experiment_id if logger else None,
        "tracking_uri": tracking_uri(cfg) if logger else None,
        "config_digest": config_digest(cfg),  # which config trained this (stages/pipeline.py)
        **facts,
    }
    write_json(Path(cfg.paths.reports) / TRAIN_REPORT, report)
    if logger is not None and logger.lost:
        warn(
            f"MLflow run {logger.run_id} is incomplete ({logger.lost}); the DVC "
            "outputs are complete"
        )
    return report


def tracking_state(logger: Any) -> str:
    """'complete', 'off', or 'incomplete: <what failed>' when the store went away mid-run."""
    if logger is None:
        return "off"
    return f"incomplete: {logger.lost}" if logger.lost else "complete"
