"""Explicit weight penalties added to the data loss: l1·Σ|w| + l2·Σw²."""

from __future__ import annotations

import sys

import torch
from torch import Tensor, nn


def penalized_parameters(module: nn.Module, include_bias: bool = False) -> list[nn.Parameter]:
    """Weight matrices (ndim >= 2, not a bias: linear layers, embedding tables); with
    include_bias, every parameter (BatchNorm's too). Never the periodic embeddings' frequencies:
    shrinking them would flatten the embedding, not simplify the model (docs/math.md)."""
    frequencies = _frequencies(module)
    return [
        p
        for name, p in module.named_parameters()
        if (include_bias or (p.ndim >= 2 and not name.endswith("bias")))
        and id(p) not in frequencies
    ]


def _frequencies(module: nn.Module) -> set[int]:
    """The ids of the periodic embeddings' frequencies in `module`. A PeriodicEmbeddings exists
    only once rtdl_num_embeddings is imported (by the network that has one); looked up rather than
    imported, so that a network without one costs no import of rtdl, which imports scikit-learn."""
    rtdl = sys.modules.get("rtdl_num_embeddings")
    if rtdl is None:
        return set()
    periodic = rtdl.PeriodicEmbeddings
    return {id(m.periodic.weight) for m in module.modules() if isinstance(m, periodic)}


def weight_penalty(params: list[nn.Parameter], l1: float = 0.0, l2: float = 0.0) -> Tensor:
    """l1·Σ|w| + l2·Σw² over `params`; exactly zero (and no graph) when both strengths are 0.

    The term is part of the loss: its gradient l1·sign(w) + 2·l2·w goes through the optimizer
    like the data gradient. For SGD and Adam an l2 penalty over the same parameters equals
    weight_decay = 2·l2; AdamW's decoupled decay is different (docs/math.md). By default the
    penalty covers weight matrices only, where weight_decay covers every parameter.
    """
    penalty = torch.zeros((), device=params[0].device if params else None)
    if l1:
        penalty = penalty + l1 * torch.stack([p.abs().sum() for p in params]).sum()
    if l2:
        penalty = penalty + l2 * torch.stack([p.pow(2).sum() for p in params]).sum()
    return penalty
