"""The user's view: the README's main command and an analyst's SQL from a new JVM."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.runtime.session import QUICK_JIT
from tests.standalone import (Standalone, assert_same_table, build_pyfiles_zip, spark_env, submit_args,
                              table_frame)

ROOT = Path(__file__).resolve().parents[2]
HYBRIDREC = [sys.executable, "-m", "hybridrec.cli"]


def run(args: list[str], data: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYBRIDREC_DATA": str(data), "PYTHONPATH": str(ROOT / "lib")}
    return subprocess.run(HYBRIDREC + args, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout)


SMALL = ["--set", "demo.movies=60", "--set", "demo.customers=20", "--set", "demo.poster_width=32",
         "--set", "demo.poster_height=48", "--set", "run.id=cli",
         "--set", "embed.input_size=32", "--set", "similarity.top_k=5",
         "--set", "train.min_items=10", "--set", "train.epochs=5",
         "--set", "evaluate.models=[popular, item_knn, hybrid]", "--set", "evaluate.ks=[10]"]


CANARY = "canary-tmdb-key-5f0c1e9a"  # set as TMDB_API_KEY for the runs below: it must surface nowhere


def assert_no_canary(texts: list[str], data: Path) -> None:
    """Not in any output or log, nor in any Delta commit (commitInfo holds the operation's parameters)."""
    for text in texts:
        assert CANARY not in text
    for log in data.glob("warehouse/*/*/_delta_log/*.json"):
        assert CANARY not in log.read_text(), log


@dataclass
class DebugLog:
    """What scanning a (large) DEBUG log file found, without holding it in memory."""
    canary_hits: int
    debug_lines: int
    value_lines: int  # lines of Parquet's per-value record loggers (customer data)
    tail: str  # the last 20,000 characters


RECORD_LOGGERS = (" DEBUG MessageColumnIO: ", " DEBUG RecordConsumerLoggingWrapper: ")


def scan_log(path: Path, chunk: int = 1 << 23) -> DebugLog:
    hits = debug = values = 0
    carry, tail = "", ""
    with open(path, errors="replace") as f:
        while block := f.read(chunk):
            text = carry + block
            hits += text.count(CANARY)
            debug += block.count(" DEBUG ")
            values += sum(block.count(name) for name in RECORD_LOGGERS)
            carry = text[-(len(CANARY) - 1):]  # a canary split across two blocks is still found once
            tail = (tail + block)[-20_000:]
    return DebugLog(hits, debug, values, tail)


@dataclass
class LocalRun:
    data: Path
    done: subprocess.CompletedProcess[str]  # the run that completed (the rerun after the kill); stderr: its tail
    done_log: DebugLog  # that run logged at DEBUG from start to end: its whole stderr, scanned
    concurrent: subprocess.CompletedProcess[str]  # a second run started while the first one ran
    killed_stdout: str  # the first run (at DEBUG), SIGKILLed while its posters MERGE had files but no commit
    killed_stderr: str
    killed_posters_log: list[str]  # posters' commits when it was killed
    after_kill: dict[str, tuple[int, int]]  # table -> (latest version, rows) read right after the kill


def _delta_log(table: Path) -> list[str]:
    return sorted(p.name for p in (table / "_delta_log").glob("*.json")) if table.is_dir() else []


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> LocalRun:
    """The README's main command on a small demo, local[2], checked by several tests. Both runs
    log at DEBUG (Spark's logs and the jobs' own, py4j's gateway calls included). While the first
    runs, a second command on the same data folder tries to start; then the run's driver (Python
    and JVM) is SIGKILLed while its largest write - the posters MERGE - has written files but not
    committed them; the tables are read at that moment, and the same command is run again to the
    end (its stderr, some hundred MB at DEBUG, goes to a file that is scanned)."""
    from delta.tables import DeltaTable

    from hybridrec.runtime.session import metastore_in_use

    data = tmp_path_factory.mktemp("local-run")
    env = {**os.environ, "HYBRIDREC_DATA": str(data), "PYTHONPATH": str(ROOT / "lib"), "TMDB_API_KEY": CANARY}
    # the quick JIT (spark.java_options) as the cluster run has it: a small pipeline at DEBUG
    # measured 203 s with it against 227 s without
    cmd = HYBRIDREC + ["pipeline", *SMALL, "--set", "spark.master=local[2]", "--set", "spark.log_level=DEBUG",
                       "--set", f"spark.java_options={QUICK_JIT}"]
    posters = data / "warehouse" / "hybridrec.db" / S.POSTERS
    with open(data.parent / "killed.out", "w+") as out, open(data.parent / "killed.err", "w+") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=out, stderr=err, start_new_session=True)
        deadline = time.time() + 600
        while not metastore_in_use(data) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        concurrent = run(["sql", "SELECT count(*) FROM items", "--set", "spark.master=local[1]"], data, timeout=120)
        killed_log: list[str] = []
        while proc.poll() is None and time.time() < deadline:
            log = _delta_log(posters)
            if len(log) == 1 and list(posters.glob("*.parquet")):  # files written, only the CREATE committed
                os.killpg(proc.pid, signal.SIGKILL)
                killed_log = log
                break
            time.sleep(0.01)
        proc.wait(timeout=120)
        out.seek(0)
        err.seek(0)
        killed_stdout, killed_stderr = out.read(), err.read()
    after = {}
    for table in sorted((data / "warehouse" / "hybridrec.db").iterdir()):
        if (table / "_delta_log").is_dir():
            version = DeltaTable.forPath(spark, str(table)).history(1).first()["version"]
            after[table.name] = (int(version), spark.read.format("delta").load(str(table)).count())
    done_err = data.parent / "done.err"
    with open(data.parent / "done.out", "w+") as out, open(done_err, "w") as err:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=out, stderr=err, timeout=900).returncode
        out.seek(0)
        done_stdout = out.read()
    done_log = scan_log(done_err)
    done = subprocess.CompletedProcess(cmd, rc, done_stdout, done_log.tail)
    return LocalRun(data, done, done_log, concurrent, killed_stdout, killed_stderr, killed_log, after)


@pytest.mark.slow
def test_pipeline_then_sql_from_a_fresh_session(local_run: LocalRun) -> None:
    tmp_path, done = local_run.data, local_run.done
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "[demo" in local_run.killed_stdout  # the first (killed) run wrote the demo crawl
    for stage in ("[ingest", "[embed", "[train", "[similarity", "[recommend", "[evaluate"):
        assert stage in out, stage
    # the main command ends with the evaluation's comparison table, then the views and a query hint
    table = out[out.index("| model | ndcg@10"):]
    assert all(f"| {m} |" in table for m in ("popular", "item_knn", "hybrid")) and "query them:" in table
    assert "analyst views: recommendations_latest_titled, genre_stats" in out
    assert "sample of items:" in out and "recommendations of the newest run" in out
    assert "embed uses seeded RANDOM weights" in out  # the demo says so
    assert "unknown genre id 10769" in out and "poster file is empty (0 bytes)" in out
    assert_no_canary([done.stdout, done.stderr, local_run.concurrent.stderr, local_run.killed_stdout,
                      local_run.killed_stderr], tmp_path)
    # the first run did log at DEBUG until it was killed: Spark's, the jobs' own, py4j's calls to the JVM
    assert " DEBUG " in local_run.killed_stderr and "py4j.clientserver DEBUG Command to send" in \
        local_run.killed_stderr and "hybridrec" in local_run.killed_stderr
    # and the whole pipeline logged at DEBUG to its end: no canary in any of those lines either
    log = local_run.done_log
    assert log.canary_hits == 0 and log.debug_lines > 100_000, (log.canary_hits, log.debug_lines)
    # but not Parquet's record writers, which would log every value written (customer data)
    assert log.value_lines == 0 and not any(name in local_run.killed_stderr for name in RECORD_LOGGERS)
    assert "py4j.clientserver DEBUG Command to send" in log.tail and log.tail.count(" DEBUG ") > 20  # to the end
    assert (tmp_path / "warehouse" / "hybridrec.db" / "items" / "_delta_log").is_dir()

    # a new JVM on the same metastore finds the tables by name
    # (started the moment the pipeline process returned: its JVM, and Derby's lock, are gone by then)
    q = run(["sql", "SELECT count(*) AS n, min(run_id) AS r FROM items", "--set", "spark.master=local[1]"], tmp_path)
    assert q.returncode == 0, q.stderr[-3000:]
    assert q.stdout.split() == ["n", "r", "66", "cli"]  # --format table (the default)
    out = tmp_path / "items.json"
    j = run(["sql", "SELECT item_id, title FROM items ORDER BY item_id LIMIT 3", "--format", "json", "--output",
             str(out), "--set", "spark.master=local[1]"], tmp_path)
    assert j.returncode == 0, j.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {"item_id", "title"} and rows[0]["item_id"] < rows[1]["item_id"]


INGEST_ROW = re.compile(r"^ *(items|posters|ratings) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+)$", re.M)
EMBED_LINE = re.compile(r"posters (\d+), already embedded (\d+), already quarantined (\d+), computed (\d+) "
                        r"in \d+ chunk\(s\), quarantined (\d+)")


@pytest.mark.slow
def test_the_bad_input_corpus_end_to_end(local_run: LocalRun, spark: SparkSession) -> None:
    """The demo crawl holds one of every bad record and file kind (:data:`BAD_CASES`) that ingest
    and embed know: through the pipeline's stages each lands in ``quarantine`` with its reason and
    stage, and per stage read = written + quarantined, checked against the tables. Embed's kind is
    a valid JPEG strip (6:1) that ingest keeps and embed refuses (``embed.max_aspect_ratio``); a
    poster the CNN cannot decode cannot come from a crawl, as ingest fully decodes every poster it
    keeps with the same decoder (test_embed writes such bytes into ``posters`` directly)."""
    from hybridrec.crawl.demo import BAD_CASES
    from hybridrec.stages.embed import STAGE_EMBED

    done, db = local_run.done, local_run.data / "warehouse" / "hybridrec.db"
    assert done.returncode == 0, done.stderr[-3000:]
    table = {n: spark.read.format("delta").load(str(db / n)) for n in
             (S.ITEMS, S.POSTERS, S.RATINGS, S.QUARANTINE, S.ITEM_EMBEDDINGS)}
    q = table[S.QUARANTINE].collect()
    for case, (stage, reason) in BAD_CASES.items():
        hits = [r for r in q if r[S.STAGE] == stage and reason in r[S.REASON]]
        assert len(hits) == 1 and hits[0][S.SOURCE_FILE] and hits[0][S.RECORD], (case, hits)
    assert len(q) == len(BAD_CASES)  # nothing unexplained, nothing twice (the killed run's rows replaced)
    quarantined = {s: sum(r[S.STAGE] == s for r in q) for s in ("ingest.items", "ingest.posters", "ingest.ratings")}
    rows = {m[1]: [int(x) for x in m.groups()[1:]] for m in INGEST_ROW.finditer(done.stdout)}
    for name in (S.ITEMS, S.POSTERS, S.RATINGS):
        read, inserted, updated, unchanged, bad = rows[name]
        assert read == inserted + updated + unchanged + bad and bad == quarantined[f"ingest.{name}"], name
        assert table[name].count() == read - bad, name  # the killed run's committed rows are among "unchanged"
    embed = [int(x) for x in EMBED_LINE.search(done.stdout).groups()]  # type: ignore[union-attr]
    posters, already, already_bad, computed, bad = embed
    assert posters == table[S.POSTERS].count() == already + already_bad + computed + bad
    assert (bad, already_bad) == (1, 0) and sum(r[S.STAGE] == STAGE_EMBED for r in q) == 1  # killed before embed
    assert table[S.ITEM_EMBEDDINGS].count() == computed == posters - bad


@pytest.mark.slow
def test_a_second_run_on_the_same_local_tables_stops_with_one_line(local_run: LocalRun) -> None:
    """Derby serves one process: a concurrent run fails at once, clearly, and the first is unharmed."""
    c = local_run.concurrent
    assert c.returncode == 2, c.stderr[-2000:]
    assert c.stderr.strip().splitlines()[-1].startswith(
        f"hybridrec: error: the local metastore {local_run.data / 'metastore_db'} is in use by another hybridrec run")
    assert "Traceback" not in c.stderr and len(c.stderr.splitlines()) < 5
    assert local_run.done.returncode == 0


@pytest.mark.slow
def test_driver_killed_mid_write_leaves_committed_versions_and_the_rerun_doubles_nothing(
        local_run: LocalRun, spark: SparkSession) -> None:
    """SIGKILL between the posters MERGE's files and its commit: every table read at a committed
    version (posters at its previous one: created, empty; the files are orphans nobody reads), and
    the same run again completed with no key twice."""
    assert local_run.killed_posters_log == ["00000000000000000000.json"], "the write was not caught mid-way"
    assert local_run.after_kill[S.POSTERS] == (0, 0)
    assert "[ingest" not in local_run.killed_stdout  # killed inside the ingest stage
    assert local_run.done.returncode == 0, local_run.done.stderr[-3000:]
    db = local_run.data / "warehouse" / "hybridrec.db"
    keys = {S.ITEMS: [S.ITEM_ID], S.POSTERS: [S.ITEM_ID], S.RATINGS: [S.CUSTOMER_ID, S.ITEM_ID],
            S.QUARANTINE: [S.STAGE, S.RECORD, S.REASON], S.ITEM_EMBEDDINGS: [S.ITEM_ID, S.MODEL_KEY],
            S.RECOMMENDATIONS: [S.RUN_ID, S.CUSTOMER_ID, S.RANK]}
    for name, key in keys.items():
        df = spark.read.format("delta").load(str(db / name))
        assert df.count() > 0 and df.groupBy(*key).count().filter("count > 1").isEmpty(), name
    assert "read = inserted + updated + unchanged + quarantined holds" in local_run.done.stdout


@pytest.mark.slow
def test_spark_submit_on_a_standalone_cluster_survives_faults_and_matches_local_mode(
        local_run: LocalRun, spark: SparkSession, tmp_path: Path) -> None:
    """The wheel spark-submitted to a master and two workers on localhost: every first task attempt
    of embed, similarity and recommend fails (an exception, a SIGKILLed Python worker), and a
    worker dies mid-pipeline. The job retries and still writes exactly what the clean local run did."""
    local_data, local = local_run.data, local_run.done
    assert local.returncode == 0, local.stderr[-3000:]
    pyfiles = build_pyfiles_zip(tmp_path / "dist")
    cluster = Standalone(tmp_path / "cluster").start(workers=2)
    data = tmp_path / "data"
    out = tmp_path / "submit.out"
    try:
        env = {**spark_env(), "HYBRIDREC_DATA": str(data), "TMDB_API_KEY": CANARY}
        faults = "embed:raise,similarity:kill,recommend:raise"
        cmd = [*submit_args(cluster.url, pyfiles, data), "--verbose",  # --verbose dumps the Spark conf
               "--conf", f"spark.executorEnv.HYBRIDREC_FAULTS={faults}",
               str(ROOT / "jobs" / "pipeline.py"), "--conf", str(ROOT / "conf" / "local.yaml"),
               "--set", "spark.mode=cluster", *SMALL]
        with open(out, "w") as sink, open(tmp_path / "submit.err", "w") as err:
            proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True, stdout=sink, stderr=err)
            deadline = time.time() + 1500
            while "[train" not in out.read_text() and proc.poll() is None and time.time() < deadline:
                time.sleep(1)
            cluster.kill("worker0")  # a worker (and its executor) lost between stages of one job
            rc = proc.wait(timeout=max(60, deadline - time.time()))
    finally:
        cluster.stop()
    stdout, stderr = out.read_text(), (tmp_path / "submit.err").read_text()
    assert rc == 0, stdout[-2000:] + stderr[-3000:]
    assert "[evaluate" in stdout and "| hybrid |" in stdout
    assert "[train" in stdout  # the worker was killed while the pipeline ran, not after it
    # both workers ran executors of the job, and the injected faults did fire (executor logs)
    logs = {w: list((tmp_path / "cluster" / w).glob("app-*/*/stderr")) for w in ("worker0", "worker1")}
    assert all(logs.values()), logs
    text = "".join(p.read_text(errors="replace") for ps in logs.values() for p in ps)
    assert "injected fault in stage embed" in text and "injected fault in stage recommend" in text
    assert "Spark properties used" in stdout + stderr  # the conf dump is there, and the secret is not
    assert_no_canary([stdout, stderr, text], data)

    tables = sorted(p.parent.name for p in (local_data / "warehouse" / "hybridrec.db").glob("*/_delta_log"))
    assert {S.ITEMS, S.ITEM_EMBEDDINGS, S.ITEM_NEIGHBORS, S.RECOMMENDATIONS, "evaluation"} <= set(tables)
    for name in tables:
        a, b = (local_data / "warehouse" / "hybridrec.db" / name), (data / "warehouse" / "hybridrec.db" / name)
        assert_same_table(table_frame(spark, a, local_data), table_frame(spark, b, data), name)
        # retried tasks never commit twice: as many table versions as the clean run made
        assert len(list((a / "_delta_log").glob("*.json"))) == len(list((b / "_delta_log").glob("*.json"))), name


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
@pytest.mark.stage
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = run(args, tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in done.stderr
