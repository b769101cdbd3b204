"""What every job shares: argument parsing, config loading, and user-error handling."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Callable

from hybridrec.config import Config, load_config
from hybridrec.errors import UserError

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
    return args, load_config(args.conf, args.overrides)


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
