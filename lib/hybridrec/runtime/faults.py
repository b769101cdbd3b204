"""Fault injection for the fault-tolerance tests: off unless ``HYBRIDREC_FAULTS`` is set.

``HYBRIDREC_FAULTS="embed:raise,similarity:kill,recommend:raise"`` makes the *first attempt* of
every Spark task of those stages fail: ``raise`` raises inside the Python UDF, ``kill`` SIGKILLs
the Python worker mid-task (as the OOM killer would). Spark retries the task (``local[N,F]``,
``spark.task.maxFailures`` on a cluster) and the retry runs normally, so a job that is really
fault tolerant writes exactly what a clean run writes. The variable reaches Python workers through
the environment they inherit; production never sets it.
"""
from __future__ import annotations

import os
import signal

ENV = "HYBRIDREC_FAULTS"


def maybe_fail(stage: str) -> None:
    """Fail this task's first attempt if ``stage`` is listed in ``HYBRIDREC_FAULTS``."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None or ctx.attemptNumber() > 0:
        return
    for part in spec.split(","):
        name, _, how = part.strip().partition(":")
        if name != stage:
            continue
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected fault in stage {stage} (task {ctx.partitionId()}, attempt 0)")
