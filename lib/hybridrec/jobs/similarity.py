"""Similarity job: ``item_embeddings`` + categories -> top-K ``item_neighbors`` within categories."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import Timer, job_parser, parse_config, run_main
from hybridrec.session import build_session
from hybridrec.similarity import run_similarity


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "similarity"), argv)
        spark = build_session(cfg)
        timer = Timer()
        report = run_similarity(spark, cfg)
        print(f"similarity run {report.run_id} in {timer.seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
