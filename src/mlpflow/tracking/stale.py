"""RUNNING runs whose process is gone (a SIGKILL, a lost node): listed by `mlpflow runs
--stale`, and marked KILLED on request. The next start of the same config resumes them either
way; marking them only keeps the UI honest meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlpflow.tracking.owner import OWNER_TAG, is_alive

MARK_REASON = (
    "its process was gone (mlpflow runs --stale --mark-killed); "
    "run the same command again to resume"
)


@dataclass(frozen=True)
class RunningRun:
    run_id: str
    run_name: str
    experiment: str
    owner: str
    state: str  # "gone", "alive", or "unknown" (another host, or no owner tag)


def running_runs(client: Any, parent_id: str | None = None) -> list[RunningRun]:
    """Every RUNNING run of the store (or of one sweep's parent run), with whether its
    process still lives."""
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    query = "attributes.status = 'RUNNING'"
    if parent_id:
        query += f" and tags.mlflow.parentRunId = '{parent_id}'"
    found = client.search_runs(list(experiments), query, max_results=10000)
    runs = []
    for run in found:
        owner = run.data.tags.get(OWNER_TAG, "")
        alive = is_alive(owner) if owner else None
        state = {True: "alive", False: "gone", None: "unknown"}[alive]
        runs.append(
            RunningRun(
                run.info.run_id,
                run.info.run_name,
                experiments[run.info.experiment_id],
                owner or "-",
                state,
            )
        )
    return runs


def mark_killed(client: Any, runs: list[RunningRun]) -> list[RunningRun]:
    """Mark the runs whose process is gone KILLED, saying so in their `run.end` tag."""
    gone = [run for run in runs if run.state == "gone"]
    for run in gone:
        client.set_tag(run.run_id, "run.end", MARK_REASON)
        client.set_terminated(run.run_id, "KILLED")
    return gone
