"""Ingest job: crawl + ratings -> Delta ``items``, ``posters``, ``ratings``, ``quarantine``."""
from __future__ import annotations

import sys

from hybridrec.ingest import preflight, run_ingest
from hybridrec.jobs.common import Timer, job_parser, parse_config, run_main
from hybridrec.session import build_session


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "ingest"), argv)
        preflight(cfg)
        spark = build_session(cfg)
        timer = Timer()
        report = run_ingest(spark, cfg)
        print(f"ingest run {report.run_id} (crawl {report.crawl_date}) in {timer.seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
