"""A/B of an epoch's phases between two versions of mlpflow: alternating runs, one torch thread,
and the main thread's CPU time next to the wall clock.

    python benchmarks/epoch_ab.py [--before HEAD~1] [--after WORKTREE] [--rounds 3] [--epochs 8]
        [--n 100000] [--features 32] [override ...]

On a shared 2-core machine whole-run samples/s move 10-30% between runs, so a change of a few
milliseconds an epoch cannot be read from them. Here each version (a `git worktree` of a
revision, or the working tree) trains the same synthetic table in a process of its own, the
versions alternating round by round, with OMP_NUM_THREADS=1. epoch_profile.py's PhaseTimer
stamps each epoch's phases (training steps, validation, epoch end) with the wall clock and
`time.thread_time()`: the main thread's CPU time, which other processes do not inflate. Per
version it prints each phase's median over the epochs after the first, one line per round, and
the fixed cost (validation + epoch end): what a plain-loop epoch does not pay.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from epoch_profile import PHASES, PhaseTimer, phase_times

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = "WORKTREE"  # --after/--before value meaning the working tree as it is


def child(args: argparse.Namespace) -> None:
    """One timed run of the version on sys.path; writes {clock: {phase: median ms}}."""
    from train_throughput import PLAIN_NETWORK, make_cfg, mlpflow_fit, open_store

    from mlpflow.stages import prepare

    root = Path(args.child)
    data = ["data=synthetic", f"data.n_samples={args.n}", f"data.n_features={args.features}"]
    data += [PLAIN_NETWORK, *args.overrides]
    if not (root / "prepared").exists():
        prepare.run(make_cfg(root, data, "prepare"))
    if not (root / "mlflow.db").exists():
        open_store(root, argparse.Namespace(overrides=data))
    else:
        mlpflow_fit(root, data, 1, "warm-up")  # this process's first-call costs, untimed
    clock = [*data, f"+callbacks.phases._target_={PhaseTimer.__module__}.PhaseTimer"]
    mlpflow_fit(root, clock, args.epochs, f"timed-{time.time_ns()}")
    medians = {
        name: {p: statistics.median(t) * 1e3 for p, t in phase_times(marks).items()}
        for name, marks in PhaseTimer.marks.items()
    }
    (root / "phases.json").write_text(json.dumps(medians))


def source_of(revision: str, workdir: Path) -> Path:
    """The src/ folder of `revision`: a worktree of it under `workdir`, or the working tree."""
    if revision == WORKTREE:
        return ROOT / "src"
    tree = workdir / f"tree-{len(list(workdir.iterdir()))}"
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", "-q", str(tree), revision], check=True)
    return tree / "src"


def timed_round(args: argparse.Namespace, source: Path, root: Path) -> dict:
    root.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(source)}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    command = [sys.executable, __file__, "--child", str(root), "--epochs", str(args.epochs)]
    command += ["--n", str(args.n), "--features", str(args.features), *args.overrides]
    # In the version's own tree: it composes the conf/ of the project around its working dir.
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=source.parent)
    return json.loads((root / "phases.json").read_text())


def report(revision: str, rounds: list[dict]) -> None:
    print(f"\n{revision}: ms per epoch, main-thread CPU (wall clock)")
    print(f"  {'round':<6}" + "".join(f"{p:>22}" for p in (*PHASES, "fixed")))
    for i, phases in enumerate(rounds, 1):
        cpu, wall = phases["cpu"], phases["wall"]
        cells = [f"{cpu[p]:.1f} ({wall[p]:.1f})" for p in PHASES]
        fixed = [sum(c[p] for p in PHASES[1:]) for c in (cpu, wall)]
        cells.append(f"{fixed[0]:.1f} ({fixed[1]:.1f})")
        print(f"  {i:<6}" + "".join(f"{c:>22}" for c in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD~1", help="a git revision, or WORKTREE")
    parser.add_argument("--after", default=WORKTREE, help="a git revision, or WORKTREE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="mlpflow-ab-") as tmp:
        workdir = Path(tmp) / "trees"
        workdir.mkdir()
        versions = {rev: source_of(rev, workdir) for rev in (args.before, args.after)}
        rounds: dict[str, list[dict]] = {rev: [] for rev in versions}
        try:
            for _ in range(args.rounds):
                for k, (revision, source) in enumerate(versions.items()):
                    rounds[revision].append(timed_round(args, source, Path(tmp) / f"v{k}"))
        finally:
            for source in versions.values():
                if source != ROOT / "src":
                    git = ["git", "-C", str(ROOT), "worktree", "remove", "--force"]
                    subprocess.run([*git, str(source.parent)], check=False)
        for revision, phases in rounds.items():
            report(revision, phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
