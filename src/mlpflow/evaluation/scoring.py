"""A saved network scored on a split: its loss, the task's metrics and its scores, through the
same `output_scores` and `metric_values` as validation in `MLPModule` (and, for the scores,
serving: `mlpflow.model.outputs.network_scores`); with row weights (data.weight), the weighted
loss and metrics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlpflow.config.compose import build_partial
from mlpflow.errors import ModelError
from mlpflow.model.checkpoint import Weights
from mlpflow.model.metrics import metric_values
from mlpflow.model.outputs import (
    loss_target,
    network_outputs,
    network_scores,
    num_classes,
    target_mapping,
)


@torch.no_grad()
def score_split(
    weights: Weights,
    x: Tensor,
    codes: Tensor,
    y: Tensor,
    threshold: float,
    split: str,
    row_weight: Tensor | None = None,
) -> tuple[dict[str, float], Tensor]:
    """`<split>/loss` and the task's metrics of the network on (x, codes, y), weighted by
    `row_weight` when given; and its scores.

    The same loss, scores and metrics as the LightningModule's validation.
    """
    spec = weights.spec
    if spec.n_features != x.shape[1]:
        raise ModelError(
            f"the checkpoint expects {spec.n_features} features, the {split} split has "
            f"{x.shape[1]}: train again on this prepared data (dvc repro)"
        )
    outputs = network_outputs(weights.network(), x, codes)
    loss_fn = build_partial(spec.loss, task=spec.task)
    loss = loss_fn(outputs, loss_target(y, spec.task, *target_mapping(spec)), row_weight)
    scores = network_scores(outputs, spec)
    classes = num_classes(spec.task, spec.n_outputs)
    metrics = {f"{split}/loss": float(loss)}
    metrics.update(score_metrics(spec.task, classes, scores, y, threshold, split, row_weight))
    return metrics, scores


@torch.no_grad()
def score_metrics(
    task: str,
    classes: int,
    scores: Tensor,
    y: Tensor,
    threshold: float,
    prefix: str,
    row_weight: Tensor | None = None,
) -> dict[str, float]:
    """The task's metrics (`<prefix>/<name>`) of scores already made: those of one network,
    or of several averaged (the fold ensemble, the out-of-fold predictions)."""
    values = metric_values(task, classes, scores, y, threshold, row_weight)
    return {f"{prefix}/{name}": value for name, value in values.items()}
