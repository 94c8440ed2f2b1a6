"""Dropout whose mask is cheap on the CPU.

torch's CPU dropout draws one Bernoulli sample per element: on TabM's [batch x k, 512]
activations that costs more than the layer's matrix product (benchmarks/README.md, "Facts
measured here"). This dropout reads 16 random bits per element, four elements to one 64-bit
draw, and keeps an element when its bits clear a threshold. The mask is still independent per
element; the drop probability is rounded to a multiple of 2^-16 and the kept values are scaled
by 1 / (1 - that probability), so the expected activation is unchanged. Off the CPU, torch's
own dropout (fast there). The bits come from torch's default generator, so the seed and a
resumed run's saved RNG state decide them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LEVELS = 2**16  # the values 16 random bits take
PER_WORD = 4  # 16-bit draws in one int64


class Dropout(nn.Module):
    """nn.Dropout(p) in behaviour: in training, each element zeroed with probability p and the
    others scaled by 1 / (1 - p); in eval, the identity."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.dropped_levels = round(p * LEVELS)  # the 16-bit values (of LEVELS) that drop
        self.scale = LEVELS / (LEVELS - self.dropped_levels)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.dropped_levels == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        return x * (keep_mask(x.shape, self.dropped_levels) * self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def keep_mask(shape: torch.Size, dropped_levels: int) -> Tensor:
    """A bool tensor of `shape`, each element False with probability dropped_levels / 2^16,
    independently: 16 uniform bits per element, read as an int16 and compared."""
    numel = shape.numel()
    words = torch.empty(-(-numel // PER_WORD), dtype=torch.int64).random_(-(2**63), None)
    bits = words.view(torch.int16)[:numel].view(shape)
    return bits >= dropped_levels - LEVELS // 2
