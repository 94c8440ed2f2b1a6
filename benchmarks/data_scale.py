"""Data at scale: prepare and train on a large Parquet file, with wall time and peak memory.

    python benchmarks/data_scale.py [--n 10000000] [--features 32] [--categorical K]
        [--levels 1000] [--dictionary] [--row-group 262144] [--keep] [--dir DIR]

1. Generates an N x F binary-classification table into a Parquet file (float64 features,
   int64 target `y`), one row group of `--row-group` rows at a time from a seeded numpy
   generator: x ~ N(0, 1), y = [x . w / sqrt(F) + 0.5 * noise > 0] with w ~ N(0, 1) fixed.
   Never more than one row group is in memory. `--categorical K` adds K text columns
   c0..c{K-1}: column j has min(L, 10 * 4**j) levels (`--levels L`, default 1000), with Zipf
   frequencies (~ 1 / rank), and a fixed effect per level that enters the target alongside
   x . w (benchmarks/scale_tables.py has the formula). They are plain Parquet string columns;
   `--dictionary` writes Arrow dictionary columns instead (what pandas categoricals become).
2. Composes a params file (`mlpflow compose`): data=csv on that file (data.target=y),
   trainer.max_epochs=1, default callbacks, MLflow tracking to a new SQLite store, every output
   in the temp dir; then runs `mlpflow stage prepare` and `mlpflow stage train` on it, each as
   its own process, as `dvc repro` would. The stages see the caller's PYTHONPATH (this folder
   is put in front of it for train), so `PYTHONPATH=<checkout>/src` measures another checkout.
3. For each stage process: wall time and peak RSS (`ru_maxrss` of that child, from
   `os.wait4` in a small launcher process, so that no big parent's pages are counted), and
   the largest anonymous and file-backed resident sizes seen while polling /proc/<pid>/status
   every 0.2 s (RssAnon: the process's own memory; RssFile: pages of mapped files, here mostly
   the memory-mapped splits and shared libraries, which the kernel can drop at any time), and
   its rows per second. Training throughput also as train rows / the epoch's training loop
   (an EpochTimer callback added by config, from on_train_epoch_start to the validation pass).
   From meta.json: the column roles (counts per role; each categorical column's levels in the
   table, in the vocabulary and rare).

Everything lives in a temp dir (`--dir` to choose where; ~6.5 GB at the default size: the
Parquet file, prepare's float64 scratch copy (two slots per categorical column), the float32
features and int64 level codes) and is deleted at the end unless `--keep`. Exit code 0 unless a
stage fails: it measures, it does not gate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="rows generated (all splits)")
    parser.add_argument("--features", type=int, default=32, help="numeric columns")
    parser.add_argument("--categorical", type=int, default=0, help="text categorical columns")
    parser.add_argument("--levels", type=int, default=1000, help="most levels of a categorical")
    parser.add_argument(
        "--dictionary", action="store_true", help="categoricals as Arrow dictionary columns"
    )
    parser.add_argument("--row-group", type=int, default=262_144, help="rows per row group")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    if args.features < 0 or args.categorical < 0 or args.levels < 2:
        parser.error("--features, --categorical >= 0 and --levels >= 2")
    if args.features + args.categorical == 0:
        parser.error("the table needs a feature column: --features or --categorical")
    return args


def __getattr__(name: str) -> Any:
    """`data_scale.EpochTimer`, built on first use: the train process instantiates it from the
    config (`+callbacks.epoch_timer._target_=data_scale.EpochTimer`, this folder on PYTHONPATH);
    the benchmark process itself never imports Lightning."""
    if name != "EpochTimer":
        raise AttributeError(name)
    import pytorch_lightning as pl

    class EpochTimer(pl.Callback):
        """Writes the first epoch's training-loop seconds to $DATA_SCALE_TIMES (JSON)."""

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start, self.train = time.perf_counter(), None

        def on_validation_epoch_start(self, trainer, pl_module) -> None:
            if self.train is None and getattr(self, "start", None) is not None:
                self.train = time.perf_counter() - self.start

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            now = time.perf_counter()
            times = {
                "train_seconds": self.train if self.train is not None else now - self.start,
                "epoch_seconds": now - self.start,
            }
            Path(os.environ["DATA_SCALE_TIMES"]).write_text(json.dumps(times))

    globals()["EpochTimer"] = EpochTimer
    return EpochTimer


def env(**extra: str) -> dict[str, str]:
    """A user shell with the venv activated, without inherited MLflow/DVC state."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean.get('PATH', '')}"
    clean["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return {**clean, **extra}


def status(pid: int) -> dict[str, int]:
    """Memory fields of /proc/<pid>/status in bytes ({} once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def measured(args: list[str], cwd: Path, log: Path, **extra: str) -> dict[str, float]:
    """Run a command through `measure` in a small launcher process; its numbers."""
    out = log.with_suffix(".json")
    launcher = [sys.executable, __file__, "_measure", str(out), str(log), "--", *args]
    done = subprocess.run(launcher, cwd=cwd, env=env(**extra))
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{log.read_text()[-4000:]}")
    return json.loads(out.read_text())


def measure(out: Path, log: Path, args: list[str]) -> int:
    """Launcher: run args; write wall time, ru_maxrss and the largest RssAnon/RssFile polled.

    A separate, small process on purpose: a child's ru_maxrss also counts the memory of the
    process it was forked from, before exec; forked from here, that is ~10 MB of Python.
    """
    start = time.perf_counter()
    with open(log, "w") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=sink)
        peak = {"RssAnon": 0, "RssFile": 0}
        while True:
            pid, code, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            for key, value in status(process.pid).items():
                if key in peak:
                    peak[key] = max(peak[key], value)
            time.sleep(0.2)
    result = {
        "seconds": time.perf_counter() - start,
        "max_rss": usage.ru_maxrss * 1024,  # Linux: kilobytes
        "anon": peak["RssAnon"],
        "file": peak["RssFile"],
    }
    out.write_text(json.dumps(result))
    return os.waitstatus_to_exitcode(code)


def filesystem(path: Path) -> str:
    """The type of the filesystem holding path (a tmpfs would hold the files in memory)."""
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def pythonpath() -> str:
    """This folder (for EpochTimer) in front of the caller's PYTHONPATH."""
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(HERE), *([inherited] if inherited else [])])


def make_table(args: argparse.Namespace, table: Path) -> float:
    """Generate the Parquet file in its own process; seconds taken."""
    start = time.perf_counter()
    shape = [args.n, args.features, args.row_group, args.categorical, args.levels]
    flags = ["--dictionary"] if args.dictionary else []
    command = [sys.executable, __file__, "_generate", str(table), *map(str, shape), *flags]
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def compose(root: Path, table: Path, params: Path) -> None:
    overrides = [
        "data=csv",
        f"data.path={table}",
        "data.target=y",
        "trainer.max_epochs=1",
        "model.numeric_embedding.kind=none",  # the network its recorded figures trained
        f"paths.prepared={root / 'prepared'}",
        f"paths.models={root / 'models'}",
        f"paths.reports={root / 'reports'}",
        "tracking.enabled=true",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"+callbacks.epoch_timer._target_={Path(__file__).stem}.EpochTimer",
    ]
    subprocess.run(
        [str(BIN / "mlpflow"), "compose", *overrides, "--output", str(params)],
        cwd=root,
        env=env(),
        check=True,
        capture_output=True,
    )


def run_stages(root: Path, params: Path) -> dict[str, Any]:
    """prepare, then train, each measured; what they wrote that the report reads."""
    stage = [str(BIN / "mlpflow"), "stage"]
    times = root / "epoch.json"
    prepare = measured([*stage, "prepare", "--params", str(params)], root, root / "prep.log")
    train = measured(
        [*stage, "train", "--params", str(params)],
        root,
        root / "train.log",
        PYTHONPATH=pythonpath(),
        DATA_SCALE_TIMES=str(times),
    )
    return {
        "prepare": prepare,
        "train": train,
        "meta": json.loads((root / "prepared" / "meta.json").read_text()),
        "epoch": json.loads(times.read_text()),
        "report": json.loads((root / "reports" / "train.json").read_text()),
    }


def array_bytes(prepared: Path, kind: str, split: str = "*") -> int:
    """Bytes of the prepared `{kind}_{split}.npy` files."""
    return sum(path.stat().st_size for path in prepared.glob(f"{kind}_{split}.npy"))


def report(args: argparse.Namespace, root: Path, table: Path, generated: float, runs: dict) -> None:
    from scale_tables import roles

    prepare, train, meta, epoch = runs["prepare"], runs["train"], runs["meta"], runs["epoch"]
    n_train, prepared = meta["rows"]["train"], root / "prepared"
    x_bytes, c_bytes = array_bytes(prepared, "X"), array_bytes(prepared, "C")
    columns = f"{args.features} features"
    if args.categorical:
        kind = "dictionary" if args.dictionary else "string"
        columns = f"{args.features} numeric + {args.categorical} {kind} categorical columns"
    print(
        f"\n== data at scale: {args.n:,} rows x {columns}, "
        f"{os.cpu_count()} CPUs, {filesystem(root)} at {root.parent} =="
    )
    codes = ""
    if args.categorical:
        codes = f"; int64 codes: {gb(c_bytes)} (train {gb(array_bytes(prepared, 'C', 'train'))})"
    print(
        f"float32 data: {gb(x_bytes)} (train split {gb(array_bytes(prepared, 'X', 'train'))})"
        f"{codes}; Parquet file {gb(table.stat().st_size)}, generated in {generated:.1f} s"
    )
    print(f"rows {meta['rows']}, duplicate rows {meta['schema']['duplicate_rows']}")
    print(roles(meta))  # scale_tables imports numpy: not at the top, not in the launcher
    print("stage      wall s   peak RSS  RssAnon max  RssFile max      rows/s")
    for name, m, rows in (("prepare", prepare, args.n), ("train", train, n_train)):
        print(
            f"{name:<8} {m['seconds']:>8.1f} {gb(m['max_rss']):>10} {gb(m['anon']):>12} "
            f"{gb(m['file']):>12} {rows / m['seconds']:>11,.0f}"
        )
    data = x_bytes + c_bytes
    print(
        f"peak RSS / {'float32 data' if not args.categorical else 'prepared arrays'}: "
        f"prepare {prepare['max_rss'] / data:.2f}x, train {train['max_rss'] / data:.2f}x"
    )
    print(
        f"train, 1 epoch: {n_train / epoch['train_seconds']:,.0f} samples/s in the training "
        f"loop ({epoch['train_seconds']:.1f} s; epoch with validation "
        f"{epoch['epoch_seconds']:.1f} s); {n_train / train['seconds']:,.0f} samples/s over "
        f"the whole stage; val loss {runs['report']['best_score']:.4f}"
    )


def main() -> int:
    args = parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlpflow-data-scale-", dir=args.dir))
    try:
        table = root / "table.parquet"
        generated = make_table(args, table)
        params = root / "params.yaml"
        compose(root, table, params)
        report(args, root, table, generated, run_stages(root, params))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_generate"]:  # its own process: the benchmark stays small (see measure)
        from scale_tables import generate

        path, n, features, row_group, k, levels = sys.argv[2:8]
        numbers = (int(n), int(features), int(row_group), int(k), int(levels))
        generate(Path(path), *numbers, dictionary="--dictionary" in sys.argv[8:])
        sys.exit(0)
    if sys.argv[1:2] == ["_measure"]:
        sys.exit(measure(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[5:]))
    sys.exit(main())
