"""Maintenance job: drop runs older than ``maintenance.retention_runs``, OPTIMIZE, VACUUM (safely)."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import stage_main


def main(argv: list[str] | None = None) -> int:
    return stage_main(__doc__ or "maintenance", "maintenance", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
