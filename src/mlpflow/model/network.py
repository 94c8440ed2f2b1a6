"""The network a model config names: `model.name` mlp (model/mlp.py) or tabm (model/tabm.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from mlpflow.model.mlp import MLP


def build_network(
    model: dict[str, Any],
    n_features: int,
    n_outputs: int,
    task: str,
    cardinalities: Sequence[int] | None = None,
    n_continuous: int = 0,
    bins: list[list[float]] | None = None,
) -> nn.Module:
    """The untrained network of `model` (a config without `name`: an MLP); `bins`: the
    piecewise-linear embedding's fitted bin edges (`embeddings.fit_bins`)."""
    options = {key: value for key, value in model.items() if key != "name"}
    inputs = {"cardinalities": cardinalities or (), "n_continuous": n_continuous, "bins": bins}
    if model.get("name", "mlp") == "tabm":
        from mlpflow.model.tabm import TabM  # the `tabm` package, imported only for TabM

        return TabM(n_features, n_outputs, task, **options, **inputs)
    return MLP(n_features, n_outputs, **options, **inputs)
