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


class Laps:
    """Named consecutive laps: ``lap(name)`` records the seconds since the previous lap (or since
    construction) under ``name`` (added to it when the name repeats)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        took = now - self._last
        self.seconds[name] = self.seconds.get(name, 0.0) + took
        self._last = now
        return took
