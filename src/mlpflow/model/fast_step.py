"""The optimizer stepped directly, past Lightning's per-step wrappers: the one place mlpflow
touches Lightning internals.

Under manual optimization Lightning wraps every `optimizer.step()` in hooks on each callback and
closures, about as costly as a small MLP's whole step. On one device in full precision they do
nothing mlpflow needs, so `DirectStep` calls the wrapped torch optimizer itself and counts the
step where `LightningOptimizer.step` would: `trainer.global_step` (checkpoints, resume, metric
steps) reads that private counter. tests/test_private_apis.py fails if an upgrade moves it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor


def steps_directly(trainer: pl.Trainer) -> bool:
    """Whether Lightning's wrappers do nothing here: one process, full precision."""
    return trainer.world_size == 1 and trainer.precision in ("32-true", "32")


class DirectStep:
    """zero_grad, backward, [clip the gradients' norm], step on the torch optimizer; one
    optimizer step counted.

    The gradients are dropped by setting them to None, which is what `zero_grad(set_to_none=True)`
    does, without the profiler context that `zero_grad` opens on every call (benchmarks/README.md).
    """

    def __init__(self, trainer: pl.Trainer, optimizer: Any, clip_norm: float | None) -> None:
        loop = trainer.fit_loop.epoch_loop.manual_optimization
        self.progress = loop.optim_step_progress
        self.optimizer = optimizer.optimizer  # the torch optimizer inside LightningOptimizer
        self.parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.clip_norm = clip_norm

    def __call__(self, loss: Tensor) -> None:
        for parameter in self.parameters:
            parameter.grad = None
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm)
        self.optimizer.step()
        self.progress.increment_ready()
        self.progress.increment_completed()
