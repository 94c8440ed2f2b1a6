"""Data losses L(output, y), selected by `loss=` in config (see docs/math.md for the formulas).

Every loss takes the raw network output: a logit vector [N] for binary, logits [N, K] for
multiclass, predictions [N] for regression. Which loss fits which task is checked in
`mlpflow.config` before anything is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BinaryCrossEntropy(nn.Module):
    """-[w y log σ(z) + (1 - y) log(1 - σ(z))], on the logit z for numerical stability."""

    def __init__(self, task: str, pos_weight: float | None = None) -> None:
        super().__init__()
        weight = None if pos_weight is None else torch.tensor(float(pos_weight))
        self.register_buffer("pos_weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            logits, target.to(logits.dtype), pos_weight=self.pos_weight
        )


class CrossEntropy(nn.Module):
    """-log softmax(z)_y, optionally against label-smoothed targets."""

    def __init__(self, task: str, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)


class MeanSquaredError(nn.Module):
    """mean((ŷ - y)²); for binary, ŷ = σ(z) is the predicted probability (docs/math.md)."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self.on_probability = task == "binary"

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        prediction = torch.sigmoid(output) if self.on_probability else output
        return F.mse_loss(prediction, target.to(prediction.dtype))


class Huber(nn.Module):
    """½(ŷ - y)² where |ŷ - y| <= δ, else δ(|ŷ - y| - ½δ); averaged."""

    def __init__(self, task: str, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return F.huber_loss(output, target.to(output.dtype), delta=self.delta)
