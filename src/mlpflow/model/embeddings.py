"""How the columns that are not plain numbers enter the network (docs/math.md, section 1).

Categorical level codes become one-hot vectors (few levels) or learned embeddings (many levels);
continuous features may pass through the numeric embeddings of Gorishniy et al., "On Embeddings
for Numerical Features in Tabular Deep Learning" (2022), from the authors' `rtdl_num_embeddings`:
periodic (PLR) or piecewise-linear (PLE, on bins fitted to the train split).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mlpflow.data.transforms import FIRST_LEVEL, UNKNOWN
from mlpflow.errors import ModelError

# What `folds` weighs, in multiply-adds of the first layer's matrix product: a summed lookup's
# element costs about 8, a table entry built about 2 (benchmarks/README.md, "Facts measured here").
LOOKUP_COST, TABLE_COST = 8, 2
QUANTILE_ROWS = 2**24  # the most rows torch.quantile takes (the bins' quantiles)


def embedding_size(cardinality: int) -> int:
    """fastai's rule of thumb: min(600, round(1.6 * cardinality^0.56))."""
    return min(600, round(1.6 * cardinality**0.56))


class CategoricalInput(nn.Module):
    """Level codes [N, k] -> features [N, D]: one-hot for columns with at most
    `one_hot_max_levels` train levels, a learned embedding for the others.

    One-hot leaves UNKNOWN out (all zeros); an embedding's UNKNOWN row starts at zero and no train
    row ever selects it, so a level never seen in train contributes nothing either way. Columns
    whose embeddings have the same width share one table, each column's rows at its own offset:
    one lookup per width rather than one per column (the same math, fewer small ops a step).
    Outside autograd, `first_layer_share` gives the first layer's product with these features
    directly, for a large batch at a fraction of the multiply-adds.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        one_hot_max_levels: int = 8,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        levels = [cardinality - FIRST_LEVEL for cardinality in cardinalities]
        self.one_hot = [j for j, n in enumerate(levels) if n <= one_hot_max_levels]
        sizes = [cardinalities[j] for j in self.one_hot]
        self.register_buffer("one_hot_offsets", _offsets(sizes), persistent=False)
        self.register_buffer("one_hot_table", _one_hot_table(sizes), persistent=False)
        widths: dict[int, list[int]] = {}  # embedding width -> its columns, in column order
        for j, n in enumerate(levels):
            if n > one_hot_max_levels:
                width = embedding_dim or embedding_size(cardinalities[j])
                widths.setdefault(width, []).append(j)
        self.embedded = list(widths.values())
        self.embeddings = nn.ModuleList(
            _embedding([cardinalities[j] for j in columns], width)
            for width, columns in widths.items()
        )
        for g, columns in enumerate(self.embedded):
            offsets = _offsets([cardinalities[j] for j in columns])
            self.register_buffer(f"embedding_offsets_{g}", offsets, persistent=False)
        self.out_features = self.one_hot_table.shape[1] + sum(
            e.embedding_dim * len(columns)
            for e, columns in zip(self.embeddings, self.embedded, strict=True)
        )
        self.cardinalities = list(cardinalities)
        self._plan_folding()

    def column_widths(self) -> list[int]:
        """Each column's width in `forward`'s output, in that order (one-hot without UNKNOWN)."""
        widths = [self.cardinalities[j] - 1 for j in self.one_hot]
        for columns, embedding in zip(self.embedded, self.embeddings, strict=True):
            widths += [embedding.embedding_dim] * len(columns)
        return widths

    def _plan_folding(self) -> None:
        """Column order and row offsets of the folded tables (`first_layer_share`), and the
        multiply-adds per hidden unit that building them costs."""
        self.fold_order = self.one_hot + [j for columns in self.embedded for j in columns]
        sizes = [self.cardinalities[j] for j in self.fold_order]
        self.register_buffer("fold_offsets", _offsets(sizes), persistent=False)
        widths = {j: self.cardinalities[j] - 1 for j in self.one_hot}  # one-hot: UNKNOWN out
        for columns, embedding in zip(self.embedded, self.embeddings, strict=True):
            widths.update(dict.fromkeys(columns, embedding.embedding_dim))
        self.fold_work = sum(self.cardinalities[j] * widths[j] for j in self.fold_order)

    def forward(self, codes: Tensor) -> Tensor:
        parts = []
        if self.one_hot:
            index = codes[:, self.one_hot] + self.one_hot_offsets
            parts.append(nn.functional.embedding_bag(index, self.one_hot_table, mode="sum"))
        for g, (columns, embedding) in enumerate(zip(self.embedded, self.embeddings, strict=True)):
            if len(columns) == 1:  # a table of its own: no offsets to add
                parts.append(embedding(codes[:, columns[0]]))
            else:
                index = codes[:, columns] + getattr(self, f"embedding_offsets_{g}")
                parts.append(embedding(index).flatten(1))
        return torch.cat(parts, dim=1)

    def folds(self, n_rows: int) -> bool:
        """Whether `first_layer_share` is the cheaper way for a batch of `n_rows` outside
        autograd (validation, evaluate, serving: large batches, where it is several times
        cheaper). Training keeps `forward`: there the lookups' backward costs more than it saves
        at the usual batch sizes."""
        saved = n_rows * (self.out_features - LOOKUP_COST * len(self.fold_order))
        return not torch.is_grad_enabled() and saved > TABLE_COST * self.fold_work

    def first_layer_share(self, codes: Tensor, weight: Tensor) -> Tensor:
        """W h for h = forward(codes) and W [H, out_features] the first layer's weight on these
        features, without building h: each column's levels go through its block of W once
        (a [C_j, H] table), then one summed lookup per row picks a level of every column."""
        tables = []
        start = self.one_hot_table.shape[1]
        if self.one_hot:
            tables.append(self.one_hot_table @ weight[:, :start].T)
        for columns, embedding in zip(self.embedded, self.embeddings, strict=True):
            width = embedding.embedding_dim
            blocks = weight[:, start : start + width * len(columns)].split(width, dim=1)
            levels = embedding.weight.split([self.cardinalities[j] for j in columns])
            tables += [rows @ block.T for rows, block in zip(levels, blocks, strict=True)]
            start += width * len(columns)
        index = codes[:, self.fold_order] + self.fold_offsets
        return nn.functional.embedding_bag(index, torch.cat(tables), mode="sum")


def _offsets(sizes: list[int]) -> Tensor:
    """Where each column's rows start in a table that stacks them: 0, s0, s0 + s1, ..."""
    return torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0)


def _one_hot_table(sizes: list[int]) -> Tensor:
    """Block-diagonal identity with each block's UNKNOWN column removed: one lookup with offsets
    one-hot encodes every column at once."""
    blocks = [torch.eye(size)[:, [k for k in range(size) if k != UNKNOWN]] for size in sizes]
    return torch.block_diag(*blocks) if blocks else torch.zeros(0, 0)


def _embedding(cardinalities: list[int], dim: int) -> nn.Embedding:
    """One table for columns of these cardinalities, U(-1/sqrt(dim), 1/sqrt(dim)), each
    column's UNKNOWN row zero."""
    embedding = nn.Embedding(sum(cardinalities), dim)
    bound = 1 / math.sqrt(dim)
    nn.init.uniform_(embedding.weight, -bound, bound)
    with torch.no_grad():
        embedding.weight[_offsets(cardinalities) + UNKNOWN] = 0.0
    return embedding


def fit_bins(options: dict[str, Any], x: np.ndarray) -> list[list[float]] | None:
    """The piecewise-linear embedding's bin edges per column of `x` (the train split's
    continuous features), at `n_bins` quantiles, as plain lists (they travel in the checkpoint's
    hparams); None for a numeric embedding that fits nothing.

    Edges that coincide are merged, so a column with few distinct values has fewer bins. A
    column constant on train (`compute_bins` refuses one) gets the single bin [v - 1, v + 1]:
    its encoding is linear in x. Above 2^24 rows (torch.quantile's limit) the quantiles are
    those of a seeded random 2^24 rows.
    """
    if options.get("kind") != "piecewise_linear" or x.shape[1] == 0:
        return None
    from rtdl_num_embeddings import compute_bins

    if len(x) > QUANTILE_ROWS:
        rows = np.random.default_rng(0).choice(len(x), QUANTILE_ROWS, replace=False)
        x = np.take(x, np.sort(rows), axis=0)
    x = torch.tensor(np.asarray(x), dtype=torch.float32)  # a copy: a memory map is read-only
    constant = (x == x[0]).all(dim=0)
    n_bins = min(options.get("n_bins", 48), len(x) - 1)
    with _one_bin_allowed():
        fitted = iter(compute_bins(x[:, ~constant], n_bins) if not constant.all() else [])
    return [
        [float(x[0, j]) - 1, float(x[0, j]) + 1] if constant[j] else next(fitted).tolist()
        for j in range(x.shape[1])
    ]


def _numeric_embedding(
    n_features: int, options: dict[str, Any], bins: list[list[float]] | None = None
) -> nn.Module | None:
    """The continuous features' embedding [N, n_features] -> [N, n_features, d_embedding] that
    `options` (the `numeric_embedding` config) names, from the authors' `rtdl_num_embeddings`;
    None for kind none or no continuous feature.

    periodic: PLR, ReLU(Linear_i([cos(2π c_i x_i), sin(2π c_i x_i)])), the frequencies trained.
    piecewise_linear: PLE on the fitted `bins` (`fit_bins`), version B (a linear term plus a
    per-feature linear map of the encoding, that map zero at the start; ReLU on that map if
    `activation`).
    """
    kind = options.get("kind", "none")
    if kind == "none" or not n_features:
        return None
    from rtdl_num_embeddings import PeriodicEmbeddings, PiecewiseLinearEmbeddings

    d_embedding = options.get("d_embedding", 24)
    if kind == "periodic":
        return PeriodicEmbeddings(
            n_features,
            d_embedding,
            n_frequencies=options.get("n_frequencies", 48),
            frequency_init_scale=options.get("frequency_scale", 0.01),
            activation=True,
            lite=False,
        )
    if bins is None or len(bins) != n_features:
        raise ModelError(
            f"numeric_embedding.kind={kind} needs bin edges for each of the {n_features} "
            "continuous features, fitted on the train split (the checkpoint has none)"
        )
    with _one_bin_allowed():
        return PiecewiseLinearEmbeddings(
            [torch.tensor(edges) for edges in bins],
            d_embedding,
            activation=options.get("activation", False),
            version="B",
        )


@contextmanager
def _one_bin_allowed() -> Iterator[None]:
    """Without rtdl's warning for a column of one bin (two distinct values, or constant on
    train): its encoding is linear in x, which is fine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has just two bin edges")
        yield


# The names mlpflow's own PLR module gave the same tensors (the same math), in a checkpoint: rtdl's
OWN_PERIODIC_NAMES = {
    "periodic.frequencies": "numeric_embedding.periodic.weight",
    "periodic.weight": "numeric_embedding.linear.weight",
    "periodic.bias": "numeric_embedding.linear.bias",
}


class TabularNetwork(nn.Module):
    """The input every mlpflow network takes: the numeric features x [N, n_inputs] (the first
    `n_continuous` continuous, optionally through a numeric embedding in their place) joined
    with the categorical columns' one-hot vectors or embeddings (level codes [N, k]).
    Subclasses put their layers on `input_width` features and set `values_per_row`: the most
    values one input row takes in any of their activations (what a forward pass's memory and
    cache use grow with)."""

    values_per_row: int

    def __init__(
        self,
        n_inputs: int,
        *,
        cardinalities: Sequence[int] = (),
        n_continuous: int = 0,
        categorical: dict[str, Any] | None = None,
        numeric_embedding: dict[str, Any] | None = None,
        bins: list[list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.numeric_embedding = _numeric_embedding(n_continuous, numeric_embedding or {}, bins)
        self.n_continuous = n_continuous if self.numeric_embedding is not None else 0
        self.categorical = (
            CategoricalInput(cardinalities, **(categorical or {})) if cardinalities else None
        )
        self.n_inputs = n_inputs
        self.d_embedding = (
            self.numeric_embedding.get_output_shape()[-1] if self.numeric_embedding else 1
        )
        width = n_inputs + self.n_continuous * (self.d_embedding - 1)
        width += self.categorical.out_features if self.categorical is not None else 0
        self.input_width = width
        self.register_load_state_dict_pre_hook(_own_periodic_names)

    def dense_input(self, x: Tensor) -> Tensor:
        """The numeric part of the input: the continuous features' embeddings (when on),
        flattened, then the other numeric features."""
        if self.numeric_embedding is None:
            return x
        continuous = self.numeric_embedding(x[:, : self.n_continuous]).flatten(1)
        return torch.cat([continuous, x[:, self.n_continuous :]], dim=1)

    def joined_input(self, x: Tensor, codes: Tensor | None) -> Tensor:
        """The whole input [N, input_width]."""
        dense = self.dense_input(x)
        if self.categorical is None:
            return dense
        return torch.cat([dense, self.categorical(codes)], dim=1)

    def input_chunks(self) -> list[int]:
        """Each raw feature's width in the input, in order (they sum to `input_width`)."""
        chunks = [self.d_embedding] * self.n_continuous + [1] * (self.n_inputs - self.n_continuous)
        return chunks + (self.categorical.column_widths() if self.categorical else [])


def _own_periodic_names(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """A state dict that names the periodic embedding's tensors periodic.frequencies,
    periodic.weight and periodic.bias loads too: they are rtdl's tensors, the same math."""
    for old, new in OWN_PERIODIC_NAMES.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
