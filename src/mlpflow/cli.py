"""`mlpflow`: the console script. Imports stay inside the commands so --help answers at once."""

from __future__ import annotations

import argparse
import sys

from mlpflow.collector import collect_less_often
from mlpflow.errors import friendly_errors

STAGES = ("prepare", "train", "evaluate")


def compose(args: argparse.Namespace) -> None:
    from mlpflow.config.compose import compose as compose_config
    from mlpflow.config.compose import params_yaml
    from mlpflow.config.schema import validate
    from mlpflow.files import write_text

    cfg = compose_config(args.overrides)
    validate(cfg)
    write_text(args.output, params_yaml(cfg))
    print(f"wrote {args.output}")


def stage(args: argparse.Namespace) -> None:
    import importlib

    from mlpflow.config.compose import load_params

    cfg = load_params(args.params)
    importlib.import_module(f"mlpflow.stages.{args.name}").run(cfg)


def train(args: argparse.Namespace) -> None:
    from mlpflow.stages.pipeline import main as pipeline_main

    sys.argv = ["mlpflow train", *args.overrides]
    pipeline_main()


def report(args: argparse.Namespace) -> None:
    from mlpflow.console import print_run_summary

    print_run_summary(args.reports)


def predict(args: argparse.Namespace) -> None:
    from mlpflow.serving.predict import predict as predict_rows
    from mlpflow.tracking.store import resolve_uri

    predictions = predict_rows(
        args.model, args.input, args.output, resolve_uri(args.uri), args.prepared
    )
    print(f"wrote {len(predictions)} predictions to {args.output}")


def register(args: argparse.Namespace) -> None:
    from mlpflow.serving.registry import register as register_run
    from mlpflow.tracking.store import open_store, resolve_uri

    version = register_run(open_store(resolve_uri(args.uri)), args.run_id, args.name, args.alias)
    reference = (
        f"models:/{args.name}@{args.alias}"
        if args.alias
        else f"models:/{args.name}/{version.version}"
    )
    print(f"registered {args.name} version {version.version} from run {args.run_id}")
    print(f"predict:  mlpflow predict --model {reference} --input rows.csv --output preds.csv")


def compare(args: argparse.Namespace) -> None:
    from mlpflow.compare import best_runs, default_curve, table, write_figure
    from mlpflow.console import console
    from mlpflow.tracking.store import open_store, resolve_uri

    client = open_store(resolve_uri(args.uri))
    runs = best_runs(client, args.experiment, args.metric, args.top)
    console.print(table(runs, args.metric))
    curve = args.curve or default_curve(runs)
    output = args.output or f"reports/compare/{curve}.png"
    print(f"figure: {write_figure(client, runs, args.metric, curve, output)}")


def runs(args: argparse.Namespace) -> None:
    from rich.table import Table

    from mlpflow.console import console
    from mlpflow.tracking.stale import mark_killed, running_runs
    from mlpflow.tracking.store import open_store, resolve_uri

    client = open_store(resolve_uri(args.uri))
    found = [run for run in running_runs(client) if run.state == "gone" or not args.stale]
    if not found:
        print("no stale runs" if args.stale else "no RUNNING runs")
        return
    shown = Table("name", "experiment", "process (host:pid:start)", "process")
    shown.add_column("run id", no_wrap=True, min_width=32)
    for run in found:
        shown.add_row(run.run_name, run.experiment, run.owner, run.state, run.run_id)
    console.print(shown)
    if args.mark_killed:
        marked = mark_killed(client, found)
        print(f"marked {len(marked)} runs KILLED; the same command resumes each")


def ui(args: argparse.Namespace) -> None:
    import os

    from mlpflow.console import ML_VIEW
    from mlpflow.tracking.store import resolve_uri

    uri = resolve_uri(args.uri)
    # One user, no background jobs: the UI starts faster and smaller (benchmarks/README.md).
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # This interpreter's mlflow: the venv need not be on PATH (`.venv/bin/mlpflow ui`).
    command = [
        *(sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri),
        *("--host", args.host, "--port", str(args.port), "--workers", "1"),
    ]
    print(" ".join(command), flush=True)
    print(f"open http://{args.host}:{args.port}/#/experiments?{ML_VIEW}", flush=True)
    os.execv(sys.executable, command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpflow", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="MLflow's and Lightning's INFO lines too"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("compose", help="write params.yaml from conf/ (+ Hydra overrides)")
    p.add_argument("overrides", nargs="*", help="e.g. optimizer=sgd optimizer.lr=0.01")
    p.add_argument("--output", default="params.yaml")
    p.set_defaults(func=compose)

    p = commands.add_parser("stage", help="run one DVC stage on params.yaml (what dvc.yaml calls)")
    p.add_argument("name", choices=STAGES)
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=stage)

    p = commands.add_parser(
        "train",
        help="prepare, train and evaluate from conf/ with Hydra overrides (-m for sweeps)",
        add_help=False,
    )
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    p.set_defaults(func=train)

    p = commands.add_parser(
        "report", help="print the test metrics and the MLflow run of the last dvc repro"
    )
    p.add_argument("--reports", default="reports")
    p.set_defaults(func=report)

    store = "tracking store (default: $MLFLOW_TRACKING_URI, else the project's mlflow.db)"
    p = commands.add_parser(
        "predict",
        help="predict raw rows (CSV or Parquet) with a registered model, a run or a checkpoint",
    )
    p.add_argument(
        "--model",
        required=True,
        help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id, or a .ckpt / model directory",
    )
    p.add_argument(
        "--input",
        required=True,
        help="CSV or Parquet (.parquet, .pq) with the model's feature columns; a CSV's delimiter "
        "and number format are read from it (else the training table's)",
    )
    p.add_argument("--output", required=True, help="CSV to write the predictions to")
    p.add_argument("--uri", default=None, help=store)
    p.add_argument(
        "--prepared",
        default="data/prepared",
        help="prepared data a bare .ckpt was trained on (its preprocessing and class names)",
    )
    p.set_defaults(func=predict)

    p = commands.add_parser("register", help="register a run's model (optionally under an alias)")
    p.add_argument("run_id")
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--alias", default=None, help="e.g. champion (moved if it points elsewhere)")
    p.add_argument("--uri", default=None, help=store)
    p.set_defaults(func=register)

    p = commands.add_parser(
        "compare", help="table of the best runs and a figure overlaying their test curves"
    )
    p.add_argument("--experiment", default="mlpflow")
    p.add_argument("--metric", default="test/roc_auc", help="rank by it, e.g. test/r2")
    p.add_argument("--top", type=int, default=10)
    p.add_argument(
        "--curve",
        choices=("roc", "pr", "pred"),
        default=None,
        help="default: roc, or pred (predicted vs true) for regression",
    )
    p.add_argument("--output", default=None, help="PNG path (default: reports/compare/CURVE.png)")
    p.add_argument("--uri", default=None, help=store)
    p.set_defaults(func=compare)

    p = commands.add_parser("runs", help="list RUNNING runs and whether their process lives")
    p.add_argument("--stale", action="store_true", help="only those whose process is gone")
    p.add_argument("--mark-killed", action="store_true", help="mark the gone ones KILLED")
    p.add_argument("--uri", default=None, help=store)
    p.set_defaults(func=runs)

    p = commands.add_parser("ui", help="serve the MLflow UI over the project's store")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--uri", default=None, help=store)
    p.set_defaults(func=ui)
    return parser


def main(argv: list[str] | None = None) -> None:
    collect_less_often()
    args = build_parser().parse_args(argv)
    if args.verbose:
        import os

        os.environ["MLPFLOW_VERBOSE"] = "1"
    if args.func is not ui:  # the UI server's own log lines are worth seeing
        from mlpflow.console import quiet_mlflow

        quiet_mlflow()
    with friendly_errors():
        args.func(args)
