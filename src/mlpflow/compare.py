"""`mlpflow compare`: an experiment's best runs as a table, their test curves in one figure.

Reads only what train and evaluate logged (params, metrics, the plots/*.json artifacts), through
MlflowClient, so it works the same on the local store and on a server.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.exceptions import MlflowException
from rich.table import Table

from mlpflow.drawing import saved_figure
from mlpflow.errors import ModelError
from mlpflow.evaluation.plot_specs import PLOTS

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# --curve choices: the curves evaluate logs (evaluation.plot_specs).
CURVES = {
    "roc": PLOTS["roc"],
    "pr": PLOTS["precision_recall"],
    "pred": PLOTS["predicted_vs_true"],
}
LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse")
KEY_PARAMS = ("model.hidden_dims", "loss.name", "optimizer.name", "optimizer.lr")
MAX_PARAMS = 4
MAX_METRICS = 3
IGNORED_PARAMS = ("paths.", "tracking.", "callbacks.")


def best_runs(client: MlflowClient, experiment: str, metric: str, top: int) -> list[Run]:
    """The `top` training runs of `experiment` that have `metric`, best first.

    Training runs carry lineage tags (config.hash); a sweep's parent run, which repeats its
    best trial's metric, does not.
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments(max_results=20))
        raise ModelError(
            f"no experiment {experiment!r} in {client.tracking_uri} "
            f"(experiments: {names or 'none'}); pass --experiment NAME"
        )
    lower = any(part in metric.rsplit("/", 1)[-1] for part in LOWER_IS_BETTER)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"metrics.`{metric}` > -1e308 and tags.`config.hash` IS NOT NULL",
        order_by=[f"metrics.`{metric}` {'ASC' if lower else 'DESC'}"],
        max_results=top,
    )
    if not runs:
        recent = client.search_runs([found.experiment_id], max_results=50)
        known = sorted({name for run in recent for name in run.data.metrics})
        raise ModelError(
            f"no run in experiment {experiment!r} has metric {metric!r}; "
            f"metrics logged there: {', '.join(known) or 'none'}"
        )
    return list(runs)


def _duration(run: Run) -> str:
    if run.info.end_time is None:
        return "running"
    seconds = (run.info.end_time - run.info.start_time) / 1000
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def shown_params(runs: list[Run]) -> list[str]:
    """The params that differ between the runs; the usual key params when none differ."""
    keys = sorted({k for r in runs for k in r.data.params if not k.startswith(IGNORED_PARAMS)})
    varying = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    return varying[:MAX_PARAMS] or [k for k in KEY_PARAMS if k in keys]


def shown_metrics(runs: list[Run], metric: str) -> list[str]:
    """The chosen metric, then other test metrics every run has."""
    common = set.intersection(*(set(r.data.metrics) for r in runs))
    others = sorted(m for m in common if m.startswith("test/") and m != metric)
    return [metric, *others][:MAX_METRICS]


def _header(key: str) -> str:
    """Short column names: loss.name -> loss, optimizer.lr -> lr, test/roc_auc -> roc_auc."""
    return re.split(r"[./]", key.removesuffix(".name"))[-1]


def table(runs: list[Run], metric: str) -> Table:
    """One row per run: rank, name and id, the params that tell the runs apart, metrics."""
    from rich.table import Table

    params, metrics = shown_params(runs), shown_metrics(runs, metric)
    out = Table(title=f"best runs by {metric}")
    out.add_column("#", justify="right", no_wrap=True)
    out.add_column("run / id", overflow="fold", min_width=16)
    for key in params:
        out.add_column(_header(key), overflow="fold")
    for key in metrics:
        out.add_column(_header(key), justify="right", no_wrap=True)
    out.add_column("time", justify="right", no_wrap=True)
    out.add_column("status", no_wrap=True)
    for rank, run in enumerate(runs, 1):
        out.add_row(
            str(rank),
            f"{run.info.run_name}\n[dim]{run.info.run_id}[/dim]",
            *(run.data.params.get(p, "") for p in params),
            *(f"{run.data.metrics[m]:.4f}" if m in run.data.metrics else "" for m in metrics),
            _duration(run),
            run.info.status.lower(),
        )
    return out


def default_curve(runs: list[Run]) -> str:
    return "pred" if runs[0].data.tags.get("task") == "regression" else "roc"


def _rows(client: MlflowClient, run: Run, curve: str, workdir: Path) -> list[dict[str, Any]]:
    """The curve's rows as evaluate logged them; [] when the run has none (no evaluate)."""
    spec = CURVES[curve]
    try:
        local = client.download_artifacts(run.info.run_id, spec.file, str(workdir))
    except (MlflowException, OSError):
        return []
    payload = json.loads(Path(local).read_text())
    return payload.get(spec.name, []) if isinstance(payload, dict) else []


def curve_points(rows: list[dict[str, Any]], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """One curve; multiclass rows (one-vs-rest, with "class") are macro-averaged on a grid."""
    if not any("class" in row for row in rows):
        return np.array([r[x] for r in rows]), np.array([r[y] for r in rows])
    grid = np.linspace(0.0, 1.0, 201)
    curves = []
    for name in dict.fromkeys(row["class"] for row in rows):
        points = sorted((r[x], r[y]) for r in rows if r["class"] == name)
        xs, ys = (np.array(v) for v in zip(*points, strict=True))
        curves.append(np.interp(grid, xs, ys))
    return grid, np.mean(curves, axis=0)


def write_figure(
    client: MlflowClient, runs: list[Run], metric: str, curve: str, output: str | Path
) -> Path:
    """Overlay the runs' test curves (ROC, PR, or predicted vs true) in one PNG at `output`."""
    spec = CURVES[curve]
    output = Path(output)
    drawn = 0
    with saved_figure(output, (7, 6)) as (_, ax):
        with tempfile.TemporaryDirectory() as tmp:
            for i, run in enumerate(runs):
                rows = _rows(client, run, curve, Path(tmp) / str(i))
                if not rows:
                    continue
                xs, ys = curve_points(rows, spec.x, spec.y)
                label = f"{run.info.run_name} ({metric}={run.data.metrics[metric]:.3f})"
                if curve == "pred":
                    ax.scatter(xs, ys, s=8, alpha=0.5, label=label)
                else:
                    ax.plot(xs, ys, label=label, drawstyle="steps-post" if curve == "pr" else None)
                drawn += 1
        if not drawn:
            raise ModelError(
                f"none of the {len(runs)} runs has {spec.file} (evaluate logs it); "
                "run the evaluate stage, or choose another --curve"
            )
        if curve == "pred":
            low, high = ax.get_xlim()
            ax.plot([low, high], [low, high], "k--", linewidth=1, label="y = x")
        elif curve == "roc":
            ax.plot([0, 1], [0, 1], "k:", linewidth=1, label="chance")
        ax.set(xlabel=spec.x_label, ylabel=spec.y_label, title=spec.title)
        ax.legend(fontsize="small", loc="best")
        output.parent.mkdir(parents=True, exist_ok=True)
    return output
