from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import hybridrec

ROOT = Path(__file__).resolve().parents[2]


def test_importing_hybridrec_never_imports_tensorflow() -> None:
    modules = [m.name for m in pkgutil.walk_packages(hybridrec.__path__, "hybridrec.")]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "bad = [m for m in ('tensorflow', 'keras', 'petastorm') if m in sys.modules]\n" \
        "assert not bad, bad\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "lib")})


def test_every_job_has_a_spark_submit_entry_point() -> None:
    jobs = {p.stem for p in (ROOT / "jobs").glob("*.py")}
    modules = {m.name for m in pkgutil.iter_modules([str(ROOT / "lib" / "hybridrec" / "jobs")])} - {"common"}
    assert jobs == modules
