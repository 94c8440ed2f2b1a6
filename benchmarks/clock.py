"""The clock the throughput benchmarks read: wall time by default, or the process's CPU time.

On a small shared VM the wall clock of the same epoch moves by 10-25% from minute to minute (other
tenants take the cores), more than the differences being measured. `use_cpu_time()` makes every
contender run on one thread (torch's intra-op pool and numpy's BLAS) and timed by
`time.process_time`: the CPU all of the process's threads used, so background threads (MLflow's
system-metrics sampler, the progress bar's refresh) are charged to the contender that starts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

now: Callable[[], float] = time.perf_counter
name = "wall"


def use_cpu_time() -> None:
    """One compute thread per contender, timed in process CPU seconds."""
    import torch
    from threadpoolctl import threadpool_limits

    global now, name
    torch.set_num_threads(1)
    threadpool_limits(1)
    now, name = time.process_time, "cpu"
