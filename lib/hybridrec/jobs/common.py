"""What every job shares: argument parsing, config loading, and user-error handling."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from hybridrec.config import Config, load_config
from hybridrec.errors import UserError
from hybridrec.runtime.session import build_session, is_debug, stop_local_sessions
from hybridrec.stages.registry import run_stage, stage

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
    if is_debug(cfg):  # the jobs' own debug logs too, py4j's and the libraries' included
        for name in ("", "py4j", *NOISY_LOGGERS, PETASTORM_CONVERTER):
            logging.getLogger(name).setLevel(logging.DEBUG)
    return args, cfg


# Python loggers of libraries that talk at INFO about nothing a user acts on (petastorm's reader
# set-up, TensorFlow's and absl's notices): WARNING and above only, unless the log level is DEBUG.
NOISY_LOGGERS = ("petastorm", "tensorflow", "absl", "h5py", "urllib3", "matplotlib")
PETASTORM_CONVERTER = "petastorm.spark.spark_dataset_converter"


def _bare_events() -> None:
    """``hybridrec.events`` lines go to stderr as bare JSON (no time/level prefix), one a line, so a
    log collector (Databricks' driver log, Loki, CloudWatch) can parse them as they are."""
    events = logging.getLogger("hybridrec.events")
    if not events.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        events.addHandler(handler)
        events.propagate = False
        events.setLevel(logging.INFO)


def run_main(body: Callable[[], int]) -> int:
    """Run a job body: user errors print one line (no stack trace) and exit 2.

    Failure always *raises* ``SystemExit`` (2 for a user error, the body's code when it is not 0),
    never returns it: a Databricks python-wheel task calls the entry function directly and
    counts a return as success, whatever the value."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    _bare_events()
    logging.getLogger("py4j").setLevel(logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # its "median size ... of the parquet files is too small" warning at every train run: the cache
    # holds a few MB of poster vectors, and nothing the user sets changes it
    logging.getLogger(PETASTORM_CONVERTER).setLevel(logging.ERROR)
    try:
        code = body()
    except UserError as exc:
        print(f"hybridrec: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        stop_local_sessions()  # the process ends only after the JVM it launched (and Derby's lock) is gone
    if code:
        raise SystemExit(code)
    return 0


def stage_main(description: str, name: str, argv: list[str] | None) -> int:
    """The whole body of a one-stage job: config -> the stage's checks -> session -> stage -> summary."""

    def body() -> int:
        _, cfg = parse_config(job_parser(description), argv)
        st = stage(name)
        st.preflight(cfg)
        spark = build_session(cfg)
        report, seconds = run_stage(spark, cfg, st)
        print(f"{name} run {report.run_id} in {seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)
