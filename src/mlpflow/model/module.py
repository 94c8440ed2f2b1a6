"""The LightningModule: network + data loss + penalty, trained with manual optimization.

The data module hands each training step a *chunk* of `batches_per_step` minibatches; the
step takes one optimizer step per minibatch (`model.fast_step`). The math is plain minibatch
training (the same minibatches in the same order give the same weights for any chunk size);
Lightning's fixed per-step cost (hooks, logging, progress bar) is paid once per chunk.
With row weights (data.weight) every loss, train and val, is the weighted mean, and the val
metrics are the weighted ones; with evaluate.threshold=auto each validation picks the F1-optimal
threshold on its scores, and the checkpoint of that epoch carries it in its `threshold`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from mlpflow.config.compose import CLIP_GRAD_NORM, build_partial
from mlpflow.data.transforms import TargetTransform
from mlpflow.errors import TrainingDiverged
from mlpflow.model.fast_step import DirectStep, steps_directly
from mlpflow.model.metrics import GatheredRows, build_metrics, f1_threshold, metric_values
from mlpflow.model.network import build_network
from mlpflow.model.outputs import loss_target, num_classes, output_scores, squeeze_head
from mlpflow.model.penalties import penalized_parameters, weight_penalty

# features, level codes (or None), targets, row weights (None: unweighted)
Batch = tuple[Tensor, Tensor | None, Tensor, Tensor | None]


class MLPModule(pl.LightningModule):
    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        task: str,
        model: dict[str, Any],
        loss: dict[str, Any],
        regularization: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        monitor: dict[str, Any],
        batch_size: int,
        threshold: float = 0.5,
        auto_threshold: bool = False,
        target_mean: float = 0.0,
        target_scale: float = 1.0,
        cardinalities: list[int] | None = None,
        n_continuous: int = 0,
        target_transform: dict[str, Any] | None = None,
        bins: list[list[float]] | None = None,
    ) -> None:
        super().__init__()
        # Plain containers only: the checkpoint then loads with torch.load(weights_only=True).
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        self.task = task
        self.target_transform = TargetTransform.from_hparams(target_transform)
        self.net = build_network(
            model, n_features, n_outputs, task, cardinalities, n_continuous, bins
        )
        self.loss_fn = build_partial(loss, task=task)
        self.penalty_strengths = (regularization["l1"], regularization["l2"])
        self.penalized = penalized_parameters(self.net, regularization["include_bias"])
        metrics = build_metrics(task, num_classes(task, n_outputs), threshold)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_rows = GatheredRows()  # weighted rows, or auto_threshold: metrics of all rows
        self._epoch_sums: Tensor | None = None
        self._val_sums: Tensor | None = None

    def forward(self, x: Tensor, codes: Tensor | None = None) -> Tensor:
        """Raw outputs: logits (classification) or predictions (regression); [N] when one output."""
        return squeeze_head(self.net(x, codes))

    def scores(self, outputs: Tensor) -> Tensor:
        """Positive-class probability (binary), class probabilities (multiclass) or values."""
        return output_scores(outputs, self.task, *self._target_stats)

    def loss_target(self, y: Tensor) -> Tensor:
        return loss_target(y, self.task, *self._target_stats)

    @property
    def _target_stats(self) -> tuple[float, float, TargetTransform]:
        return self.hparams.target_mean, self.hparams.target_scale, self.target_transform

    def _evaluate(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """One evaluation forward pass: its scores, and its (weighted) mean data loss."""
        x, codes, y, weight = batch
        outputs = self(x, codes)
        return self.scores(outputs), self.loss_fn(outputs, self.loss_target(y), weight)

    def on_train_epoch_start(self) -> None:
        # Train losses are summed on the device and logged once per epoch: a `self.log` per
        # chunk costs Lightning its logging bookkeeping each time. [data loss, penalty, rows]
        self._epoch_sums = torch.zeros(3, device=self.device)

    def training_step(self, chunk: Batch, chunk_idx: int) -> None:
        """One optimizer step per minibatch of the chunk. The targets are converted once per
        chunk and the losses summed once per chunk: per minibatch, only the step itself."""
        x_chunk, c_chunk, y_chunk, w_chunk = chunk
        size = self.hparams.batch_size
        xs, targets = x_chunk.split(size), self.loss_target(y_chunk).split(size)
        cs = c_chunk.split(size) if c_chunk.shape[1] else [None] * len(xs)
        ws = w_chunk.split(size) if w_chunk is not None else [None] * len(xs)
        penalize = any(self.penalty_strengths)
        data_losses, penalties = [], []
        for x, codes, target, weight in zip(xs, cs, targets, ws, strict=True):
            outputs = self.net(x, codes)
            if outputs.ndim == 3:  # an ensemble's members [N, k, d]: the mean of their losses
                target = target.repeat_interleave(outputs.shape[1])
                weight = None if weight is None else weight.repeat_interleave(outputs.shape[1])
                outputs = outputs.flatten(0, 1)
            data_loss = self.loss_fn(squeeze_head(outputs), target, weight)
            data_losses.append(data_loss.detach())
            if penalize:
                penalty = weight_penalty(self.penalized, *self.penalty_strengths)
                penalties.append(penalty.detach())
                data_loss = data_loss + penalty
            self._step_optimizer(data_loss)
        losses = torch.stack(data_losses)
        if w_chunk is None:
            rows = torch.tensor([len(t) for t in targets], dtype=losses.dtype, device=losses.device)
        else:  # each minibatch's loss is a weighted mean: the epoch's weighs it by its weight
            rows = torch.stack([w.sum() for w in ws]).to(losses.dtype)
        penalty_sum = rows @ torch.stack(penalties) if penalties else rows.new_zeros(())
        sums = torch.stack([rows @ losses, penalty_sum, rows.sum()])
        loss = (sums[0] + sums[1]) / sums[2]
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"train/loss became {loss.item()} at epoch {self.current_epoch}: "
                "lower optimizer.lr or strengthen regularization"
            )
        self._epoch_sums += sums

    def on_train_start(self) -> None:
        optimizer = self.optimizers()
        clip = self.hparams.optimizer.get(CLIP_GRAD_NORM)
        self._step_optimizer = (
            DirectStep(self.trainer, optimizer, clip)
            if steps_directly(self.trainer)
            else partial(self._lightning_step, optimizer, clip)
        )

    def _lightning_step(self, optimizer: Any, clip: float | None, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2, device=self.device)  # [data loss x rows, rows]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Scores into the metric collection, the loss into a running sum (rows count their
        weight): nothing is logged per batch (the epoch's values are computed once, in
        `on_validation_epoch_end`)."""
        y, weight = batch[2:]
        scores, data_loss = self._evaluate(batch)
        if weight is not None or self.hparams.auto_threshold:  # metrics of all rows at once
            self.val_rows.update(scores, y, weight)
        else:
            self.val_metrics.update(scores, y)
        data_loss = data_loss.detach()
        rows = data_loss.new_tensor(len(batch[2])) if weight is None else weight.sum()
        self._val_sums += torch.stack([data_loss * rows, rows.to(data_loss.dtype)])

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Lightning's own logging (`trainer.test` in the tests; evaluate scores without it)."""
        scores, data_loss = self._evaluate(batch)
        self.test_metrics.update(scores, batch[2])
        self.log("test/loss", data_loss, on_epoch=True, batch_size=len(batch[2]))
        self.log_dict(self.test_metrics, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        """The epoch's validation metrics and train losses, computed once and published in one
        call, before the epoch's checkpoints (`LastCheckpoint` writes the held points first)."""
        if self.val_rows.update_called:
            values = self._gathered_metrics()
        else:
            values = self.val_metrics.compute()  # torchmetrics syncs its states across processes
        self.val_metrics.reset()
        loss_sum, rows = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        values["val/loss"] = loss_sum / rows
        if self.trainer.sanity_checking:
            return
        if self._epoch_sums is not None:
            values.update(self._train_losses())
        self._publish(values)

    def _gathered_metrics(self) -> dict[str, Any]:
        """The val metrics of every val row at once: weighted by the rows' weights, and at the
        F1-optimal threshold of these scores when auto_threshold (`val/threshold`; stored in
        the hparams, so this epoch's checkpoint labels by it)."""
        scores, y, weight = (t if t is None else t.cpu() for t in self.val_rows.compute())
        self.val_rows.reset()
        values: dict[str, Any] = {}
        if self.hparams.auto_threshold:
            arrays = (None if t is None else t.double().numpy() for t in (scores, y, weight))
            self.hparams.threshold = f1_threshold(*arrays)
            values["val/threshold"] = torch.tensor(self.hparams.threshold, device=self.device)
        classes = num_classes(self.task, self.hparams.n_outputs)
        metrics = metric_values(self.task, classes, scores, y, self.hparams.threshold, weight)
        for name, value in metrics.items():
            values[f"val/{name}"] = torch.tensor(value, device=self.device)
        return values

    def on_train_epoch_end(self) -> None:
        """Log the train losses of an epoch without validation; step the scheduler (manual
        optimization), after validation."""
        if self._epoch_sums is not None:
            self._publish(self._train_losses())
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(self.trainer.callback_metrics[self.hparams.monitor["metric"]])
        else:
            scheduler.step()

    def _train_losses(self) -> dict[str, Tensor]:
        """The epoch's train losses, averaged over every process's rows; the sums are reset."""
        sums, self._epoch_sums = self._epoch_sums, None
        data_loss, penalty, rows = self.trainer.strategy.reduce(sums, reduce_op="sum")
        return {
            "train/loss": (data_loss + penalty) / rows,
            "train/data_loss": data_loss / rows,
            "train/penalty": penalty / rows,
        }

    def _publish(self, values: dict[str, Tensor]) -> None:
        """Epoch metrics where `self.log` would put them, without its per-key bookkeeping (a
        torchmetrics object per key, each moved and computed on its own: benchmarks/README.md):
        into `trainer.callback_metrics` (checkpoints, early stopping, the scheduler and pruning
        read them) and to the loggers in one call, at the optimizer step reached."""
        self.trainer.callback_metrics.update(values)
        scalars = {key: float(value) for key, value in values.items()}
        scalars["epoch"] = self.current_epoch
        for logger in self.trainer.loggers:
            logger.log_metrics(scalars, step=self.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the RNG (dropout) state: a resumed run then equals an uninterrupted one."""
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def configure_optimizers(self) -> Any:
        optimizer = build_partial(self.hparams.optimizer)(self.parameters())
        if self.hparams.scheduler.get("_target_") is None:
            return optimizer
        scheduler = build_partial(self.hparams.scheduler)(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
