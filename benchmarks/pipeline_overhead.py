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
3. Prints both wall times and their ratio (target <= 1.5), and the floor of any pipeline of three
   stage processes: the one process, plus what prepare and evaluate must import again in
   processes of their own (bare interpreters importing their libraries), plus a `dvc repro`
   with nothing to run.
4. Prints the import cost of each stage entry: `python -X importtime -c "import
   mlpflow.stages.<stage>"` (top 8 modules by cumulative time), then the same for the imports a
   stage really makes while it runs (`-m mlpflow stage <name>`, lazy imports included), and the
   wall time of `python -m mlpflow --help`.
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


# What a stage process must import whatever mlpflow does, given the libraries it uses: prepare
# loads the table (pandas, pyarrow; scikit-learn's datasets), splits it and fits the encoders
# and quantile transforms (scikit-learn);
# evaluate scores with the torch model, computes torchmetrics, draws scikit-learn's curves and
# displays with matplotlib, and logs to the SQLite store through MLflow.
STAGE_FLOOR_IMPORTS = {
    "prepare": (
        "import omegaconf, pandas, pyarrow, sklearn.datasets, sklearn.model_selection, "
        "sklearn.preprocessing"
    ),
    "evaluate": (
        "import omegaconf, torch, torchmetrics, sklearn.calibration, sklearn.metrics, "
        "matplotlib.pyplot, mlflow; "
        "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore"
    ),
}


def time_rounds(project: Path, tmp: Path, repeats: int) -> tuple[list[float], list[float], str]:
    """Alternating rounds of `dvc repro` and the one process, each from a fresh store."""
    params = project / "params.yaml"
    dvc_times: list[float] = []
    one_times: list[float] = []
    auc_one = ""
    for round_ in range(repeats):
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
    return dvc_times, one_times, auc_one


def print_floor(project: Path, t_one: float) -> None:
    """The least any three-process pipeline pays over the one process, measured here.

    The one process imports everything once; prepare and evaluate, as processes of their own,
    import their libraries again (STAGE_FLOOR_IMPORTS, best of 3 bare interpreters), and DVC
    costs at least what a `dvc repro` with nothing to run costs.
    """
    floors = {
        stage: min(timed(PYTHON, "-c", imports, cwd=project)[0] for _ in range(3))
        for stage, imports in STAGE_FLOOR_IMPORTS.items()
    }
    noop = min(timed("dvc", "repro", cwd=project)[0] for _ in range(3))
    least = t_one + sum(floors.values()) + noop
    print(
        "floor of any 3-process pipeline: one process + "
        + " + ".join(f"{stage} imports {s:.2f} s" for stage, s in floors.items())
        + f" + no-op dvc repro {noop:.2f} s = {least:.2f} s, "
        + f"ratio {least / t_one:.2f}"
    )


def print_import_profiles(project: Path) -> None:
    """Each stage module's import cost, then what each stage process really imports."""
    for stage in ("prepare", "train", "evaluate"):
        wall, result = timed(
            PYTHON, "-X", "importtime", "-c", f"import mlpflow.stages.{stage}", cwd=project
        )
        title = f'python -X importtime -c "import mlpflow.stages.{stage}"'
        print_imports(title, wall, result.stderr)
    # Lazy imports inside run() included (re-runs the stages in the copy, after the timings).
    for stage in ("prepare", "train", "evaluate"):
        wall, result = timed(
            PYTHON, "-X", "importtime", "-m", "mlpflow", "stage", stage, cwd=project
        )
        title = f"python -X importtime -m mlpflow stage {stage}  (whole stage run)"
        print_imports(title, wall, result.stderr)
    walls = [timed(PYTHON, "-m", "mlpflow", "--help", cwd=project)[0] for _ in range(3)]
    wall, result = timed(PYTHON, "-X", "importtime", "-m", "mlpflow", "--help", cwd=project)
    shown = ", ".join(f"{w:.2f}" for w in walls)
    print(f"\npython -m mlpflow --help: wall {min(walls):.2f} s (best of 3; {shown})")
    print_imports("python -X importtime -m mlpflow --help", wall, result.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs and print them")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the fastest counts")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlpflow-pipeline-"))
    try:
        project = copy_project(tmp / "project")
        epochs = sh(
            PYTHON,
            "-c",
            "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['trainer']['max_epochs'])",
            str(project / "params.yaml"),
            cwd=project,
        ).stdout.strip()
        dvc_times, one_times, auc_one = time_rounds(project, tmp, args.repeats)
        t_dvc, t_one = min(dvc_times), min(one_times)
        auc_dvc = json.loads((project / "reports" / "metrics.json").read_text())["test"]["roc_auc"]
        rounds = f"best of {args.repeats}"
        print(f"== pipeline on the default config (data breast_cancer, {epochs} epochs) ==")
        shown = ", ".join(f"{t:.2f}" for t in dvc_times)
        print(
            f"dvc repro (prepare, train, evaluate: 3 processes):  {t_dvc:6.2f} s  ({rounds}: "
            f"{shown})  test/roc_auc {auc_dvc}"
        )
        shown = ", ".join(f"{t:.2f}" for t in one_times)
        print(
            f"one process (prepare.run, train.run, evaluate.run): {t_one:6.2f} s  ({rounds}: "
            f"{shown})  {auc_one}"
        )
        ratio = t_dvc / t_one
        verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
        print(f"ratio dvc repro / one process: {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")
        print_floor(project, t_one)
        print(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print_import_profiles(project)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
