"""The one path from a trained network to scores and metrics: validation (per batch, in
`MLPModule`), evaluate (a split) and serving (raw rows) all go through `output_scores` and
`build_metrics`; evaluate and serving through `network_scores`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlpflow.errors import ModelError
from mlpflow.model.checkpoint import NetworkSpec, Weights
from mlpflow.model.outputs import (
    EVAL_CHUNK_ROWS,
    loss_target,
    num_classes,
    output_scores,
    squeeze_head,
)


@torch.no_grad()
def network_outputs(net: nn.Module, x: Tensor, codes: Tensor) -> Tensor:
    """Raw outputs of `net` (eval mode) on every row, a chunk of rows at a time."""
    chunks = zip(x.split(EVAL_CHUNK_ROWS), codes.split(EVAL_CHUNK_ROWS), strict=True)
    return torch.cat([squeeze_head(net(part, part_codes)) for part, part_codes in chunks])


def network_scores(outputs: Tensor, spec: NetworkSpec) -> Tensor:
    """Scores in the one convention (see `mlpflow.model.outputs`)."""
    return output_scores(outputs, spec.task, spec.target_mean, spec.target_scale)


@torch.no_grad()
def score_split(
    weights: Weights, x: Tensor, codes: Tensor, y: Tensor, threshold: float, split: str
) -> tuple[dict[str, float], Tensor]:
    """`<split>/loss` and the task's metrics of the network on (x, codes, y); and its scores.

    The same loss, scores and torchmetrics collection as the LightningModule's validation.
    """
    # Here, not at the top: the served model imports this module (network_outputs) and installs
    # neither omegaconf nor torchmetrics (tests/test_model_env.py).
    from mlpflow.config.compose import build_partial
    from mlpflow.evaluation.metrics import build_metrics

    spec = weights.spec
    if spec.n_features != x.shape[1]:
        raise ModelError(
            f"the checkpoint expects {spec.n_features} features, the {split} split has "
            f"{x.shape[1]}: train again on this prepared data (dvc repro)"
        )
    outputs = network_outputs(weights.network(), x, codes)
    loss_fn = build_partial(spec.loss, task=spec.task)
    loss = loss_fn(outputs, loss_target(y, spec.task, spec.target_mean, spec.target_scale))
    scores = network_scores(outputs, spec)
    classes = num_classes(spec.task, spec.n_outputs)
    collection = build_metrics(spec.task, classes, threshold).clone(prefix=f"{split}/")
    collection.update(scores, y)
    metrics = {f"{split}/loss": float(loss)}
    metrics.update({name: float(value) for name, value in collection.compute().items()})
    return metrics, scores
