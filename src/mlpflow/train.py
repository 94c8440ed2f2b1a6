"""Stage train: prepared data + config -> best checkpoint, reports/train.json, an MLflow run.

`python -m mlpflow.train [overrides]` (or `mlpflow train`) composes conf/ with Hydra, prepares
the data it needs, trains and evaluates; `dvc repro` calls `run` with params.yaml instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mlpflow.config import check_loss_fits, conf_dir, validate
from mlpflow.errors import TrackingError, friendly_errors
from mlpflow.files import write_json

TRAIN_REPORT = "train.json"


def _tracking_logger(cfg: DictConfig, meta: dict[str, Any]) -> Any:
    """The MLFlowLogger for this run, or None when tracking is off or optional and down."""
    from mlpflow import tracking

    if not cfg.tracking.enabled:
        return None
    uri = tracking.tracking_uri(cfg)
    try:
        tracking.ensure_store(uri, cfg.tracking.experiment)
    except TrackingError as error:
        if cfg.tracking.required:
            raise
        warnings.warn(
            f"{error}; training without tracking: this run is NOT in MLflow", stacklevel=1
        )
        return None
    return tracking.make_logger(cfg, uri, tags=tracking.lineage_tags(cfg, meta))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train on cfg.paths.prepared; write the checkpoint and train.json; return the report."""
    validate(cfg)
    from mlpflow.data.splits import load_meta

    meta = load_meta(cfg.paths.prepared)
    check_loss_fits(cfg.loss.name, meta["task"], cfg.data.name)
    logger = _tracking_logger(cfg, meta)

    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from mlpflow.console import quiet_lightning
    from mlpflow.data.datamodule import TabularDataModule
    from mlpflow.model.module import MLPModule
    from mlpflow.tracking import flatten, run_name, tracking_uri

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
    target_mean, target_scale = datamodule.target_stats()
    section = lambda key: OmegaConf.to_container(cfg[key], resolve=True)  # noqa: E731
    module = MLPModule(
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
    # `callbacks.<name>=null` switches one off.
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger or False)
    if logger is not None:
        logger.log_hyperparams(flatten(cfg))
        logger.experiment.log_text(
            logger.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml"
        )
    trainer.fit(module, datamodule=datamodule)

    best = Path(trainer.checkpoint_callback.best_model_path)
    if logger is not None:
        logger.experiment.log_artifact(logger.run_id, str(best), "checkpoints")
    best_epoch = torch.load(best, map_location="cpu", weights_only=True)["epoch"]
    report = {
        "run_id": logger.run_id if logger else None,
        "run_name": run_name(cfg) if logger else None,
        "experiment": cfg.tracking.experiment if logger else None,
        "experiment_id": logger.experiment_id if logger else None,
        "tracking_uri": tracking_uri(cfg) if logger else None,
        "best_epoch": best_epoch,
        "epochs_run": trainer.current_epoch,
        "checkpoint": best.name,
        "monitor": cfg.monitor.metric,
        "best_score": float(trainer.checkpoint_callback.best_model_score),
        "global_step": trainer.global_step,
    }
    write_json(Path(cfg.paths.reports) / TRAIN_REPORT, report)
    return report


def use_run_dir(cfg: DictConfig) -> None:
    """Outside DVC, outputs go to Hydra's run dir and data to a shared prepared-data cache."""
    from hydra.core.hydra_config import HydraConfig

    from mlpflow.prepare import cache_dir

    out = Path(HydraConfig.get().runtime.output_dir)
    cfg.paths.models = str(out / "models")
    cfg.paths.reports = str(out / "reports")
    cfg.paths.prepared = str(cache_dir(cfg))


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from mlpflow import evaluate
    from mlpflow.console import print_config_tree
    from mlpflow.prepare import ensure_prepared

    with friendly_errors():
        print_config_tree(cfg)
        validate(cfg)
        use_run_dir(cfg)
        ensure_prepared(cfg)
        run(cfg)
        metrics = evaluate.run(cfg)
        return metrics.get(f"test/{cfg.monitor.metric.removeprefix('val/')}")


if __name__ == "__main__":
    main()
