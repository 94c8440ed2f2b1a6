"""Multilayer perceptron: the forward pass h_{l+1} = act(W_l h_l + b_l), a linear head on top."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
}


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer, then a linear head.

    The head has one output for binary (a logit) and regression, K logits for K classes.
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        hidden_dims: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        width_in = n_inputs
        for width in hidden_dims:
            layers.append(nn.Linear(width_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(width_in, n_outputs))
        super().__init__(*layers)
