"""Crawl job: TMDB /discover/movie by release year, /movie/{id} details and posters into the crawl
folder ingest reads (resumable; the API key comes from the configured secret reference)."""
from __future__ import annotations

import sys

from hybridrec.crawl.crawler import run_crawl
from hybridrec.jobs.common import job_parser, parse_config, run_main
from hybridrec.runtime.timing import Timer


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "crawl"), argv)
        timer = Timer()
        report = run_crawl(cfg)
        print(f"crawl run {report.run_id} in {timer.seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
