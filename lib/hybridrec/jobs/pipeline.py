"""The whole pipeline: (demo crawl) -> ingest -> ... with a progress line per stage and a summary."""
from __future__ import annotations

import sys

from hybridrec.errors import UserError
from hybridrec.jobs.common import job_parser, parse_config, run_main
from hybridrec.stages.pipeline import main_pipeline
from hybridrec.stages.registry import STAGE_NAMES


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        parser = job_parser(__doc__ or "pipeline")
        parser.add_argument("--stages", default=",".join(STAGE_NAMES), help=f"comma list of {', '.join(STAGE_NAMES)}")
        args, cfg = parse_config(parser, argv)
        stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
        unknown = [s for s in stages if s not in STAGE_NAMES]
        if unknown:
            raise UserError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGE_NAMES)}")
        main_pipeline(cfg, stages)
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
