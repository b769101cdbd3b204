"""Wall-clock timing for the per-stage progress lines."""
from __future__ import annotations

import time


class Timer:
    """Seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
