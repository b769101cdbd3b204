"""Evaluate job: hold out each customer's latest ratings, score every configured model on the rest,
and write nDCG@k and friends to ``evaluation`` plus a report with the comparison table and plots."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import stage_main


def main(argv: list[str] | None = None) -> int:
    return stage_main(__doc__ or "evaluate", "evaluate", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
