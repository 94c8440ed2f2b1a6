"""Data losses L(output, y), selected by `loss=` in config (see docs/math.md for the formulas).

Every loss takes the raw network output: a logit vector [N] for binary, logits [N, K] for
multiclass, predictions [N] for regression; and optionally row weights w [N] (data.weight), which
make it the w-weighted mean of the rows' losses (times their class weights, with
loss.class_weight). Which loss fits which task is checked in `mlpflow.config` before anything is
built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlpflow.errors import ConfigError


def class_weights(option: Any, classes: Sequence[str], train_counts: Mapping[str, int]) -> Any:
    """loss.class_weight as one weight per class, in `classes` order (None: unweighted).

    balanced: scikit-learn's n / (K n_c) over the train rows; {class: weight}: the classes it
    does not name weigh 1 (keys match the class labels as text)."""
    if option is None or option == "none":
        return None
    if option == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        labels = np.repeat(np.arange(len(classes)), [train_counts[c] for c in classes])
        return compute_class_weight("balanced", classes=np.arange(len(classes)), y=labels).tolist()
    named = {str(name): float(weight) for name, weight in option.items()}
    if unknown := sorted(set(named) - set(classes)):
        raise ConfigError(
            f"loss.class_weight names class {unknown[0]!r}, which the target does not have; "
            f"its classes: {', '.join(classes)}"
        )
    return [named.get(name, 1.0) for name in classes]


def _weight_buffer(class_weight: Sequence[float] | None) -> Tensor | None:
    return None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)


def weighted_mean(losses: Tensor, weight: Tensor | None, norm: Tensor | None = None) -> Tensor:
    """Σ w_i l_i / Σ n_i over the rows: the plain mean without weights; `norm` n (default w)
    when the losses already carry another factor (class weights c: n_i = c_{y_i} w_i). A batch
    whose rows all weigh 0 has loss 0: it teaches nothing, and its gradient is 0, not NaN."""
    if weight is None:
        return losses.mean()
    weight = weight.to(losses.dtype)
    total = (weight if norm is None else norm).sum()
    return (weight * losses).sum() / total.clamp_min(torch.finfo(losses.dtype).tiny)


class BinaryCrossEntropy(nn.Module):
    """-[w y log σ(z) + (1 - y) log(1 - σ(z))], on the logit z for numerical stability; with
    class weights c, the c_y-weighted mean over the rows (as cross_entropy's `weight`)."""

    def __init__(
        self,
        task: str,
        pos_weight: float | None = None,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        weight = None if pos_weight is None else torch.tensor(float(pos_weight))
        self.register_buffer("pos_weight", weight)
        self.register_buffer("class_weight", _weight_buffer(class_weight))

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        target = target.to(logits.dtype)
        if self.class_weight is None and weight is None:
            return F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)
        losses = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=self.pos_weight, reduction="none"
        )
        if self.class_weight is not None:
            classes = self.class_weight.to(logits.dtype)[target.long()]
            weight = classes if weight is None else classes * weight.to(logits.dtype)
        return weighted_mean(losses, weight)


class CrossEntropy(nn.Module):
    """-log softmax(z)_y, optionally against label-smoothed targets; with class weights c, the
    c_y-weighted mean over the rows (torch's `weight`), with row weights w the (c_y w)-weighted
    one."""

    def __init__(
        self,
        task: str,
        label_smoothing: float = 0.0,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weight", _weight_buffer(class_weight))

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        classes = None if self.class_weight is None else self.class_weight.to(logits.dtype)
        if weight is None:
            return F.cross_entropy(
                logits, target, weight=classes, label_smoothing=self.label_smoothing
            )
        losses = F.cross_entropy(
            logits, target, weight=classes, label_smoothing=self.label_smoothing, reduction="none"
        )  # each row's loss already times c (c_k on the smoothing term's class k)
        weight = weight.to(logits.dtype)
        return weighted_mean(
            losses, weight, weight if classes is None else classes[target] * weight
        )


class MeanSquaredError(nn.Module):
    """mean((ŷ - y)²); for binary, ŷ = σ(z) is the predicted probability (docs/math.md)."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self.on_probability = task == "binary"

    def forward(self, output: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        prediction = torch.sigmoid(output) if self.on_probability else output
        if weight is None:
            return F.mse_loss(prediction, target.to(prediction.dtype))
        losses = F.mse_loss(prediction, target.to(prediction.dtype), reduction="none")
        return weighted_mean(losses, weight)


class Huber(nn.Module):
    """½(ŷ - y)² where |ŷ - y| <= δ, else δ(|ŷ - y| - ½δ); averaged (w-weighted)."""

    def __init__(self, task: str, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, output: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is None:
            return F.huber_loss(output, target.to(output.dtype), delta=self.delta)
        losses = F.huber_loss(output, target.to(output.dtype), delta=self.delta, reduction="none")
        return weighted_mean(losses, weight)
