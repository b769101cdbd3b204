"""Peak resident memory, sampled in a background thread (shared by the benchmarks and the tests
that bound a worker's memory; needs psutil, a test and benchmark dependency)."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


class PeakRss:
    """Peak RSS of the processes ``select`` returns (re-listed every ``relist_s``, sampled every 250 ms).

    ``total=True`` sums them (a JVM plus its Python workers); otherwise the largest one counts
    (memory per worker)."""

    def __init__(self, select: Callable[[Any], list], total: bool = False, relist_s: float = 5.0) -> None:
        import psutil  # type: ignore[import-untyped]

        self.psutil, self.select, self.total, self.peak, self.stop = psutil, select, total, 0, False
        self.relist_s = relist_s
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        procs: list = []
        listed = 0.0
        while not self.stop:
            if time.monotonic() - listed > self.relist_s:
                procs, listed = self.select(self.psutil), time.monotonic()
            sizes = []
            for p in procs:
                try:
                    sizes.append(p.memory_info().rss)
                except self.psutil.Error:
                    pass
            if sizes:
                self.peak = max(self.peak, sum(sizes) if self.total else max(sizes))
            time.sleep(0.25)

    def __enter__(self) -> "PeakRss":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop = True
        self.thread.join()


def this_process(psutil: Any) -> list:
    return [psutil.Process()]


def spark_processes(workers_only: bool) -> Callable[[Any], list]:
    """Spark's Python workers (and, unless ``workers_only``, the local JVM)."""
    marks = ("pyspark.daemon",) if workers_only else ("pyspark.daemon", "org.apache.spark.deploy.SparkSubmit")

    def select(psutil: Any) -> list:
        return [p for p in psutil.process_iter(["cmdline"])
                if any(m in " ".join(p.info["cmdline"] or []) for m in marks)]

    return select


def this_process_tree(psutil: Any) -> list:
    """This process and its children (a process pool's workers)."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def local_jvm(psutil: Any) -> list:
    """The local Spark JVM (driver and executors in one process)."""
    return [p for p in psutil.process_iter(["cmdline"])
            if "org.apache.spark.deploy.SparkSubmit" in " ".join(p.info["cmdline"] or [])]
