"""Embed job: ``posters`` -> CNN feature vectors in ``item_embeddings`` (incremental)."""
from __future__ import annotations

import sys

from hybridrec.backbones import ModelSpec, check_weights
from hybridrec.embed import run_embed
from hybridrec.jobs.common import job_parser, parse_config, run_main
from hybridrec.session import build_session


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        _, cfg = parse_config(job_parser(__doc__ or "embed"), argv)
        check_weights(ModelSpec.from_conf(cfg.embed))  # before the session starts
        spark = build_session(cfg)
        report = run_embed(spark, cfg)
        print(f"embed run {report.run_id} in {report.seconds:.1f}s")
        print("\n".join(report.lines()))
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
