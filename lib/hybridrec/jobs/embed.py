"""Embed job: ``posters`` -> CNN feature vectors in ``item_embeddings`` (incremental)."""
from __future__ import annotations

import sys

from hybridrec.backbones import ModelSpec, check_weights
from hybridrec.config import Config
from hybridrec.embed import run_embed
from hybridrec.jobs.common import stage_main


def _check(cfg: Config) -> None:
    check_weights(ModelSpec.from_conf(cfg.embed))  # before the session starts


def main(argv: list[str] | None = None) -> int:
    return stage_main(__doc__ or "embed", "embed", run_embed, argv, before_session=_check)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
