"""The user's view: the README's main command and an analyst's SQL from a new JVM."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HYBRIDREC = [sys.executable, "-m", "hybridrec.cli"]


def run(args: list[str], data: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYBRIDREC_DATA": str(data), "PYTHONPATH": str(ROOT / "lib")}
    return subprocess.run(HYBRIDREC + args, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout)


@pytest.mark.slow
def test_pipeline_then_sql_from_a_fresh_session(tmp_path: Path) -> None:
    small = ["--set", "demo.movies=60", "--set", "demo.customers=20", "--set", "demo.poster_width=32",
             "--set", "demo.poster_height=48", "--set", "spark.master=local[2]", "--set", "run.id=cli",
             "--set", "embed.input_size=32", "--set", "similarity.top_k=5",
             "--set", "train.min_items=10", "--set", "train.epochs=5",
             "--set", "evaluate.models=[popular, item_knn, hybrid]", "--set", "evaluate.ks=[10]"]
    done = run(["pipeline", *small], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for stage in ("[demo", "[ingest", "[embed", "[train", "[similarity", "[recommend", "[evaluate"):
        assert stage in out, stage
    # the main command ends with the evaluation's comparison table, then the views and a query hint
    table = out[out.index("| model | ndcg@10"):]
    assert all(f"| {m} |" in table for m in ("popular", "item_knn", "hybrid")) and "query them:" in table
    assert "analyst views: recommendations_latest_titled, genre_stats" in out
    assert "sample of items:" in out and "recommendations of the newest run" in out
    assert "embed uses seeded RANDOM weights" in out  # the demo says so
    assert "unknown genre id 10769" in out and "poster file is empty (0 bytes)" in out
    assert (tmp_path / "warehouse" / "hybridrec.db" / "items" / "_delta_log").is_dir()

    # a new JVM on the same metastore finds the tables by name
    q = run(["sql", "SELECT count(*) AS n, min(run_id) AS r FROM items", "--set", "spark.master=local[1]"], tmp_path)
    assert q.returncode == 0, q.stderr[-3000:]
    assert "|65|cli|" in q.stdout.replace(" ", "")


@pytest.mark.parametrize(
    "args, message",
    [
        (["ingest", "--set", "input.crawl_dir=/no/such/crawl"],
         "hybridrec: error: crawl folder not found: /no/such/crawl (config input.crawl_dir)"),
        (["ingest", "--set", "ingest.min_ratng=1"],
         "hybridrec: error: conf/local.yaml: unknown config key 'ingest.min_ratng' (did you mean 'ingest.min_rating'?)"),
        (["ingest", "--conf", "conf/nope.yaml"], "hybridrec: error: config file not found: conf/nope.yaml"),
        (["pipeline", "--stages", "ingest,train2"], "hybridrec: error: unknown stage(s) train2"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = run(args, tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in done.stderr
