"""Every stage runs under its own Spark job description and logs one JSON event line."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from hybridrec.config import load_config
from hybridrec.stages.registry import STAGES, Stage, run_stage

from tests.unit.test_config import ROOT


@dataclass
class Report:
    run_id: str
    rows_in: int = 7
    rows_out: int = 5

    def lines(self) -> list[str]:
        return []


class FakeContext:
    def __init__(self) -> None:
        self.descriptions: list[Any] = []

    def setJobDescription(self, value: Any) -> None:  # noqa: N802 (Spark's name)
        self.descriptions.append(value)


class FakeSpark:
    def __init__(self) -> None:
        self.sparkContext = FakeContext()


def test_run_stage_describes_the_jobs_and_logs_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(ROOT / "conf" / "local.yaml", ["run.id=r9"])
    spark = FakeSpark()
    seen: list[Any] = []

    def body(s: Any, c: Any) -> Report:
        seen.append(list(s.sparkContext.descriptions))
        return Report(c.run_id)

    with caplog.at_level(logging.INFO, logger="hybridrec.events"):
        report, seconds = run_stage(spark, cfg, Stage("ingest", body))  # type: ignore[arg-type]
    assert seen == [["hybridrec ingest (run r9)"]]  # set while the stage's Spark jobs run
    assert spark.sparkContext.descriptions == ["hybridrec ingest (run r9)", None]  # and cleared after
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hybridrec.events"]
    assert events == [{"event": "stage_done", "run_id": "r9", "stage": "ingest", "rows_in": 7, "rows_out": 5,
                       "seconds": round(seconds, 3)}]


def test_every_stage_declares_what_it_writes() -> None:
    assert all(s.writes for s in STAGES)


def test_library_loggers_are_quiet_unless_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """petastorm's converter warns about small Parquet files at every train run: off by default,
    back at DEBUG with the rest of the libraries' logs."""
    import logging

    from hybridrec.jobs import common
    from hybridrec.jobs.common import NOISY_LOGGERS, PETASTORM_CONVERTER, job_parser, parse_config, run_main

    monkeypatch.setattr(common, "stop_local_sessions", lambda: None)  # the suite's own session stays up

    names = ("", "py4j", PETASTORM_CONVERTER, *NOISY_LOGGERS)
    before = {n: logging.getLogger(n).level for n in names}
    seen: dict[str, int] = {}

    def body() -> int:
        seen["default"] = logging.getLogger(PETASTORM_CONVERTER).getEffectiveLevel()
        seen["petastorm"] = logging.getLogger("petastorm").getEffectiveLevel()
        parse_config(job_parser("t"), ["--set", "spark.log_level=DEBUG"])
        seen["debug"] = logging.getLogger(PETASTORM_CONVERTER).getEffectiveLevel()
        return 0

    try:
        assert run_main(body) == 0
    finally:
        for n, level in before.items():
            logging.getLogger(n).setLevel(level)
    assert seen == {"default": logging.ERROR, "petastorm": logging.WARNING, "debug": logging.DEBUG}
