"""Permutation importance of the raw columns on the test split, with the task's main metric.

A raw column is permuted as a whole: a numeric column's feature together with its missing
indicator, a categorical column's level codes (however the network embeds them). scikit-learn's
`permutation_importance` permutes one array column at a time and cannot move such a group
together, hence this small grouped version. The permutations (and the sample of a large split)
are drawn from `seed`: the same seed gives the same values. A fold ensemble is measured as it
predicts: each row's column is moved to the same other row in every member's own copy of the
split, and the members' scores are averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy
from torchmetrics.functional.regression import r2_score

from mlpflow.config.schema import MAIN_METRIC
from mlpflow.data.prepared import Meta
from mlpflow.drawing import saved_figure
from mlpflow.evaluation.plot_specs import PLOTS, write_plot
from mlpflow.model.checkpoint import Weights
from mlpflow.model.outputs import network_outputs, network_scores

MAX_ROWS = 2000  # of a larger split, a sample: the cost stays bounded on large tables
FIGURE_COLUMNS = 20  # the figure shows the most important columns; the JSON holds them all

Groups = dict[str, tuple[list[int], list[int]]]


@dataclass(frozen=True)
class Member:
    """A network, the split as its own preprocessing wrote it (x, codes), and which of those
    columns each raw column became (`column_groups` of its meta)."""

    weights: Weights
    x: Tensor
    codes: Tensor
    groups: Groups


def column_groups(meta: Meta) -> Groups:
    """Raw column name -> (its X column indices, its C column indices); dropped columns have
    none and are left out.

    X is `meta.numeric.features`: the numeric and boolean features, then one `<name>_na`
    indicator per column missing in train; C holds one codes column per categorical feature. A
    date column's group is all its parts (`ColumnPlan.features`).
    """
    numeric, categorical = meta.numeric, meta.categorical
    groups: Groups = {}
    for column in meta.columns:
        if column.role == "drop":
            continue
        features = column.features
        x_index = [numeric.names.index(name) for name in features if name in numeric.names]
        x_index += [
            len(numeric.names) + numeric.indicators.index(name)
            for name in features
            if name in numeric.indicators
        ]
        c_index = [categorical.names.index(name) for name in features if name in categorical.names]
        groups[column.name] = (x_index, c_index)
    return groups


def main_metric(task: str, n_outputs: int) -> Callable[[Tensor, Tensor], float]:
    """score(scores, target) of the task's main metric, from scores in the one convention."""
    if task == "binary":
        return lambda scores, y: float(binary_auroc(scores, y))
    if task == "multiclass":
        return lambda scores, y: float(
            multiclass_accuracy(scores, y, num_classes=n_outputs, average="micro")
        )
    return lambda scores, y: float(r2_score(scores, y))


@torch.no_grad()
def permutation_importance(
    members: list[Member], y: Tensor, repeats: int, seed: int
) -> list[dict[str, float | str]]:
    """Per raw column: the mean and std over `repeats` of (baseline metric - metric with the
    column's features permuted across rows) of the members' mean score (one member: a single
    network); rows most important first.

    A split over MAX_ROWS rows is measured on a sample of MAX_ROWS of them (drawn from `seed`).
    All permutations of a column go through one forward pass per member, of the rows the
    permutation changed: a row that drew its own values (or equal ones: half the rows of a
    balanced yes/no column) scores as in the baseline, and keeps that score.
    """
    spec = members[0].weights.spec
    metric = main_metric(spec.task, spec.n_outputs)
    generator = torch.Generator().manual_seed(seed)
    if len(y) > MAX_ROWS:
        sample = torch.randperm(len(y), generator=generator)[:MAX_ROWS].sort().values
        members = [replace(m, x=m.x[sample], codes=m.codes[sample]) for m in members]
        y = y[sample]
    nets = [member.weights.network() for member in members]

    def scores(inputs: list[tuple[Tensor, Tensor]]) -> Tensor:
        per_member = [
            network_scores(network_outputs(net, x_in, codes_in), member.weights.spec)
            for net, member, (x_in, codes_in) in zip(nets, members, inputs, strict=True)
        ]
        return torch.stack(per_member).mean(dim=0)

    baseline_scores = scores([(m.x, m.codes) for m in members])
    baseline = metric(baseline_scores, y)
    n = len(y)
    rows: list[dict[str, float | str]] = []
    for name in members[0].groups:
        order = torch.cat([torch.randperm(n, generator=generator) for _ in range(repeats)])
        permuted = [_permuted(member, name, order, repeats) for member in members]
        changed = torch.stack([moved for _, _, moved in permuted]).any(dim=0)
        permuted_scores = torch.cat([baseline_scores] * repeats)
        if changed.any():
            permuted_scores[changed] = scores([(x[changed], c[changed]) for x, c, _ in permuted])
        drops = [baseline - metric(part, y) for part in permuted_scores.split(n)]
        rows.append(
            {"column": name, "importance": float(np.mean(drops)), "std": float(np.std(drops))}
        )
    return sorted(rows, key=lambda row: -row["importance"])


def _permuted(
    member: Member, name: str, order: Tensor, repeats: int
) -> tuple[Tensor, Tensor, Tensor]:
    """`repeats` copies of the member's split with the column's features moved along `order`
    (x, codes), and which of those rows now differ from their own."""
    x_index, c_index = member.groups.get(name, ([], []))
    own_x, own_codes = member.x[:, x_index], member.codes[:, c_index]
    new_x, new_codes = own_x[order], own_codes[order]
    x_perm, codes_perm = member.x.repeat(repeats, 1), member.codes.repeat(repeats, 1)
    x_perm[:, x_index], codes_perm[:, c_index] = new_x, new_codes
    moved = (new_x != own_x.repeat(repeats, 1)).any(dim=1)
    moved |= (new_codes != own_codes.repeat(repeats, 1)).any(dim=1)
    return x_perm, codes_perm, moved


def write_importance(
    members: list[Member], y: Tensor, meta: Meta, reports: Path, repeats: int, seed: int
) -> tuple[Path, Path]:
    """Compute the importance of the members (one network, or a fold ensemble's) on a split of
    targets `y`, and write plots/importance.json and figures/importance.png under `reports`;
    return their paths."""
    rows = permutation_importance(members, y, repeats, seed)
    spec = PLOTS["importance"]
    plot = write_plot((reports / spec.file).parent, spec, rows)
    figure = reports / "figures" / "importance.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    _draw(figure, rows[:FIGURE_COLUMNS], f"drop in test {MAIN_METRIC[meta.task]}")
    return plot, figure


def _draw(path: Path, rows: list[dict[str, float | str]], x_label: str) -> None:
    """A horizontal bar per column (std as the error bar), the most important on top."""
    with saved_figure(path, (6, 1.5 + 0.3 * len(rows))) as (fig, ax):
        names = [str(row["column"]) for row in rows]
        ax.barh(names, [row["importance"] for row in rows], xerr=[row["std"] for row in rows])
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(x_label)
        ax.set_title(PLOTS["importance"].title)
        fig.tight_layout()
