"""Train job: the stacked genre classifier on ``item_embeddings`` -> ``classifier_metrics``,
``item_categories`` and a versioned model artifact (optionally fine-tuning the CNN's last block)."""
from __future__ import annotations

import sys

from hybridrec.jobs.common import stage_main


def main(argv: list[str] | None = None) -> int:
    return stage_main(__doc__ or "train", "train", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
