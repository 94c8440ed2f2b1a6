"""What the network's raw outputs mean, per task: shared by training and evaluation.

Scores follow one convention everywhere: binary -> probability of the positive class [N];
multiclass -> class probabilities [N, K]; regression -> predictions in target units [N].
"""

from __future__ import annotations

import torch
from torch import Tensor

EVAL_CHUNK_ROWS = 65536  # rows per forward pass outside training: bounds activation memory


def squeeze_head(out: Tensor) -> Tensor:
    """A one-output head (binary logit, regression value) as [N]; K logits stay [N, K]."""
    return out.squeeze(-1) if out.shape[-1] == 1 else out


def output_scores(outputs: Tensor, task: str, target_mean: float, target_scale: float) -> Tensor:
    if task == "binary":
        return torch.sigmoid(outputs)
    if task == "multiclass":
        return torch.softmax(outputs, dim=-1)
    return outputs * target_scale + target_mean


def loss_target(y: Tensor, task: str, target_mean: float, target_scale: float) -> Tensor:
    """Regression learns the standardized target (train mean/std); classes stay indices."""
    return (y - target_mean) / target_scale if task == "regression" else y
