"""``hybridrec`` command: one entry for every job, plus ``sql`` for a quick analyst query.

    hybridrec pipeline [--conf FILE] [--set k=v ...]   the whole pipeline (README's main command)
    hybridrec ingest|embed|train|similarity|recommend|evaluate|demo|crawl    one stage
    hybridrec sql "SELECT ..." [--conf FILE]            query the tables by name
"""
from __future__ import annotations

import sys
from typing import Callable

from hybridrec.jobs import crawl, demo, embed, evaluate, ingest, pipeline, recommend, similarity, train
from hybridrec.jobs.common import job_parser, parse_config, run_main

JOBS: dict[str, Callable[[list[str] | None], int]] = {
    "pipeline": pipeline.main, "ingest": ingest.main, "embed": embed.main, "train": train.main,
    "similarity": similarity.main, "recommend": recommend.main, "evaluate": evaluate.main,
    "demo": demo.main, "crawl": crawl.main,
}


def sql_main(argv: list[str]) -> int:
    def body() -> int:
        parser = job_parser("Run one SQL statement against the hybridrec tables and print the result.")
        parser.add_argument("query")
        parser.add_argument("--limit", type=int, default=50)
        args, cfg = parse_config(parser, argv)
        from hybridrec.session import build_session, for_one_query

        spark = build_session(for_one_query(cfg))
        spark.sql(f"USE {cfg.database}")
        spark.sql(args.query).show(args.limit, truncate=60)
        return 0

    return run_main(body)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[list[str]], int]] = {**JOBS, "sql": sql_main}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
