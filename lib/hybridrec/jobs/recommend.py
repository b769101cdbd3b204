"""Recommend job: ``item_neighbors`` + ``ratings`` -> top-n ``recommendations`` per customer."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import Timer, job_parser, parse_config, run_main
from hybridrec.recommend import run_recommend
from hybridrec.session import build_session


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "recommend"), argv)
        spark = build_session(cfg)
        timer = Timer()
        report = run_recommend(spark, cfg)
        print(f"recommend run {report.run_id} in {timer.seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
