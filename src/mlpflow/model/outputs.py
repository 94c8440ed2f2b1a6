"""What the network's raw outputs mean, per task: shared by training, evaluation and serving.

Scores follow one convention everywhere: binary -> probability of the positive class [N];
multiclass -> class probabilities [N, K]; regression -> predictions in target units [N] (the
network learns the target transformed by data.target_transform, then standardized).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mlpflow.data.prepared import EVAL_CHUNK_ROWS
from mlpflow.data.transforms import TargetTransform

if TYPE_CHECKING:
    from mlpflow.model.checkpoint import NetworkSpec
    from mlpflow.model.embeddings import TabularNetwork


def squeeze_head(out: Tensor) -> Tensor:
    """A one-output head (binary logit, regression value) as [N]; K logits stay [N, K]."""
    return out.squeeze(-1) if out.shape[-1] == 1 else out


NO_TRANSFORM = TargetTransform()
# Values in a forward pass's widest activation outside training (8 MiB of float32): bounds the
# memory of evaluating, serving and permuting a large split, whatever the network's width, and
# keeps each activation within the CPU's last-level cache: TabM's forward pass runs 2.7x as
# fast in chunks of 128 rows as of 512 (benchmarks/README.md, "Facts measured here").
EVAL_CHUNK_VALUES = 2**21


def output_scores(
    outputs: Tensor,
    task: str,
    target_mean: float,
    target_scale: float,
    target_transform: TargetTransform = NO_TRANSFORM,
) -> Tensor:
    if task == "binary":
        return torch.sigmoid(outputs)
    if task == "multiclass":
        return torch.softmax(outputs, dim=-1)
    return target_transform.inverse(outputs * target_scale + target_mean)


def loss_target(
    y: Tensor,
    task: str,
    target_mean: float,
    target_scale: float,
    target_transform: TargetTransform = NO_TRANSFORM,
) -> Tensor:
    """What the loss compares the outputs with: the transformed target standardized
    (regression, train mean/std of the transformed target), the 0/1 labels as floats (binary:
    every binary loss takes them so) or the class indices (multiclass)."""
    if task == "regression":
        return (target_transform.forward(y) - target_mean) / target_scale
    return y.to(torch.float32) if task == "binary" else y


@torch.no_grad()
def network_outputs(net: TabularNetwork, x: Tensor, codes: Tensor) -> Tensor:
    """Raw outputs of `net` (eval mode) on every row, a chunk of rows at a time."""
    rows = eval_chunk_rows(net)
    chunks = zip(x.split(rows), codes.split(rows), strict=True)
    return torch.cat([squeeze_head(net(part, part_codes)) for part, part_codes in chunks])


def eval_chunk_rows(net: TabularNetwork) -> int:
    """Rows per forward pass outside training: as many as keep each activation within
    EVAL_CHUNK_VALUES values (16,384 rows of a 128-wide MLP, 128 of TabM's 32 x 512), at most
    EVAL_CHUNK_ROWS."""
    return max(1, min(EVAL_CHUNK_ROWS, EVAL_CHUNK_VALUES // net.values_per_row))


def network_scores(outputs: Tensor, spec: NetworkSpec) -> Tensor:
    """A saved network's outputs as scores, in the one convention above."""
    return output_scores(outputs, spec.task, *target_mapping(spec))


def target_mapping(spec: NetworkSpec) -> tuple[float, float, TargetTransform]:
    """A saved network's target mean, scale and transform (`output_scores`, `loss_target`)."""
    transform = TargetTransform.from_hparams(spec.target_transform)
    return spec.target_mean, spec.target_scale, transform


def num_classes(task: str, n_outputs: int) -> int:
    """A classifier's classes: binary's one output (the positive class's logit) stands for two."""
    return 2 if task == "binary" else n_outputs


def class_probabilities(task: str, scores: np.ndarray) -> np.ndarray:
    """Classification scores as one column per class [N, K]: binary's positive-class
    probability p becomes the two columns (1 - p, p); multiclass scores are that already."""
    return np.stack([1.0 - scores, scores], axis=1) if task == "binary" else scores


def predicted_labels(task: str, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Hard predictions: `score > threshold` (torchmetrics' rule) for binary, argmax otherwise."""
    if task == "binary":
        return (scores > threshold).astype(int)
    return scores.argmax(axis=1)
