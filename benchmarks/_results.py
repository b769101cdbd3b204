"""How a benchmark records its run (shared by the benchmarks): the config block of its results
file, and the file written and printed."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


def config_block(name: str, conf: Any) -> list[str]:
    """The lines recording a config section (a dataclass) as JSON."""
    return [f"config ({name}):", "```json", json.dumps(dataclasses.asdict(conf), indent=1, default=str), "```"]


def write_results(out: str | Path, lines: list[str]) -> None:
    """Write the results file (its folder created) and print it."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_figures(out: str | Path, figures: dict[str, Any]) -> None:
    """The run's key figures as JSON beside its results file (``<out>.json``: what scale_curves.py reads)."""
    Path(str(out) + ".json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
