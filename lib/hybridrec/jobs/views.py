"""Views job: (re)create the analyst views over the tables (the Databricks job's last task)."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import job_parser, parse_config, run_main
from hybridrec.runtime.session import build_session
from hybridrec.storage.views import create_latest_recommendations_view, create_views


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "views"), argv)
        spark = build_session(cfg)
        names = [create_latest_recommendations_view(spark, cfg.storage), *create_views(spark, cfg.storage)]
        print(f"views (re)created: {', '.join(names)}")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
