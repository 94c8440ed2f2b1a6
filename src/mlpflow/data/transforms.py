"""The preprocessing fitted on train, as plain data (meta.json) and the code that applies it.

prepare applies it to every split, the served model to raw rows: one implementation. The numeric
transform is scikit-learn's own (StandardScaler, RobustScaler, QuantileTransformer), rebuilt
from its fitted attributes rather than unpickled; so is the regression target's quantile
transform, which training, evaluation and serving apply to tensors (torch imported there:
prepare never needs it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

# What each transform learns on train: the attributes its `transform` reads.
FITTED_ATTRIBUTES = {
    "standard": ("mean_", "scale_"),
    "robust": ("center_", "scale_"),
    "quantile": ("quantiles_", "references_"),
}
# Reserved level codes of every categorical column; its levels follow from FIRST_LEVEL on.
UNKNOWN, MISSING, RARE = 0, 1, 2
FIRST_LEVEL = 3


def make_estimator(transform: str, n_quantiles: int = 1000, seed: int = 0) -> Any:
    # Imported here: training imports this module (the level codes) and never makes an
    # estimator; scikit-learn would add ~1.4 s to its start-up (benchmarks/README.md).
    from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler

    if transform == "standard":
        return StandardScaler()
    if transform == "robust":
        return RobustScaler()
    return QuantileTransformer(
        n_quantiles=n_quantiles, output_distribution="normal", subsample=None, random_state=seed
    )


def soft_clip(z: np.ndarray, bound: float | None) -> np.ndarray:
    """z / sqrt(1 + (z / bound)^2): the identity near 0, tends to ±bound for outliers."""
    return z if bound is None else z / np.sqrt(1.0 + (z / bound) ** 2)


@dataclass(frozen=True)
class NumericColumns:
    """The numeric and boolean columns: continuous ones transformed, booleans as 0/1, missing
    cells filled with the train median, and a 0/1 indicator per column missing in train."""

    names: list[str]  # continuous first, then booleans
    n_continuous: int
    medians: list[float] | None  # None: nan_policy error/drop, nothing to fill
    indicators: list[str]  # columns that get a `<name>_na` feature, in `names` order
    transform: str
    fitted: dict[str, list[Any]]  # FITTED_ATTRIBUTES of the transform, as lists
    clip: float | None

    @property
    def features(self) -> list[str]:
        return [*self.names, *(f"{name}_na" for name in self.indicators)]

    def estimator(self) -> Any:
        estimator = make_estimator(self.transform)
        for name, value in self.fitted.items():
            setattr(estimator, name, np.asarray(value, dtype=np.float64))
        estimator.n_features_in_ = self.n_continuous
        if self.transform == "quantile":
            estimator.n_quantiles_ = len(self.fitted["quantiles_"])
        return estimator

    def apply(self, values: np.ndarray, estimator: Any | None = None) -> np.ndarray:
        """float64 values [n, len(names)], NaN where missing -> the float32 features [n, F]."""
        missing = np.isnan(values)
        filled = values if self.medians is None else np.where(missing, self.medians, values)
        continuous = filled[:, : self.n_continuous]
        if self.n_continuous:
            with np.errstate(over="ignore", invalid="ignore"):
                z = (estimator or self.estimator()).transform(continuous)
            continuous = soft_clip(z, self.clip)
        index = [self.names.index(name) for name in self.indicators]
        parts = [continuous, filled[:, self.n_continuous :], missing[:, index]]
        return np.hstack(parts).astype(np.float32)


@dataclass(frozen=True)
class CategoricalColumns:
    """Each categorical column's vocabulary: its levels by train frequency. A level too rare in
    train (or beyond data.max_categories) is RARE, a missing cell MISSING, and a level never seen
    in train UNKNOWN (whose embedding stays zero: no train row teaches it anything)."""

    names: list[str]
    vocabularies: list[list[str]]
    rare: list[list[str]]  # the train levels coded RARE, per column

    @property
    def cardinalities(self) -> list[int]:
        return [FIRST_LEVEL + len(levels) for levels in self.vocabularies]

    def level_codes(self, j: int) -> dict[str, int]:
        """Column j's train levels -> their codes: a vocabulary level its own, a rare one RARE
        (a level not in here is UNKNOWN)."""
        codes = dict.fromkeys(self.rare[j], RARE)
        codes.update({level: FIRST_LEVEL + k for k, level in enumerate(self.vocabularies[j])})
        return codes

    def encode(self, texts: list[list[str | None]]) -> np.ndarray:
        """Level codes [n, len(names)] of text cells, one list of cells per column."""
        n_rows = len(texts[0]) if texts else 0
        codes = np.empty((n_rows, len(self.names)), dtype=np.int64)
        for j, cells in enumerate(texts):
            index = self.level_codes(j)
            codes[:, j] = [MISSING if cell is None else index.get(cell, UNKNOWN) for cell in cells]
        return codes


@dataclass(frozen=True)
class TargetTransform:
    """A regression target's transform (data.target_transform), fitted on the train targets:
    `none`, `log1p`, or `quantile`: QuantileTransformer(output_distribution="normal") kept as its
    fitted `quantiles_` and `references_`. `forward` maps targets to what the network learns
    (before standardization), `inverse` maps its predictions back; quantile through the
    QuantileTransformer rebuilt from them, on the CPU (`docs/math.md`, section 3)."""

    name: str = "none"
    quantiles: list[float] = field(default_factory=list)
    references: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, name: str, y_train: np.ndarray, seed: int) -> TargetTransform:
        if name != "quantile":
            return cls(name)
        n_quantiles = min(1000, len(y_train))
        estimator = make_estimator("quantile", n_quantiles, seed)
        estimator.fit(np.asarray(y_train, dtype=np.float64).reshape(-1, 1))
        return cls(name, estimator.quantiles_[:, 0].tolist(), estimator.references_.tolist())

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any] | None) -> TargetTransform:
        """From `as_hparams` (a checkpoint's plain containers); None: none."""
        return cls(**hparams) if hparams else cls()

    def as_hparams(self) -> dict[str, Any]:
        return asdict(self)

    def forward(self, y: Tensor) -> Tensor:
        import torch

        if self.name == "log1p":
            return torch.log1p(y)
        if self.name == "none":
            return y
        return self._apply(self._estimator.transform, y)

    def inverse(self, z: Tensor) -> Tensor:
        import torch

        if self.name == "log1p":
            return torch.expm1(z)
        if self.name == "none":
            return z
        return self._apply(self._estimator.inverse_transform, z)

    @staticmethod
    def _apply(method: Any, values: Tensor) -> Tensor:
        import torch

        column = values.detach().cpu().double().numpy().reshape(-1, 1)
        return torch.from_numpy(method(column)[:, 0]).to(values.device, values.dtype)

    @cached_property
    def _estimator(self) -> Any:
        """Built once per instance: training maps every chunk's targets."""
        estimator = make_estimator("quantile", len(self.quantiles))
        estimator.quantiles_ = np.asarray(self.quantiles, dtype=np.float64).reshape(-1, 1)
        estimator.references_ = np.asarray(self.references, dtype=np.float64)
        estimator.n_features_in_ = 1
        estimator.n_quantiles_ = len(self.quantiles)
        return estimator
