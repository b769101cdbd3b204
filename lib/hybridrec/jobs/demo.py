"""Demo job: write the seeded demo crawl (TMDB JSON lines + posters + ratings) to demo.out_dir."""
from __future__ import annotations

import sys

from hybridrec.config import Config
from hybridrec.demo import DemoCrawl, generate_demo
from hybridrec.errors import UserError
from hybridrec.jobs.common import job_parser, parse_config, run_main


def write_demo(cfg: Config) -> DemoCrawl:
    """Generate the demo crawl described by ``cfg.demo`` (overwrites files of the same names)."""
    if not cfg.demo.out_dir:
        raise UserError("config key 'demo.out_dir' is empty")
    d = cfg.demo
    return generate_demo(d.out_dir, movies=d.movies, customers=d.customers,
                         mean_ratings_per_customer=d.mean_ratings_per_customer,
                         poster_size=(d.poster_width, d.poster_height), seed=d.seed,
                         bad_inputs=d.bad_inputs, max_poster_bytes=cfg.ingest.max_poster_bytes)


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "demo"), argv)
        demo = write_demo(cfg)
        print(f"demo crawl: {demo.movies} movies in {demo.crawl_dir}, {demo.ratings} ratings in {demo.ratings_path}")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
