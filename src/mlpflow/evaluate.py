"""Stage evaluate: best checkpoint + test split -> metrics.json, DVC plots, figures, into the
same MLflow run as train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mlpflow.config import validate
from mlpflow.console import warn
from mlpflow.errors import DataError
from mlpflow.files import read_json, write_json

METRICS_FILE = "metrics.json"


def run(cfg: DictConfig) -> dict[str, float]:
    """Test the best checkpoint; write reports/metrics.json, plots/ and figures/; log them."""
    validate(cfg)
    reports = Path(cfg.paths.reports)
    train_report_path = reports / "train.json"
    if not train_report_path.exists():
        raise DataError(f"{train_report_path} not found: run the train stage first (dvc repro)")
    train_report = read_json(train_report_path)

    import pytorch_lightning as pl

    from mlpflow.console import quiet_lightning
    from mlpflow.data.datamodule import TabularDataModule
    from mlpflow.evaluation.curves import write_plots
    from mlpflow.evaluation.figures import write_figures
    from mlpflow.model.module import MLPModule
    from mlpflow.serving import load_weights
    from mlpflow.tracking import make_logger, tracking_uri

    quiet_lightning()
    checkpoint = Path(cfg.paths.models) / "best.ckpt"
    load_weights(checkpoint)  # safe load first: a corrupt or foreign file gets a clear error
    # The threshold is evaluate's own param: metrics, confusion and plots all use the current one.
    module = MLPModule.load_from_checkpoint(
        checkpoint,
        map_location="cpu",
        weights_only=True,
        threshold=cfg.evaluate.threshold,
    )
    datamodule = TabularDataModule(
        cfg.paths.prepared, batch_size=cfg.data.batch_size, batches_per_step=1, seed=cfg.seed
    )
    logger = None
    if cfg.tracking.enabled and train_report.get("run_id"):
        logger = make_logger(
            cfg,
            train_report.get("tracking_uri") or tracking_uri(cfg),
            run_id=train_report["run_id"],
        )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=logger or False,
        deterministic=True,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    metrics = {k: float(v) for k, v in trainer.test(module, datamodule, verbose=False)[0].items()}

    x_test, y_test = datamodule.splits["test"]
    scores = module.predict_scores(x_test).numpy()
    curve_args: dict[str, Any] = {
        "class_names": datamodule.meta.get("classes"),
        "threshold": cfg.evaluate.threshold,
        "calibration_bins": cfg.evaluate.calibration_bins,
    }
    task = datamodule.meta["task"]
    plots = write_plots(task, y_test.numpy(), scores, reports / "plots", **curve_args)
    figures = write_figures(task, y_test.numpy(), scores, reports / "figures", **curve_args)
    metrics_path = write_json(reports / METRICS_FILE, _nested(metrics))
    if logger is not None:
        client, run_id = logger.experiment, logger.run_id
        for folder, paths in (("plots", plots), ("figures", figures), ("reports", [metrics_path])):
            for path in paths:
                logger.safely(client.log_artifact, run_id, str(path), folder)
        if logger.lost:
            warn(
                f"MLflow run {run_id} is missing evaluate's results ({logger.lost}); "
                "reports/ is complete"
            )
    return metrics


def _nested(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """{'test/f1': x} -> {'test': {'f1': x}}: DVC shows it as test.f1."""
    nested: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        split, name = key.split("/", 1)
        nested.setdefault(split, {})[name] = value
    return nested
