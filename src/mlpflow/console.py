"""What the user sees in the terminal: the config tree and the end-of-run summary (one-line
warnings are `mlpflow.notice.warn`)."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

from mlpflow.files import read_json

console = Console(stderr=False)
ROLE_PREFIX = re.compile(r"^(numeric|boolean|categorical|dropped)(: |; |$)")
# MLflow 3.17's UI opens in its GenAI view unless the link asks for the model-training one.
ML_VIEW = "workflowType=machine_learning"


def print_config_tree(cfg: DictConfig) -> None:
    tree = Tree("[bold]config[/bold]")
    for key, value in cfg.items():
        text = OmegaConf.to_yaml(value, resolve=True) if OmegaConf.is_config(value) else str(value)
        tree.add(f"[bold cyan]{key}[/bold cyan]").add(Syntax(text.rstrip(), "yaml"))
    console.print(tree)


def print_metrics(title: str, metrics: Mapping[str, float]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)


def print_cross_validation(run: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    """A cross-validation's table (per metric: the fold mean ± std on the held-out folds, the
    out-of-fold score, the fold ensemble on test and its members' mean there), then one line."""
    cv, oof, test, members = run["cv"], run["oof"], metrics["test"], metrics["test_fold_mean"]
    folds = f"{cv['folds']} folds" + (f" x {cv['repeats']} repeats" if cv["repeats"] > 1 else "")
    table = Table(title=f"cross-validation, {folds}")
    for header in ("metric", "folds: mean ± std", "out-of-fold", "ensemble on test",
                   "its folds on test"):  # fmt: skip
        table.add_column(header, justify="left" if header == "metric" else "right")
    for name in test:
        spread = f"{cv[name + '_mean']:.4f} ± {cv[name + '_std']:.4f}"
        ensemble, member = f"{test[name]:.4f}", _value(members.get(name))
        table.add_row(name, spread, _value(oof.get(name)), ensemble, member)
    console.print(table)
    main = next(name for name in ("roc_auc", "r2", "loss") if name in test)
    console.print(
        f"cv {main} {cv[main + '_mean']:.4f} ± {cv[main + '_std']:.4f} over {folds}, "
        f"out-of-fold {_value(oof.get(main))}; fold ensemble on test {test[main]:.4f} "
        f"(its folds: {_value(members.get(main))})",
        soft_wrap=True,
    )


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def print_run_summary(reports: str | Path) -> None:
    """The test metrics and the MLflow run of a finished pipeline, with a link to the run in the
    UI's model-training view: the end of `dvc repro` (`mlpflow report`) and of a Hydra run."""
    metrics = read_json(Path(reports) / "metrics.json")
    run = read_json(Path(reports) / "train.json")
    if "cv" in run:
        print_cross_validation(run, metrics)
    else:
        print_metrics("test metrics", metrics["test"])
    if run.get("run_id"):
        console.print(
            f"MLflow run [bold]{run['run_name']}[/bold] ({run['run_id']})", soft_wrap=True
        )
        url = f"http://127.0.0.1:5000/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
        # One line, never wrapped: a link cut in two is not a link.
        console.print(
            f"open it:  make ui   (or: mlpflow ui) then browse {url}?{ML_VIEW}", soft_wrap=True
        )


def print_columns(meta: Any) -> None:
    """prepare's decisions, one row per raw column, and what happened to the rows."""
    rows = sum(meta.rows.values()) + meta.schema["dropped_rows"]
    table = Table(title=f"prepare: {meta.task} target {meta.target!r}, {rows} rows")
    for header in ("column", "role", "dtype", "levels", "missing", "what was done"):
        table.add_column(header, justify="right" if header in ("levels", "missing") else "left")
    for column in meta.columns:
        levels = "" if column.levels is None else str(column.levels)
        missing = f"{100 * column.missing / rows:.1f}%" if column.missing else ""
        action = ROLE_PREFIX.sub("", column.action)  # the role has its own column
        table.add_row(column.name, column.role, column.dtype, levels, missing, action)
    split = ", ".join(f"{name} {count}" for name, count in meta.rows.items())
    dropped, no_target = meta.schema["dropped_rows"], meta.schema["missing_target_rows"]
    reasons = [f"{no_target} with no target"] if no_target else []
    if dropped > no_target:
        reasons.append(f"{dropped - no_target} with missing values")
    table.caption = f"rows: {split}" + (
        f"; dropped {dropped} ({', '.join(reasons)})" if dropped else ""
    )
    if determining := meta.schema.get("determines_target"):
        table.caption += f"; determine the target: {', '.join(determining)}"
    console.print(table)


def verbose() -> bool:
    """MLPFLOW_VERBOSE=1 (or `mlpflow -v`): MLflow's and Lightning's INFO lines come back."""
    return os.environ.get("MLPFLOW_VERBOSE") == "1"


def quiet_mlflow() -> None:
    """MLflow's INFO lines ("Creating initial MLflow database tables...", "Validating input
    example...") and artifact progress bars drown mlpflow's own output. Read when mlflow is
    imported: call before anything imports it; a user's own setting wins."""
    if verbose():
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def quiet_lightning() -> None:
    """Keep Lightning's banners (device info, product tips) out of the user's terminal."""
    if verbose():
        return

    for name in (
        "pytorch_lightning.utilities.rank_zero",
        "pytorch_lightning.accelerators.cuda",
        "pytorch_lightning.trainer.connectors.signal_connector",  # mlpflow says it in one line
        "lightning_fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # mlpflow owns the models dir: resume.py keeps its state there, or clears it first.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
