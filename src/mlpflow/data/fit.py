"""Fit the preprocessing on the train rows, write every split, and say what was done per column."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpflow.data.columns import ColumnPlan, Decoder
from mlpflow.data.preprocess import (
    Chunks,
    code_maps,
    fit_transform,
    fit_vocabularies,
    train_medians,
    train_sample,
    write_features,
)
from mlpflow.data.transforms import FITTED_ATTRIBUTES, CategoricalColumns, NumericColumns
from mlpflow.errors import DataError

if TYPE_CHECKING:
    from mlpflow.config.schema import DataConfig
    from mlpflow.data.build import Rows
    from mlpflow.data.scan import Scan


def fit_and_write(
    chunks: Chunks, rows: Rows, decoder: Decoder, scan: Scan, plans: list[ColumnPlan],
    data: DataConfig, seed: int, out: Path,
) -> tuple[NumericColumns, CategoricalColumns, list[ColumnPlan]]:  # fmt: skip
    """The fitted numeric and categorical preprocessing, X/C_{split}.npy written, and the
    plans with what was done to each column."""
    by_name = {plan.name: plan for plan in plans}
    numeric, estimator = _fit_numeric(chunks, rows, decoder, by_name, data, seed)
    levels = [scan.columns[name].names for name in decoder.categorical_names]
    categorical, capped = fit_vocabularies(
        chunks, rows.train, decoder.categorical_names, levels,
        data.min_category_count, data.max_categories,
    )  # fmt: skip
    maps = code_maps(categorical, levels)
    finite = write_features(chunks, rows.row_split, numeric, estimator, maps, rows.counts, out)
    if not finite.all():
        bad = [name for name, ok in zip(numeric.features, finite, strict=True) if not ok]
        verb = "standardize" if numeric.transform == "standard" else "transform"
        raise DataError(f"feature columns too large to {verb}: {', '.join(bad)}; rescale them")
    capped_names = {name for name, cap in zip(categorical.names, capped, strict=True) if cap}
    described = [
        _describe(
            plan, numeric, categorical, data.max_categories if plan.name in capped_names else None
        )
        for plan in plans
    ]
    return numeric, categorical, described


def _fit_numeric(
    chunks: Chunks, rows: Rows, decoder: Decoder, plans: dict[str, ColumnPlan], data: DataConfig,
    seed: int,
) -> tuple[NumericColumns, Any]:  # fmt: skip
    names, n_continuous = decoder.numeric_names, decoder.n_continuous
    medians = indicators = None
    wanted = data.nan_policy == "median" or data.numeric_transform != "standard"
    sample = train_sample(chunks, rows.train, seed) if names and wanted else None
    if data.nan_policy == "median" and names:
        gappy = [plans[name].missing > 0 for name in names]
        medians, train_missing = train_medians(chunks, rows.train, names, gappy, sample)
        indicators = [name for name, n in zip(names, train_missing, strict=True) if n]
    estimator, fitted = None, {}
    if n_continuous:
        estimator = fit_transform(
            chunks, rows.train, n_continuous, medians, data.numeric_transform, sample, seed
        )
        fitted = {
            name: np.asarray(getattr(estimator, name)).tolist()
            for name in FITTED_ATTRIBUTES[data.numeric_transform]
        }
    numeric = NumericColumns(
        names=names,
        n_continuous=n_continuous,
        medians=None if medians is None else medians.tolist(),
        indicators=indicators or [],
        transform=data.numeric_transform,
        fitted=fitted,
        clip=data.soft_clip,
    )
    return numeric, estimator


def _describe(
    plan: ColumnPlan, numeric: NumericColumns, categorical: CategoricalColumns, cap: int | None
) -> ColumnPlan:
    """The plan's action, completed with what fitting did."""
    done: list[str] = []
    if plan.role == "numeric":
        done.append(numeric.transform + (f", soft clip {numeric.clip:g}" if numeric.clip else ""))
    if plan.name in numeric.indicators:
        done.append(f"median for {plan.missing} missing + indicator {plan.name}_na")
    elif plan.role in ("numeric", "boolean") and plan.missing and numeric.medians is not None:
        done.append("median for missing")
    if plan.role == "categorical":
        j = categorical.names.index(plan.name)
        kept, rare = len(categorical.vocabularies[j]), len(categorical.rare[j])
        done.append(f"{kept} levels" + (f", {rare} rare -> 'rare'" if rare else ""))
        if cap is not None:
            done.append(f"capped at data.max_categories={cap}")
    return replace(plan, action="; ".join([plan.action, *done]))
