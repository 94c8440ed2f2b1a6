"""The CPU dropout (model/dropout.py): torch's dropout in distribution, from fewer random draws."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlpflow.model.dropout import Dropout
from mlpflow.model.mlp import MLP
from mlpflow.model.tabm import TabM

P = 0.1
ELEMENTS = 2**22


def dropped(p: float = P, seed: int = 0) -> torch.Tensor:
    """Which of ELEMENTS ones a training-mode Dropout(p) zeroes (a bool [ELEMENTS // 4, 4]: the
    four elements that share one 64-bit draw in a row)."""
    torch.manual_seed(seed)
    out = Dropout(p).train()(torch.ones(ELEMENTS // 4, 4))
    return out == 0


def test_each_element_drops_with_probability_p_independently_of_its_neighbours() -> None:
    mask = dropped().float()
    std = (P * (1 - P) / len(mask)) ** 0.5
    # each of the four 16-bit slices of a draw, on its own: a slice read twice or a bit pattern
    # leaking between them would move its rate or the rate of a pair
    for rate in mask.mean(dim=0):
        assert abs(rate - P) < 6 * std
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        both = (mask[:, a] * mask[:, b]).mean()
        assert abs(both - P * P) < 6 * (P * P / len(mask)) ** 0.5
    # and across draws: neighbouring rows are no more alike than chance
    assert abs((mask[1:, 0] * mask[:-1, 0]).mean() - P * P) < 6 * (P * P / len(mask)) ** 0.5


@pytest.mark.parametrize("p", [0.05, 0.5])
def test_the_kept_elements_are_scaled_so_the_expectation_is_unchanged(p: float) -> None:
    torch.manual_seed(1)
    x = torch.rand(ELEMENTS // 16, 16) + 0.5
    out = Dropout(p).train()(x)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p), rtol=1e-4)
    assert abs(kept.float().mean() - (1 - p)) < 0.005
    assert abs(out.mean() / x.mean() - 1) < 0.01


def test_the_same_seed_draws_the_same_mask_and_another_seed_another() -> None:
    assert torch.equal(dropped(seed=3), dropped(seed=3))
    assert not torch.equal(dropped(seed=3), dropped(seed=4))


def test_the_gradient_passes_where_the_element_was_kept_scaled_and_nowhere_else() -> None:
    torch.manual_seed(2)
    x = torch.randn(512, 64, requires_grad=True)
    out = Dropout(P).train()(x)
    out.sum().backward()
    kept = out.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / (1 - P)), rtol=1e-4)
    assert (x.grad[~kept] == 0).all()


def test_eval_mode_and_p_zero_are_the_identity() -> None:
    x = torch.randn(100, 8)
    assert Dropout(P).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_the_networks_drop_with_it() -> None:
    mlp = MLP(4, 1, hidden_dims=[8, 8], dropout=0.2)
    tabm = TabM(4, 1, "binary", k=2, n_blocks=2, d_block=8, dropout=0.1)
    for network, p in [(mlp, 0.2), (tabm, 0.1)]:
        layers = list(network.modules())
        assert not any(isinstance(layer, nn.Dropout) for layer in layers)
        assert [layer.p for layer in layers if isinstance(layer, Dropout)] == [p, p]
