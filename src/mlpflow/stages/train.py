"""Stage train: prepared data + config -> best checkpoint, reports/train.json, an MLflow run.

A run of the same config killed earlier resumes from its last checkpoint, into its MLflow run
(`stages.resume`). `dvc repro` calls `run` with params.yaml; `python -m mlpflow.train` calls it
from the Hydra pipeline (`stages.pipeline`). Prepared data cut into folds (`cv=kfold`) trains a
network per fold (`stages.cross_validation`), each through this same `run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlpflow.config.compose import resolve_data_defaults
from mlpflow.config.schema import (
    AUTO,
    CVConfig,
    check_loss_fits,
    check_monitor_fits,
    check_threshold_fits,
    validate,
)
from mlpflow.notice import warn
from mlpflow.stages import resume
from mlpflow.stages.allocator import reuse_freed_memory

if TYPE_CHECKING:
    from mlpflow.stages.cross_validation import FoldRun


def run(cfg: DictConfig, fold: FoldRun | None = None) -> dict[str, Any]:
    """Train on cfg.paths.prepared (each of its folds, when it has them); write the checkpoint
    and train.json; return the report. A `fold` trains in a run nested under its CV run."""
    validate(cfg)
    reuse_freed_memory()
    from mlpflow.data.folds import load_folds
    from mlpflow.data.prepared import load_meta
    from mlpflow.model.metrics import metric_names
    from mlpflow.stages.report import write_train_report

    meta = load_meta(cfg.paths.prepared)
    check_loss_fits(cfg.loss.name, meta.task, cfg.data.name)
    check_threshold_fits(cfg.evaluate.threshold, meta.task)
    resolve_data_defaults(cfg, meta.task, meta.rows["train"])
    check_monitor_fits(cfg.monitor.metric, meta.task, metric_names(meta.task))
    if fold is None and (folds := load_folds(cfg.paths.prepared)) is not None:
        from mlpflow.stages import cross_validation

        return cross_validation.run(cfg, folds, meta, train_fold=run)
    start, identity = resume_point(cfg, meta.fingerprint)
    logger = None
    if cfg.tracking.enabled:  # MLflow's modules (about a second to import) only when tracked
        from mlpflow.tracking.logger import training_logger

        logger = training_logger(cfg, meta, start.run_id, fold.tags() if fold else {})

    import pytorch_lightning as pl

    from mlpflow.console import quiet_lightning
    from mlpflow.stages.interrupt import StopOnSignal
    from mlpflow.tracking.system import system_metrics

    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, meta, datamodule)
    stop = StopOnSignal()
    trainer = build_trainer(cfg, logger, stop, epoch_pruning=fold is None)
    if trainer.is_global_zero:  # under `ddp` every worker process runs this function
        resume.begin(cfg.paths.models, identity, logger.run_id if logger else None)
    sampled = logger if trainer.is_global_zero else None  # one sampler per run, rank 0's
    try:
        with (
            stop.installed(),
            system_metrics(cfg, sampled, identity.store, bool(start.checkpoint)),
        ):
            if logger is not None:
                from mlpflow.tracking.logger import log_run_inputs

                log_run_inputs(logger, cfg, meta)
            trainer.fit(module, datamodule=datamodule, ckpt_path=start.checkpoint)
            refitted = fold is not None and CVConfig.parse(cfg.get("cv")).refit
            member = refit(cfg, meta, trainer, stop) if refitted else None
        if not trainer.is_global_zero:
            return {}
        report = write_train_report(cfg, trainer, logger, member)
    except BaseException as error:
        raise stopped(error, stop.signum, logger, trainer) from None
    resume.finish(cfg.paths.models)
    return report


def resume_point(cfg: DictConfig, data: str) -> tuple[resume.ResumePoint, resume.RunIdentity]:
    """Where this config's interrupted run on this data stopped (nothing: a fresh start), and
    its identity (`resume.identity`)."""
    identity = resume.identity(cfg, data)
    store = identity.store
    if not cfg.tracking.get("resume", True):  # opted out: an interrupted run stays as it is
        start = resume.discard(cfg.paths.models)
    else:
        start = resume.find(cfg.paths.models, identity)
    if start.run_id and store:
        from mlpflow.tracking.logger import run_exists

        if not run_exists(store, start.run_id):
            warn(f"MLflow run {start.run_id} was deleted: training this config from the start")
            start = resume.discard(cfg.paths.models)
    if start.checkpoint is not None:
        from mlpflow.console import console

        console.print(f"resuming MLflow run {start.run_id} from {start.checkpoint}")
    return start, identity


def stopped(error: BaseException, signum: int | None, logger: Any, trainer: Any) -> BaseException:
    """End the run KILLED (stopped by a signal or an exit: resumable) or FAILED (an error);
    return what to raise: RunInterrupted (exit 128 + signum) for a signal, else `error`."""
    import signal

    from mlpflow.errors import RunInterrupted, first_line

    if signum is None and isinstance(error, KeyboardInterrupt):
        signum = signal.SIGINT
    resume_hint = "run the same command again to resume"
    if signum is None:
        killed = isinstance(error, SystemExit)  # e.g. submitit requeueing a preempted job
        reason = f"{type(error).__name__}: {first_line(error, '')}"
        if logger is not None:
            logger.end("KILLED" if killed else "FAILED", reason + (f"; {resume_hint}" * killed))
        return error
    name = signal.Signals(signum).name
    how = f"stopped by {name} in epoch {trainer.current_epoch}; {resume_hint}"
    if logger is None:
        return RunInterrupted(f"{how} (not tracked)", int(signum))
    logger.end("KILLED", how)
    return RunInterrupted(f"{how} (MLflow run {logger.run_id} is KILLED)", int(signum))


def refit(cfg: DictConfig, meta: Any, trainer: Any, stop: Any) -> Path:
    """A CV fold's member (cv.refit): a fresh network, seeded as the first, trained on all the
    fold's training rows (its train and inner val splits) for as many epochs as the inner
    split chose, labelling by the threshold that epoch chose; written to refit.ckpt, returned.
    The held-out fold chose nothing, so its scores stay an honest estimate, and the member
    learns from every row the fold may use. `stop` stops it as it stops the first training."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mlpflow.model.checkpoint import REFIT_CHECKPOINT, read_checkpoint

    best = read_checkpoint(trainer.checkpoint_callback.best_model_path)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.train_on_val_too()
    module = build_module(cfg, meta, datamodule, best["hyper_parameters"]["threshold"])
    refitter = instantiate(
        cfg.trainer,
        max_epochs=best["epoch"] + 1,
        callbacks=[stop],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    refitter.fit(module, datamodule=datamodule)
    path = Path(cfg.paths.models) / REFIT_CHECKPOINT
    refitter.save_checkpoint(path)
    return path


def build_datamodule(cfg: DictConfig) -> Any:
    from mlpflow.data.datamodule import TabularDataModule

    datamodule = TabularDataModule(
        cfg.paths.prepared,
        batch_size=cfg.loader.batch_size,
        batches_per_step=cfg.loader.batches_per_step,
        seed=cfg.seed,
        full_batch=cfg.loader.full_batch,
    )
    datamodule.setup("fit")
    return datamodule


def build_module(
    cfg: DictConfig, meta: Any, datamodule: Any, threshold: float | None = None
) -> Any:
    """The module to train on this prepared data (a fold's, under cross-validation), with what
    it fits on the train split and carries in its hparams: loss.class_weight as one weight per
    class, from the class counts; a piecewise-linear embedding's bins, on the continuous
    features. With evaluate.threshold=auto, each validation sets its threshold, unless a fixed
    `threshold` is given (a refit's). The datamodule's validation then runs in chunks sized to
    the network (`eval_chunk_rows`): 128 rows of TabM's 32 x 512 rather than 65,536."""
    from mlpflow.model.embeddings import fit_bins
    from mlpflow.model.losses import class_weights
    from mlpflow.model.module import MLPModule
    from mlpflow.model.outputs import eval_chunk_rows

    target_mean, target_scale = datamodule.target_stats()
    sections = ("model", "loss", "regularization", "optimizer", "scheduler", "monitor")
    hparams = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in sections}
    if hparams["loss"].get("class_weight") is not None:
        counts = meta.class_counts["train"]
        hparams["loss"]["class_weight"] = class_weights(
            hparams["loss"]["class_weight"], meta.classes, counts
        )
    n_continuous = meta.numeric.n_continuous
    threshold = cfg.evaluate.threshold if threshold is None else threshold
    labelling = {"auto_threshold": True} if threshold == AUTO else {"threshold": threshold}
    x_train = datamodule.splits["train"][0][:, :n_continuous]
    module = MLPModule(
        n_features=meta.n_features,
        n_outputs=meta.n_outputs,
        task=meta.task,
        **hparams,
        batch_size=datamodule.train_batch_size,
        **labelling,
        target_mean=target_mean,
        target_scale=target_scale,
        cardinalities=meta.categorical.cardinalities,
        n_continuous=n_continuous,
        target_transform=meta.target_transform.as_hparams(),
        bins=fit_bins(hparams["model"].get("numeric_embedding") or {}, x_train),
    )
    datamodule.eval_rows = eval_chunk_rows(module.net)
    return module


def build_trainer(
    cfg: DictConfig, logger: Any, *extra_callbacks: Any, epoch_pruning: bool = True
) -> Any:
    """The Trainer of cfg.trainer with cfg.callbacks; an Optuna trial's epochs are reported
    for pruning unless `epoch_pruning` is off (a CV fold: its trial reports after each fold)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mlpflow.tracking.trials import in_multirun, pruning_requested

    # `callbacks.<name>=null` switches one off.
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks.extend(extra_callbacks)
    if epoch_pruning and pruning_requested():
        from mlpflow.tracking.pruning import OptunaPruning

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
