"""What every job shares: argument parsing, config loading, and user-error handling."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Callable, Protocol

from hybridrec.config import Config, load_config
from hybridrec.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("hybridrec")


def job_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--conf", default=None, help="YAML config file (default conf/local.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set ingest.min_rating=0.5 (repeatable)")
    return p


def parse_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    """Parse known args (platforms such as Databricks add their own) and load the config."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring arguments added by the platform: %d", len(unknown))
    cfg = load_config(args.conf, args.overrides)
    if cfg.spark.log_level.upper() in ("DEBUG", "TRACE"):  # the jobs' own debug logs too, py4j's calls included
        for name in ("", "py4j"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    return args, cfg


def run_main(body: Callable[[], int]) -> int:
    """Run a job body: user errors print one line (no stack trace) and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        return body()
    except UserError as exc:
        print(f"hybridrec: error: {exc}", file=sys.stderr)
        return 2


class Timer:
    """Seconds since construction, for the per-stage progress lines."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


class StageReport(Protocol):
    run_id: str

    def lines(self) -> list[str]: ...


def stage_main(description: str, name: str, run: Callable[[SparkSession, Config], StageReport],
               argv: list[str] | None, before_session: Callable[[Config], None] | None = None) -> int:
    """The whole body of a one-stage job: config -> (checks) -> session -> stage -> summary."""

    def body() -> int:
        _, cfg = parse_config(job_parser(description), argv)
        if before_session is not None:
            before_session(cfg)
        from hybridrec.session import build_session

        spark = build_session(cfg)
        timer = Timer()
        report = run(spark, cfg)
        print(f"{name} run {report.run_id} in {timer.seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)
