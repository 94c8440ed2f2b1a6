"""Quality side by side: mlpflow's default config against scikit-learn, on the same test rows.

    python benchmarks/quality.py [--rows N] [--tables a,b,...] [--seed S] [--out results.json]

Tables: scikit-learn's shipped breast_cancer (binary), wine, digits (multiclass) and diabetes
(regression), and the generated kinds of benchmarks/mixed_tables.py (mixed_binary,
mixed_multiclass, mixed_regression: 5,000 rows; high_cardinality: 20,000; --rows sets the
generated tables' rows, --seed their draw). For each table, in a temp dir:

1. The table is exported as a user would export it, `frame.to_csv(path, index=False)`.
2. mlpflow runs with its DEFAULT config and nothing but the data, in a subprocess:
   `python -m mlpflow.train data=csv data.path=... data.target=... tracking=none
   hydra.run.dir=... callbacks.progress_bar=null`, timed end to end (interpreter start,
   imports, prepare, train, evaluate); its scores are the test metrics of
   `reports/metrics.json`. The temp dir holds an empty dvc.yaml, which makes it the project
   root: the prepared-data cache lands there, not in the checkout's data/cache. A failed run
   shows the last line of its stderr instead of a score.
3. The contenders get mlpflow's split, reproduced here: scikit-learn's train_test_split with
   seed 42, test (15%) first, then val (15%) from the rest, stratified on the sorted classes for
   classification; rows without a target are left out first; rows keep their order in a split.
   The "split" column checks it against the test targets mlpflow prepared (y_test.npy).
4. The contenders (benchmarks/quality_contenders.py) read the same CSV with pandas, get the
   columns cleaned as a data scientist would by hand (ID, row-number and constant columns
   dropped, numbers stored as text parsed, text columns as categories) and fit on train + val,
   holding out their own early-stopping fraction: HistGradientBoosting with native categories,
   and a ColumnTransformer + MLP (128, 64) pipeline. Their time is fit + predict, in process.
   (HGB takes at most 255 levels natively: wider categories are target-encoded for it. The
   MLP regresses on the standardized target.)

Scores: binary ROC AUC (positive class: the second of the sorted classes), multiclass accuracy,
regression R². Prints one table, then mlpflow minus each contender per table and on average;
--out writes every number as JSON. A failed mlpflow run is recorded and the others carry on;
the exit code is 1 when one failed (or a contender raised), else 0: it measures, it does not
gate on the scores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from mixed_tables import KINDS, make_table
from quality_contenders import PRIMARY, hand_cleaned, hgb_fit_score, mlp_fit_score

BIN = Path(sys.executable).parent
SEED = 42  # mlpflow's default seed: its split, and the contenders' random_state
VAL_SIZE = TEST_SIZE = 0.15
SHIPPED = {
    "breast_cancer": "binary",
    "wine": "multiclass",
    "digits": "multiclass",
    "diabetes": "regression",
}
DEFAULT_ROWS = {"high_cardinality": 20_000}  # other generated kinds: 5,000
TABLES = (*SHIPPED, *KINDS)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows of the generated tables")
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated tables")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per mlpflow run")
    parser.add_argument(
        "--mlpflow", default="", help="overrides for mlpflow (tuning only: the benchmark is none)"
    )
    args = parser.parse_args()
    args.tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in args.tables if t not in TABLES]
    if unknown:
        parser.error(f"unknown tables {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    return args


def load_table(name: str, rows: int | None, seed: int) -> tuple[pd.DataFrame, str, str]:
    """(frame, target column, task): a shipped scikit-learn table or a generated one."""
    if name in SHIPPED:
        import sklearn.datasets

        frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
        return frame, "target", SHIPPED[name]
    return make_table(name, rows or DEFAULT_ROWS.get(name, 5000), seed)


def split_like_mlpflow(y: pd.Series, task: str) -> dict[str, np.ndarray]:
    """Frame row positions of mlpflow's train/val/test splits (see the module docstring)."""
    from sklearn.model_selection import train_test_split

    kept = np.flatnonzero(y.notna().to_numpy())
    codes = None
    if task != "regression":
        _, codes = np.unique(y.to_numpy()[kept], return_inverse=True)
    n = len(kept)
    n_val, n_test = (math.ceil(size * n - 1e-9) for size in (VAL_SIZE, TEST_SIZE))
    rest, test = train_test_split(np.arange(n), test_size=n_test, random_state=SEED, stratify=codes)
    strata = None if codes is None else codes[rest]
    train, val = train_test_split(rest, test_size=n_val, random_state=SEED, stratify=strata)
    return {
        name: kept[np.sort(rows)] for name, rows in (("train", train), ("val", val), ("test", test))
    }


def env() -> dict[str, str]:
    """A user shell with the venv activated, without inherited MLflow/DVC state."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean.get('PATH', '')}"
    return clean


def last_error_line(stderr: str) -> str:
    """The line that says what failed (Hydra's HYDRA_FULL_ERROR hint skipped)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if "HYDRA_FULL_ERROR" not in line]
    return lines[-1] if lines else "(no stderr)"


def run_mlpflow(
    project: Path, csv: Path, target: str, name: str, timeout: float, overrides: list[str]
) -> dict:
    """The default-config run on csv: {"seconds", "metrics"} or {"seconds", "error"}."""
    run_dir = project / f"run-{name}"
    command = [
        sys.executable, "-m", "mlpflow.train", "data=csv", f"data.path={csv}",
        f"data.target={target}", "tracking=none", f"hydra.run.dir={run_dir}",
        "callbacks.progress_bar=null", *overrides,
    ]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=project, env=env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"seconds": time.perf_counter() - start, "error": f"timed out after {timeout} s"}
    seconds = time.perf_counter() - start
    (project / f"{name}.log").write_text(done.stdout + done.stderr)
    metrics = run_dir / "reports" / "metrics.json"
    if done.returncode != 0 or not metrics.exists():
        return {"seconds": seconds, "error": last_error_line(done.stderr)}
    return {"seconds": seconds, "metrics": json.loads(metrics.read_text())["test"]}


def check_split(project: Path, expected: np.ndarray, task: str) -> str:
    """Compare mlpflow's prepared test targets with the test rows reproduced here."""
    caches = sorted((project / "data" / "cache").glob("csv-*/meta.json"))
    if not caches:
        return "n/a"  # prepare did not finish
    meta = json.loads(caches[-1].read_text())
    y_test = np.load(caches[-1].parent / "y_test.npy")
    if meta["rows"]["test"] != len(expected) or len(y_test) != len(expected):
        return f"rows {meta['rows']['test']} != {len(expected)}"
    if task == "regression":
        same = np.allclose(y_test, expected.astype(np.float32))
    else:
        same = np.array_equal(y_test, expected)
    return "ok" if same else "targets differ"


def bench_table(name: str, args: argparse.Namespace, root: Path) -> dict:
    """Export, mlpflow run, split check and both contenders for one table."""
    frame, target, task = load_table(name, args.rows, args.seed)
    project = root / name
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    csv = project / f"{name}.csv"
    frame.to_csv(csv, index=False)
    print(f"{name}: {len(frame)} rows x {frame.shape[1] - 1} features, {task}", file=sys.stderr)
    mlpflow = run_mlpflow(project, csv, target, name, args.timeout, args.mlpflow.split())
    table = pd.read_csv(csv)  # what the contenders see: the same file, read by pandas
    y = table[target]
    rows = split_like_mlpflow(y, task)
    fit = np.concatenate([rows["train"], rows["val"]])
    test = rows["test"]
    values = y.to_numpy()
    expected = values[test]
    if task != "regression":
        expected = np.searchsorted(np.unique(values[y.notna().to_numpy()]), expected)
    x = hand_cleaned(table.drop(columns=[target]))
    result = {"task": task, "metric": PRIMARY[task], "rows": {k: len(v) for k, v in rows.items()}}
    result["features"] = {"raw": frame.shape[1] - 1, "hand_cleaned": x.shape[1]}
    result["split"] = check_split(project, expected, task)
    result["mlpflow"] = mlpflow
    for contender, fit_score in (("hgb", hgb_fit_score), ("sklearn_mlp", mlp_fit_score)):
        _, metrics, seconds = fit_score(
            x.iloc[fit], values[fit], x.iloc[test], values[test], task, SEED
        )
        result[contender] = {"seconds": seconds, "metrics": metrics}
    return result


def score(system: dict, metric: str) -> float | None:
    return system.get("metrics", {}).get(metric)


def fmt(value: float | None, width: int = 8) -> str:
    return f"{'failed' if value is None else f'{value:.4f}':>{width}}"


def report(results: dict[str, dict]) -> None:
    """The plain-text table, then mlpflow minus each contender per table and on average."""
    print(
        f"\n{'table':<17} {'task':<10} {'metric':<7} {'mlpflow':>8} {'HGB':>8} {'sk-MLP':>8} "
        f"{'t mlpflow':>9} {'t HGB':>6} {'t MLP':>6}  {'split':<8} note"
    )
    for name, r in results.items():
        m, h, s = r["mlpflow"], r["hgb"], r["sklearn_mlp"]
        print(
            f"{name:<17} {r['task']:<10} {r['metric']:<7} {fmt(score(m, r['metric']))} "
            f"{fmt(score(h, r['metric']))} {fmt(score(s, r['metric']))} {m['seconds']:>9.1f} "
            f"{h['seconds']:>6.1f} {s['seconds']:>6.1f}  {r['split']:<8} {m.get('error', '')}"
        )
    print("\nmlpflow minus contender (> 0: mlpflow better), where mlpflow ran")
    print(f"{'table':<17} {'metric':<7} {'vs sk-MLP':>9} {'vs HGB':>8}")
    deltas: dict[str, list[float]] = {"sklearn_mlp": [], "hgb": []}
    for name, r in results.items():
        ours = score(r["mlpflow"], r["metric"])
        if ours is None:
            continue
        row = {c: ours - score(r[c], r["metric"]) for c in deltas}
        for c, d in row.items():
            deltas[c].append(d)
        r["delta"] = row
        print(f"{name:<17} {r['metric']:<7} {row['sklearn_mlp']:>+9.4f} {row['hgb']:>+8.4f}")
    if deltas["hgb"]:
        means = {c: float(np.mean(d)) for c, d in deltas.items()}
        n = len(deltas["hgb"])
        print(f"{f'average ({n})':<25} {means['sklearn_mlp']:>+9.4f} {means['hgb']:>+8.4f}")


def main() -> int:
    args = parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mlpflow-quality-") as tmp:
        for name in args.tables:
            results[name] = bench_table(name, args, Path(tmp))
    report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"\nwrote {args.out}")
    return int(any("error" in r["mlpflow"] for r in results.values()))


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.exit(main())
