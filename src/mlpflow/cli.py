"""`mlpflow`: the console script. Imports stay inside the commands so --help answers at once."""

from __future__ import annotations

import argparse
import sys

from mlpflow.errors import friendly_errors

STAGES = ("prepare", "train", "evaluate")


def compose(args: argparse.Namespace) -> None:
    from mlpflow.config import compose as compose_config
    from mlpflow.config import params_yaml, validate
    from mlpflow.files import write_text

    cfg = compose_config(args.overrides)
    validate(cfg)
    write_text(args.output, params_yaml(cfg))
    print(f"wrote {args.output}")


def stage(args: argparse.Namespace) -> None:
    import importlib

    from mlpflow.config import load_params

    cfg = load_params(args.params)
    importlib.import_module(f"mlpflow.{args.name}").run(cfg)


def train(args: argparse.Namespace) -> None:
    from mlpflow.train import main as hydra_main

    sys.argv = ["mlpflow train", *args.overrides]
    hydra_main()


def report(args: argparse.Namespace) -> None:
    from mlpflow.console import console, print_metrics
    from mlpflow.files import read_json

    metrics = read_json(f"{args.reports}/metrics.json")
    print_metrics("test metrics", metrics["test"])
    run = read_json(f"{args.reports}/train.json")
    if run.get("run_id"):
        console.print(f"MLflow run [bold]{run['run_name']}[/bold] ({run['run_id']})")
        console.print(
            "open it:  make ui   (or: mlpflow ui) then browse "
            f"http://127.0.0.1:5000/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
        )


def ui(args: argparse.Namespace) -> None:
    import os

    from omegaconf import OmegaConf

    from mlpflow.tracking import tracking_uri

    uri = tracking_uri(OmegaConf.create({"tracking": {"uri": args.uri}}))
    command = [
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(" ".join(command))
    os.execvp(command[0], command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpflow", description=__doc__)
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

    p = commands.add_parser("ui", help="serve the MLflow UI over the project's store")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--uri", default=None, help="tracking store (default: the project's mlflow.db)")
    p.set_defaults(func=ui)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with friendly_errors():
        args.func(args)
