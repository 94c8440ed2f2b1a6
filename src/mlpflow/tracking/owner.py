"""Which process owns a run, and whether it still lives: a SIGKILLed process leaves its MLflow run
RUNNING and its resume state behind; both name their owner so a later start can tell."""

from __future__ import annotations

import os
import socket

import psutil

OWNER_TAG = "mlpflow.owner"  # host:pid:start time


def this_process() -> str:
    """host:pid:start time (the start time tells a reused pid apart)."""
    started = psutil.Process().create_time()
    return f"{socket.gethostname()}:{os.getpid()}:{started:.2f}"


def is_alive(owner: str) -> bool | None:
    """Whether the owner still runs; None when it ran on another host (cannot tell from here)."""
    host, pid, started = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def is_worker() -> bool:
    """A ddp worker process (Lightning sets LOCAL_RANK / NODE_RANK): rank 0 owns the run."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"
