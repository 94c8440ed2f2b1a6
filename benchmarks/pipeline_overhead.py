"""Pipeline overhead: `dvc repro` (three stage processes) against the same work in one process.

    python benchmarks/pipeline_overhead.py [--repeats 2] [--keep]

1. Copies the project (tracked and untracked, not ignored files: what a fresh clone holds) into
   a temp dir, makes it its own git repo, and times a full `dvc repro` there: prepare -> train
   -> evaluate on the default config (breast cancer, 50 epochs), tracked in <copy>/mlflow.db.
2. Times ONE `python -c` process doing the same work in-process: prepare.run, train.run and
   evaluate.run on the copy's params.yaml, with every output in a separate temp dir and
   tracking to a separate (new) SQLite store. Both timings include creating a fresh store.
   Both are repeated (--repeats, alternating, each from a fresh store; `dvc repro --force` after
   the first round) and each keeps its fastest time.
3. Prints both wall times and their ratio (target <= 1.5), then the import cost of each stage
   entry: `python -X importtime -c "import mlpflow.stages.<stage>"` (top 8 modules by cumulative
   the same for the imports a stage really makes while it runs (`-m mlpflow stage <name>`,
   lazy imports included), and the wall time of `python -m mlpflow --help`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")
TOP = 8
TARGET_RATIO = 1.5


def env() -> dict[str, str]:
    """A user shell with the venv activated, without inherited MLflow/DVC state."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean.get('PATH', '')}"
    return clean


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        command = " ".join(args)
        sys.exit(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def timed(*args: str, cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = sh(*args, cwd=cwd)
    return time.perf_counter() - start, result


def copy_project(dest: Path) -> Path:
    """What a fresh clone holds (tracked and new files), made its own git repo."""
    listed = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout
    for name in listed.splitlines():
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    sh("mlpflow", "compose", cwd=dest)  # params.yaml as conf/ composes it now
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init", cwd=dest)
    return dest


IN_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mlpflow.stages import evaluate, prepare, train
    from mlpflow.config.compose import load_params

    params, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = load_params(params)
    cfg.paths.prepared = str(out / "data" / "prepared")
    cfg.paths.models = str(out / "models")
    cfg.paths.reports = str(out / "reports")
    # params.yaml is resolved: the checkpoint dir is a literal copy of paths.models.
    cfg.callbacks.model_checkpoint.dirpath = cfg.paths.models
    cfg.tracking.uri = f"sqlite:///{out / 'mlflow.db'}"
    # Artifacts next to this store, not in the copy's ./mlruns (a cost train.run pays anyway).
    from mlflow import MlflowClient
    MlflowClient(cfg.tracking.uri).create_experiment(
        cfg.tracking.experiment, artifact_location=(out / "mlruns").as_uri()
    )
    prepare.run(cfg)
    train.run(cfg)
    metrics = evaluate.run(cfg)
    print("test/roc_auc", metrics.get("test/roc_auc"))
    """
)


def import_table(stderr: str) -> list[tuple[float, float, str]]:
    """`-X importtime` lines -> (self s, cumulative s, module), one per module (its largest)."""
    rows: dict[str, tuple[float, float, str]] = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            row = (int(match[1]) / 1e6, int(match[2]) / 1e6, match[4])
            if row[1] >= rows.get(row[2], (0.0, -1.0, ""))[1]:
                rows[row[2]] = row
    return list(rows.values())


def print_imports(title: str, wall: float, stderr: str) -> None:
    rows = import_table(stderr)
    total = sum(r[0] for r in rows)
    print(f"\n{title}: wall {wall:.2f} s, imports {total:.2f} s ({len(rows)} modules)")
    print(f"  {'cumulative':>10} {'self':>7}  module")
    for self_s, cumulative, name in sorted(rows, key=lambda r: -r[1])[:TOP]:
        print(f"  {cumulative:>9.2f}s {self_s:>6.2f}s  {name}")
    packages: dict[str, float] = {}
    for self_s, _, name in rows:
        packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0.0) + self_s
    heavy = sorted(packages.items(), key=lambda kv: -kv[1])[:TOP]
    print("  by package (sum of self): " + ", ".join(f"{k} {v:.2f}s" for k, v in heavy))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs and print them")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the fastest counts")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlpflow-pipeline-"))
    try:
        project = copy_project(tmp / "project")
        params = project / "params.yaml"
        epochs = sh(
            PYTHON,
            "-c",
            "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['trainer']['max_epochs'])",
            str(params),
            cwd=project,
        ).stdout.strip()

        # Rounds alternate the two; each keeps its fastest (the machine may be shared). Every
        # round starts from a fresh store on both sides; later dvc rounds force all stages.
        dvc_times: list[float] = []
        one_times: list[float] = []
        for round_ in range(args.repeats):
            (project / "mlflow.db").unlink(missing_ok=True)
            force = ["--force"] if round_ else []
            seconds, result = timed("dvc", "repro", *force, cwd=project)
            dvc_times.append(seconds)
            stages = [
                s
                for s in ("prepare", "train", "evaluate")
                if f"Running stage '{s}'" in result.stdout + result.stderr
            ]
            if stages != ["prepare", "train", "evaluate"]:
                sys.exit(f"dvc repro ran {stages}, not all three stages:\n{result.stdout}")
            out = tmp / f"in_process_{round_}"
            out.mkdir()
            seconds, result = timed(PYTHON, "-c", IN_PROCESS, str(params), str(out), cwd=project)
            one_times.append(seconds)
            auc_one = result.stdout.strip().splitlines()[-1]
        t_dvc, t_one = min(dvc_times), min(one_times)
        auc_dvc = json.loads((project / "reports" / "metrics.json").read_text())["test"]["roc_auc"]

        ratio = t_dvc / t_one
        rounds = f"best of {args.repeats}"
        print(f"== pipeline on the default config (data breast_cancer, {epochs} epochs) ==")
        print(
            f"dvc repro (prepare, train, evaluate: 3 processes):  {t_dvc:6.2f} s  ({rounds}: "
            + ", ".join(f"{t:.2f}" for t in dvc_times)
            + f")  test/roc_auc {auc_dvc}"
        )
        print(
            f"one process (prepare.run, train.run, evaluate.run): {t_one:6.2f} s  ({rounds}: "
            + ", ".join(f"{t:.2f}" for t in one_times)
            + f")  {auc_one}"
        )
        verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
        print(f"ratio dvc repro / one process: {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")
        print(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

        for stage in ("prepare", "train", "evaluate"):
            wall, result = timed(
                PYTHON, "-X", "importtime", "-c", f"import mlpflow.stages.{stage}", cwd=project
            )
            shown = f'python -X importtime -c "import mlpflow.stages.{stage}"'
            print_imports(shown, wall, result.stderr)
        # What each DVC stage process really imports, lazy imports inside run() included
        # (re-runs the stages in the copy, after the timings).
        for stage in ("prepare", "train", "evaluate"):
            wall, result = timed(
                PYTHON, "-X", "importtime", "-m", "mlpflow", "stage", stage, cwd=project
            )
            print_imports(
                f"python -X importtime -m mlpflow stage {stage}  (whole stage run)",
                wall,
                result.stderr,
            )

        walls = [timed(PYTHON, "-m", "mlpflow", "--help", cwd=project)[0] for _ in range(3)]
        wall, result = timed(PYTHON, "-X", "importtime", "-m", "mlpflow", "--help", cwd=project)
        print(
            f"\npython -m mlpflow --help: wall {min(walls):.2f} s (best of 3; "
            + ", ".join(f"{w:.2f}" for w in walls)
            + ")"
        )
        print_imports("python -X importtime -m mlpflow --help", wall, result.stderr)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
