"""The README's standalone-cluster block, run as written: the default demo, every default model.

Only what would collide on a shared machine is changed - the master's and its UI's ports, the data
folder and the workers' folders - each replacement checked to have happened; every command, flag
and config of the block is the README's. (A reduced model list on a smaller demo once passed here
while the literal command died in evaluate with a StackOverflowError.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybridrec.config import load_config
from tests.standalone import ROOT, free_port

pytestmark = pytest.mark.slow

HEADING = "### A standalone cluster on one machine"


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(HEADING):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def localised(block: str, data: Path, work: Path, port: int, ui: int) -> str:
    swaps = [("spark://127.0.0.1:7077", f"spark://127.0.0.1:{port}"), ("--port 7077", f"--port {port}"),
             ("--webui-port 8080", f"--webui-port {ui}"), ("HYBRIDREC_DATA=/tmp/hybridrec-cluster",
                                                         f"HYBRIDREC_DATA={data}"),
             ("--work-dir /tmp/spark-worker-$i", f"--work-dir {work}/spark-worker-$i")]
    for old, new in swaps:
        assert old in block, f"the README's block no longer has {old!r}: update this test with it"
        block = block.replace(old, new)
    return block


def test_the_readmes_cluster_block_runs_as_written(tmp_path: Path) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    work.mkdir()
    script = localised(readme_block(), data, work, free_port(), free_port())
    # the harness around it: stop at the first failing command, and never leave a node running
    script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_", "HYBRIDREC_FAULTS"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, text=True, capture_output=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    # every stage ran, and evaluate ran every model of the shipped default list
    for stage in ("[ingest", "[embed", "[train", "[similarity", "[recommend", "[evaluate"):
        assert stage in out, out[-3000:]
    models = load_config(ROOT / "conf" / "local.yaml").evaluate.models
    assert len(models) >= 5
    for model in models:
        assert f"| {model} |" in out, (model, out[-3000:])
    assert "StackOverflowError" not in proc.stderr
    assert ":: resolving dependencies ::" not in proc.stderr  # hybridrec jars: no Ivy report on the terminal
    assert (data / "warehouse" / "hybridrec.db" / "recommendations" / "_delta_log").is_dir()
