"""Maintenance job: drop runs older than ``maintenance.retention_runs``, OPTIMIZE, VACUUM (safely)."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import job_parser, parse_config, run_main
from hybridrec.runtime.session import build_session
from hybridrec.runtime.timing import Timer
from hybridrec.stages.maintenance import run_maintenance


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "maintenance"), argv)
        spark = build_session(cfg)
        timer = Timer()
        report = run_maintenance(spark, cfg)
        print(f"maintenance in {timer.seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
