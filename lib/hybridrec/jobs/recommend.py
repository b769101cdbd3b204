"""Recommend job: ``item_neighbors`` + ``ratings`` -> top-n ``recommendations`` per customer."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import stage_main


def main(argv: list[str] | None = None) -> int:
    return stage_main(__doc__ or "recommend", "recommend", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
