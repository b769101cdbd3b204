"""Demo job: write the seeded demo crawl (TMDB JSON lines + posters + ratings) to demo.out_dir."""
from __future__ import annotations

import sys

from hybridrec.crawl.demo import write_demo
from hybridrec.jobs.common import job_parser, parse_config, run_main


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "demo"), argv)
        demo = write_demo(cfg.demo, cfg.ingest.max_poster_bytes)
        print(f"demo crawl: {demo.movies} movies in {demo.crawl_dir}, {demo.ratings} ratings in {demo.ratings_path}")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
