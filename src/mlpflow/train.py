"""Stage train: prepared data + config -> best checkpoint, reports/train.json, an MLflow run.

`python -m mlpflow.train [overrides]` (or `mlpflow train`) composes conf/ with Hydra, prepares
the data it needs, trains and evaluates; `dvc repro` calls `run` with params.yaml instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mlpflow.config import check_loss_fits, conf_dir, validate
from mlpflow.console import warn
from mlpflow.errors import TrackingError, friendly_errors
from mlpflow.files import write_json

TRAIN_REPORT = "train.json"


def _tracking_logger(cfg: DictConfig, meta: dict[str, Any], run_id: str | None) -> Any:
    """The MLFlowLogger for this run (a resumed one continues `run_id`), or None when tracking
    is off, or optional and unreachable."""
    from mlpflow import tracking
    from mlpflow.sweep import trial_tags

    if not cfg.tracking.enabled:
        return None
    uri = tracking.tracking_uri(cfg)
    try:
        tracking.ensure_store(uri, cfg.tracking.experiment)
    except TrackingError as error:
        if cfg.tracking.required:
            raise
        warn(f"{error}; training without tracking: this run is NOT in MLflow")
        return None
    tags = {**tracking.lineage_tags(cfg, meta), **trial_tags()}
    name = tracking.run_name(cfg) + (f"-j{tags['sweep.job']}" if "sweep.job" in tags else "")
    return tracking.make_logger(cfg, uri, tags=tags, name=name, run_id=run_id)


def build_module(cfg: DictConfig, meta: dict[str, Any], datamodule: Any) -> Any:
    from mlpflow.model.module import MLPModule

    target_mean, target_scale = datamodule.target_stats()
    section = lambda key: OmegaConf.to_container(cfg[key], resolve=True)  # noqa: E731
    return MLPModule(
        n_features=meta["n_features"],
        n_outputs=meta["n_outputs"],
        task=meta["task"],
        model=section("model"),
        loss=section("loss"),
        regularization=section("regularization"),
        optimizer=section("optimizer"),
        scheduler=section("scheduler"),
        monitor=section("monitor"),
        batch_size=datamodule.train_batch_size,
        threshold=cfg.evaluate.threshold,
        target_mean=target_mean,
        target_scale=target_scale,
    )


def build_trainer(cfg: DictConfig, logger: Any) -> Any:
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mlpflow.sweep import in_multirun, pruning_requested

    # `callbacks.<name>=null` switches one off.
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    if pruning_requested():
        from mlpflow.pruning import OptunaPruning

        callbacks.append(OptunaPruning(cfg.monitor.metric))
    # `callbacks.progress_bar=null` means no bar at all, not Lightning's default one.
    has_bar = any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks)
    extra: dict[str, Any] = {}
    if cfg.trainer.get("strategy") == "ddp" and in_multirun():
        # ddp re-runs the command line in each worker: inside a multirun, the whole sweep.
        warn("trainer.strategy=ddp inside a multirun: using ddp_spawn")
        extra["strategy"] = "ddp_spawn"
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=logger or False,
        enable_progress_bar=has_bar,
        **extra,
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train on cfg.paths.prepared; write the checkpoint and train.json; return the report.

    A run of the same config killed earlier resumes from its last checkpoint, into its MLflow run.
    """
    validate(cfg)
    from mlpflow import resume
    from mlpflow.data.splits import load_meta
    from mlpflow.tracking import config_hash

    meta = load_meta(cfg.paths.prepared)
    check_loss_fits(cfg.loss.name, meta["task"], cfg.data.name)
    chash = config_hash(cfg)
    start = resume.find(cfg.paths.models, chash)
    logger = _tracking_logger(cfg, meta, start.run_id)

    import pytorch_lightning as pl

    from mlpflow.console import quiet_lightning
    from mlpflow.data.datamodule import TabularDataModule
    from mlpflow.tracking import flatten

    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = TabularDataModule(
        cfg.paths.prepared,
        batch_size=cfg.data.batch_size,
        batches_per_step=cfg.data.batches_per_step,
        seed=cfg.seed,
        full_batch=cfg.optimizer.full_batch,
    )
    datamodule.setup("fit")
    module = build_module(cfg, meta, datamodule)
    trainer = build_trainer(cfg, logger)
    if trainer.is_global_zero:  # under `ddp` every worker process runs this function
        resume.begin(cfg.paths.models, chash, logger.run_id if logger else None)
    if logger is not None and start.checkpoint is None:
        logger.log_hyperparams(flatten(cfg))
        logger.experiment.log_text(
            logger.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml"
        )
    trainer.fit(module, datamodule=datamodule, ckpt_path=start.checkpoint)
    if not trainer.is_global_zero:
        return {}
    report = finish(cfg, trainer, logger)
    resume.finish(cfg.paths.models)
    return report


def finish(cfg: DictConfig, trainer: Any, logger: Any) -> dict[str, Any]:
    """Log the best checkpoint and model; write train.json, the stage's completion mark."""
    import torch

    from mlpflow.sweep import objective_name
    from mlpflow.tracking import tracking_uri

    best = Path(trainer.checkpoint_callback.best_model_path)
    saved = torch.load(best, map_location="cpu", weights_only=True)
    # From the files: after ddp_spawn, this process's trainer and callbacks are not restored.
    best_score = float(
        next(
            state["best_model_score"]
            for state in saved["callbacks"].values()
            if state.get("monitor") == cfg.monitor.metric and "best_model_score" in state
        )
    )
    last_path = best.with_name("last.ckpt")
    last = (
        torch.load(last_path, map_location="cpu", weights_only=True)
        if last_path.exists()
        else {"epoch": trainer.current_epoch - 1, "global_step": trainer.global_step}
    )
    run_name = None
    if logger is not None:
        from mlpflow.export import log_model

        client, run_id = logger.experiment, logger.run_id
        logger.safely(client.log_artifact, run_id, str(best), "checkpoints")
        logger.safely(log_model, logger, best, cfg.paths.prepared)
        logger.safely(client.log_metric, run_id, objective_name(cfg), best_score)
        run = logger.safely(client.get_run, run_id)
        run_name = run.info.run_name if run else None
    report = {
        "run_id": logger.run_id if logger else None,
        "run_name": run_name,
        "tracking": tracking_state(logger),
        "experiment": cfg.tracking.experiment if logger else None,
        "experiment_id": logger.experiment_id if logger else None,
        "tracking_uri": tracking_uri(cfg) if logger else None,
        "best_epoch": saved["epoch"],
        "epochs_run": last["epoch"] + 1,
        "checkpoint": best.name,
        "monitor": cfg.monitor.metric,
        "best_score": best_score,
        "global_step": last["global_step"],
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


def use_run_dir(cfg: DictConfig) -> None:
    """Outside DVC, outputs go to Hydra's run dir and data to a shared prepared-data cache."""
    from hydra.core.hydra_config import HydraConfig

    from mlpflow.prepare import cache_dir

    out = Path(HydraConfig.get().runtime.output_dir)
    cfg.paths.models = str(out / "models")
    cfg.paths.reports = str(out / "reports")
    cfg.paths.prepared = str(cache_dir(cfg))


def pipeline(cfg: DictConfig) -> float:
    """prepare (cached) -> train -> evaluate; returns the objective for sweeps."""
    from mlpflow import evaluate
    from mlpflow.prepare import ensure_prepared

    use_run_dir(cfg)
    ensure_prepared(cfg)
    report = run(cfg)
    evaluate.run(cfg)
    return report["best_score"]


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def main(cfg: DictConfig) -> float:
    from mlpflow.sweep import in_multirun, run_trial

    if in_multirun():
        return run_trial(pipeline, cfg)
    from mlpflow.console import print_config_tree

    with friendly_errors():
        validate(cfg)  # a bad value gets its one line before the tree, not after it
        print_config_tree(cfg)
        return pipeline(cfg)


if __name__ == "__main__":
    main()
