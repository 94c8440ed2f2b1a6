"""Multilayer perceptron: the forward pass h_{l+1} = act(W_l h_l + b_l), a linear head on top.

Its input is the numeric features, joined with the categorical columns' one-hot vectors or
embeddings and, optionally, with numeric embeddings of the continuous features in their place.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from typing import Any

from torch import Tensor, nn

from mlpflow.config.choices import ACTIVATIONS
from mlpflow.model.dropout import Dropout
from mlpflow.model.embeddings import TabularNetwork


def hidden_layers(
    width_in: int,
    n_outputs: int,
    hidden_dims: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer, then a linear head."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers.append(nn.Linear(width_in, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(getattr(nn, ACTIVATIONS[activation])())
        if dropout > 0:
            layers.append(Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, n_outputs))
    return nn.Sequential(*layers)


class MLP(TabularNetwork):
    """The network: input embeddings (when there is anything to embed), then the layers.

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
        **inputs: Any,
    ) -> None:
        super().__init__(n_inputs, **inputs)
        self.layers = hidden_layers(
            self.input_width, n_outputs, hidden_dims, activation, dropout, batch_norm
        )
        self.values_per_row = max(self.input_width, n_outputs, *hidden_dims)

    def forward(self, x: Tensor, codes: Tensor | None = None) -> Tensor:
        if self.categorical is not None and self.categorical.folds(len(codes)):
            return self._folded(self.dense_input(x), codes)
        return self.layers(self.joined_input(x, codes))

    def _folded(self, dense: Tensor, codes: Tensor) -> Tensor:
        """The same layers, the first one split by its input columns: W [dense, h_cat] + b as
        W_dense dense + b + W_cat h_cat, the last term from the categorical input's folded
        tables (no [N, width] input is built)."""
        first, width = self.layers[0], dense.shape[1]
        assert isinstance(first, nn.Linear)
        hidden = nn.functional.linear(dense, first.weight[:, :width], first.bias)
        hidden = hidden + self.categorical.first_layer_share(codes, first.weight[:, width:])
        for layer in islice(self.layers, 1, None):
            hidden = layer(hidden)
        return hidden
