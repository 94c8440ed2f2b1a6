"""The preprocessing fitted on train, as plain data (meta.json) and the code that applies it.

prepare applies it to every split, the served model to raw rows: one implementation. The numeric
transform is scikit-learn's own (StandardScaler, RobustScaler, QuantileTransformer), rebuilt
from its fitted attributes rather than unpickled. The regression target's transform is applied
in torch, by training, evaluation and serving (torch imported there: prepare never needs it).
"""

from __future__ import annotations

import statistics
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


# QuantileTransformer's bounds (sklearn.preprocessing._data.BOUNDS_THRESHOLD): a probability
# within it of 0 or 1 is an end of the fitted range; the normal output is clipped to match.
BOUNDS = 1e-7
NORMAL_CLIP = statistics.NormalDist().inv_cdf(1 - (BOUNDS - np.spacing(1)))


@dataclass(frozen=True)
class TargetTransform:
    """A regression target's transform (data.target_transform), fitted on the train targets:
    `none`, `log1p`, or `quantile`: QuantileTransformer(output_distribution="normal") kept as its
    fitted `quantiles_` and `references_`. `forward` maps targets to what the network learns
    (before standardization), `inverse` maps its predictions back: torch, as in
    QuantileTransformer's own transform and inverse_transform (`docs/math.md`, section 3)."""

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
        x = y.double()
        quantiles, references = self._tables(x)
        # Interpolated upwards and downwards, averaged: a run of equal quantiles (a repeated
        # target value) maps to the middle of its references, not to one end.
        up = _interp(x, quantiles, references)
        down = _interp(-x, -quantiles.flip(0), -references.flip(0))
        p = 0.5 * (up - down)
        p = torch.where(x + BOUNDS > quantiles[-1], 1.0, p)
        p = torch.where(x - BOUNDS < quantiles[0], 0.0, p)
        return torch.special.ndtri(p).clamp(-NORMAL_CLIP, NORMAL_CLIP).to(y.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        import torch

        if self.name == "log1p":
            return torch.expm1(z)
        if self.name == "none":
            return z
        quantiles, references = self._tables(z)
        p = torch.special.ndtr(z.double())
        y = _interp(p, references, quantiles)
        y = torch.where(p + BOUNDS > 1.0, quantiles[-1], y)
        y = torch.where(p - BOUNDS < 0.0, quantiles[0], y)
        return y.to(z.dtype)

    def _tables(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The quantiles and references on `like`'s device, float64."""
        quantiles, references = self._cpu_tables
        return quantiles.to(like.device), references.to(like.device)

    @cached_property
    def _cpu_tables(self) -> tuple[Tensor, Tensor]:
        """Built once per instance: training maps every chunk's targets."""
        import torch

        return (
            torch.tensor(self.quantiles, dtype=torch.float64),
            torch.tensor(self.references, dtype=torch.float64),
        )


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """np.interp(x, xp, fp) in torch: xp non-decreasing; fp's ends beyond xp's."""
    import torch

    right = torch.searchsorted(xp, x, right=True).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[right - 1], xp[right], fp[right - 1], fp[right]
    width = x1 - x0
    weight = torch.where(width > 0, (x - x0) / torch.where(width > 0, width, 1.0), 0.0)
    y = f0 + weight * (f1 - f0)
    y = torch.where(x >= xp[-1], fp[-1], y)
    return torch.where(x < xp[0], fp[0], y)
