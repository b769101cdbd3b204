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


def test_tensorflow_imports_quietly_unless_debug() -> None:
    """The C++ notices TensorFlow writes to descriptor 2 at import (oneDNN, absl) are gone when
    TF_CPP_MIN_LOG_LEVEL is set (the jobs' default), and an import error would still raise."""
    import os
    import subprocess
    import sys

    code = ("from hybridrec.features.tflib import quiet_import; quiet_import(); "
            "import tensorflow as tf; print(int(tf.reduce_sum(tf.constant([1, 2]))))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr
    assert "oneDNN" not in done.stderr and "absl" not in done.stderr, done.stderr
    assert done.stderr.strip() == ""
