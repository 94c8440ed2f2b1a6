"""A date column whose month and weekday drive the target: what mlpflow makes of it.

The target is a random effect per month plus one per weekday plus noise (R² ceiling ~0.96), over
three years of days. Runs the default config (`python -m mlpflow.train`, tracking off) on
  raw       the date column as the table has it (mlpflow derives its parts: month and weekday
            as levels, year, day, day of year and elapsed days as numbers),
  numbers   the same parts written as number columns (all numeric),
  levels    those columns with month and weekday in data.categorical,
and HistGradientBoosting on month and weekday (its own random 15 % of test rows); prints test
R² and seconds per seed.

    python benchmarks/date_parts.py [--rows 3000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

PARTS = {
    "year": "year",
    "month": "month",
    "day": "day",
    "weekday": "day_of_week",
    "dayofyear": "day_of_year",
}  # mlpflow's part: pandas' attribute
VARIANTS = {
    "raw": ([], lambda frame: frame[["date", "x", "y"]]),
    "numbers": ([], lambda frame: frame.drop(columns="date")),
    "levels": (["data.categorical=[month,weekday]"], lambda frame: frame.drop(columns="date")),
}


def make_table(n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365, n_rows), "D")
    month_effect, weekday_effect = rng.normal(size=13), rng.normal(size=7)
    effect = month_effect[days.month] + weekday_effect[days.day_of_week]
    y = effect + 0.2 * rng.normal(size=n_rows)
    frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d")})
    for part, attribute in PARTS.items():
        frame[part] = getattr(days, attribute)
    frame["elapsed"] = (days - pd.Timestamp("1970-01-01")).days
    return frame.assign(x=rng.normal(size=n_rows), y=y)


def run_mlpflow(work: Path, frame: pd.DataFrame, name: str, seed: int, extra: list[str]) -> str:
    csv = work / f"{name}-{seed}.csv"
    frame.to_csv(csv, index=False)
    run_dir = work / f"run-{name}-{seed}"
    command = [
        sys.executable, "-m", "mlpflow.train", "data=csv", f"data.path={csv}", "data.target=y",
        "tracking=none", f"hydra.run.dir={run_dir}", "callbacks.progress_bar=null", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return f"failed: {done.stderr.strip().splitlines()[-1]}"
    metrics = json.loads((run_dir / "reports" / "metrics.json").read_text())["test"]
    return f"R² {metrics['r2']:.3f} ({seconds:.0f} s)"


def hgb_r2(frame: pd.DataFrame, seed: int) -> str:
    rng = np.random.default_rng(seed)
    test = rng.permutation(len(frame))[: len(frame) * 15 // 100]
    is_test = np.isin(np.arange(len(frame)), test)
    features = frame[["month", "weekday"]]
    model = HistGradientBoostingRegressor(random_state=seed)
    model.fit(features[~is_test], frame["y"][~is_test])
    return f"R² {model.score(features[is_test], frame['y'][is_test]):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            frame = make_table(args.rows, seed)
            results = {"hgb month+weekday": hgb_r2(frame, seed)}
            for name, (extra, columns) in VARIANTS.items():
                results[name] = run_mlpflow(Path(tmp), columns(frame), name, seed, extra)
            print(f"seed {seed}: " + "; ".join(f"{k} {v}" for k, v in results.items()), flush=True)


if __name__ == "__main__":
    main()
