"""Rating-cosine item similarity at scale: the similarity stage with the shipped default recipe
(``similarity.rating_weight: 1`` - the hybrid's neighbours) vs a scipy sparse floor on every core,
on the same synthetic ratings, in one run.

    $(scripts/bootstrap.sh)/bin/python benchmarks/similarity_ratings.py [--customers 1000000] \
        [--ratings 50] [--items 50000] [--shuffle-sample 0.05] [--repeat 3]

Data: ``--customers`` customers with ``--ratings`` distinct ratings each (1-5, MovieLens-like mix)
over ``--items`` items with long-tailed popularity (``recommend_scale.py``'s generator). Measured
side by side (writing the Delta table of ratings is not timed):

* **job**: ``hybridrec.stages.similarity.run_similarity`` with ``conf/local.yaml``'s similarity
  settings on local[*]: reads the Delta ``ratings``, caps histories (``rating_max_history``), computes
  every item's top-K cosine neighbours over co-raters, writes ``item_neighbors`` to Delta;
* **scipy floor**: what an engineer would write on one machine: read the Parquet ratings, build the
  sparse matrix once, then one process per core (forked, sharing it) computes its share of the rows
  of X^T X (rows split by the work they cost) with sparse products in chunks, divides by the norms,
  keeps each row's top-K (argpartition) and writes Parquet;
* **shuffle path** (for reference, at ``--shuffle-sample`` of the customers): the stage's path for
  ratings larger than ``similarity.broadcast_max_mb`` (summed per-customer partials), with the
  broadcast path on the same sample beside it.

This machine is noisy: the floor and the job run ``--repeat`` times each, alternately (each job run
is a run of its own, with its own run id), and the table gives the medians, every run listed.

Every item's neighbour set is compared between the job and the floor. Peak memory: the JVM plus
its Python workers for Spark runs; every floor process summed. Writes
benchmarks/results/similarity_ratings.md (the table, the command and the similarity config); the
last line printed is the headline.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hybridrec import schemas as S  # noqa: E402
from hybridrec.config import load_config  # noqa: E402

from hybridrec.testing.memory import PeakRss, local_jvm, spark_processes, this_process, this_process_tree  # noqa: E402
from _results import config_block, write_results  # noqa: E402
from recommend_scale import make_data  # noqa: E402

_X: sparse.csr_matrix | None = None  # customers x items (the floor's workers inherit it by fork)
_XT: sparse.csr_matrix | None = None  # items x customers
_NORMS: np.ndarray | None = None
_IDS: np.ndarray | None = None


def _floor_rows(job: tuple[int, int, int, str]) -> int:
    """One worker: rows [lo, hi) of X^T X in chunks, cosine, top-K by argpartition, Parquet out."""
    lo, hi, k, dst = job
    assert _X is not None and _XT is not None and _NORMS is not None and _IDS is not None
    n = _X.shape[1]
    step = max(1, (1 << 22) // n)
    writer = None
    for a in range(lo, hi, step):
        b = min(hi, a + step)
        g = (_XT[a:b] @ _X).toarray()  # dots over co-raters; zero where nobody rated both
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = g / (_NORMS[a:b, None] * _NORMS[None, :])
        cos[g == 0] = -np.inf
        cos[np.arange(b - a), np.arange(a, b)] = -np.inf  # never its own neighbour
        top = np.argpartition(-cos, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(cos, top, axis=1)
        order = np.lexsort((top, -vals), axis=1)
        top, vals = np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)
        r, c = np.nonzero(np.isfinite(vals))
        tab = pa.table({S.ITEM_ID: _IDS[a + r], S.NEIGHBOR_ID: _IDS[top[r, c]], S.SIMILARITY: vals[r, c],
                        S.RANK: (c + 1).astype(np.int32)})
        writer = writer or pq.ParquetWriter(dst, tab.schema)
        writer.write_table(tab)
    if writer:
        writer.close()
    return hi - lo


def scipy_floor(ratings_dir: Path, out: Path, procs: int, k: int) -> tuple[float, float]:
    """Returns (seconds in all, of which loading and building the matrix)."""
    import multiprocessing

    import pandas as pd

    global _X, _XT, _NORMS, _IDS
    t0 = time.perf_counter()
    t = pq.read_table(ratings_dir, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.RATING])
    cust, items, r = (t[c].to_numpy() for c in (S.CUSTOMER_ID, S.ITEM_ID, S.RATING))
    del t
    col, _IDS = pd.factorize(items, sort=True)  # hashing, not sorting, 50M ids; item ids sorted (ties)
    row, _ = pd.factorize(cust)
    _X = sparse.csr_matrix((r.astype(np.float64), (row, col)), shape=(int(row.max()) + 1, len(_IDS)))
    _XT = _X.T.tocsr()
    _NORMS = np.sqrt(np.asarray(_XT.multiply(_XT).sum(axis=1)).ravel())
    history = np.diff(_X.indptr).astype(np.float64)
    work = np.cumsum(sparse.csr_matrix((np.ones(_XT.nnz), _XT.indices, _XT.indptr), shape=_XT.shape) @ history)
    parts = 4 * procs
    cuts = np.unique(np.r_[0, np.searchsorted(work, work[-1] * np.arange(1, parts) / parts, side="right"), len(_IDS)])
    build_s = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(int(a), int(b), k, str(out / f"part-{i:04d}.parquet")) for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))
            if b > a]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        sum(pool.imap_unordered(_floor_rows, jobs))
    return time.perf_counter() - t0, build_s


def compare(job: "object", floor_dir: Path) -> tuple[int, int, float]:
    """(items whose neighbour lists are identical, items compared, largest similarity difference);
    the job's rows as a pandas frame, the floor's from its Parquet."""
    import pandas as pd

    a = job.sort_values([S.ITEM_ID, S.RANK])  # type: ignore[attr-defined]
    b = pq.read_table(floor_dir).to_pandas().sort_values([S.ITEM_ID, S.RANK])
    ga = a.groupby(S.ITEM_ID)[S.NEIGHBOR_ID].agg(tuple)
    gb = b.groupby(S.ITEM_ID)[S.NEIGHBOR_ID].agg(tuple)
    both = ga.index.union(gb.index)
    same = int((ga.reindex(both) == gb.reindex(both)).sum())
    m = pd.merge(a, b, on=[S.ITEM_ID, S.RANK], suffixes=("_j", "_f"))
    diff = float(np.abs(m[S.SIMILARITY + "_j"] - m[S.SIMILARITY + "_f"]).max()) if len(m) else 0.0
    return same, len(both), diff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--ratings", type=int, default=50)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--shuffle-sample", type=float, default=0.05,
                    help="customer fraction the shuffle path is measured at, beside the broadcast path (0: skip)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of the floor and of the job each (medians)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "similarity_ratings.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hybridrec-simbench-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    cores = os.cpu_count() or 1
    overrides = [
        f"storage.data_dir={work / 'data'}", "storage.database=bench", "run.id=bench", f"spark.master=local[{cores}]",
        "spark.conf={spark.driver.memory: 8g, spark.sql.shuffle.partitions: '16', "
        "spark.databricks.delta.snapshotPartitions: '2'}"]
    cfg = load_config(ROOT / "conf" / "local.yaml", overrides)  # the shipped default, these keys aside
    k = cfg.similarity.top_k
    t = time.perf_counter()
    ratings_dir, _, _ = make_data(work, args.customers, args.ratings, args.items, 1, 3)
    print(f"data generated in {time.perf_counter() - t:.0f}s", flush=True)

    def floor_run(out: Path) -> tuple[float, float]:
        global _X, _XT
        shutil.rmtree(out, ignore_errors=True)
        try:
            return scipy_floor(ratings_dir, out, cores, k)
        finally:
            _X = _XT = None

    with PeakRss(this_process_tree, total=True) as floor_mem:
        floor_runs = [floor_run(work / "floor")]
    print(f"scipy floor {floor_runs[0][0]:.1f}s (load and build {floor_runs[0][1]:.1f}s) on {cores} processes",
          flush=True)

    from pyspark.sql import functions as F

    from hybridrec.runtime.session import build_session
    from hybridrec.stages.similarity import run_similarity
    from hybridrec.storage.tables import ensure_table

    spark = build_session(cfg)
    spark.read.parquet(str(ratings_dir)).select(
        S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP, F.lit("bench").alias(S.SOURCE_FILE),
        F.lit("bench").alias(S.RUN_ID), F.current_timestamp().alias(S.INGESTED_AT)) \
        .write.format("delta").mode("append").saveAsTable(ensure_table(spark, cfg.storage, S.RATINGS))
    print("tables written", flush=True)

    job_runs: list[float] = []
    with PeakRss(spark_processes(workers_only=False), total=True) as job_mem, \
            PeakRss(this_process) as driver_mem, PeakRss(local_jvm) as jvm_mem:
        for i in range(max(args.repeat, 1)):
            run_cfg = cfg if i == 0 else load_config(ROOT / "conf" / "local.yaml", [*overrides, f"run.id=bench{i}"])
            t = time.perf_counter()
            report = run_similarity(spark, run_cfg)
            job_runs.append(time.perf_counter() - t)
            print(f"job {job_runs[-1]:.1f}s: {report.lines()[0]}", flush=True)
            if len(floor_runs) < args.repeat:
                floor_runs.append(floor_run(work / f"floor{i}"))
                print(f"scipy floor {floor_runs[-1][0]:.1f}s", flush=True)
    job_s = float(np.median(job_runs))
    floor_s, build_s = (float(np.median([f[j] for f in floor_runs])) for j in (0, 1))
    got = spark.table(cfg.table(S.ITEM_NEIGHBORS)).filter(F.col(S.RUN_ID) == "bench") \
        .select(S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, S.RANK).toPandas()
    same, compared, diff = compare(got, work / "floor")

    shuffle_lines: list[str] = []
    if args.shuffle_sample > 0:
        from hybridrec.neighbors.ratingsim import RatingSimParams, rating_neighbors

        n_sample = int(args.customers * args.shuffle_sample)
        sample = spark.table(cfg.table(S.RATINGS)).filter(F.col(S.CUSTOMER_ID) <= n_sample)
        sc = cfg.similarity
        times = {}
        for name, mb in (("broadcast", sc.broadcast_max_mb), ("shuffle", 0)):
            params = RatingSimParams(k, sc.rating_min_support, sc.rating_max_history, broadcast_max_mb=mb)
            t = time.perf_counter()
            rating_neighbors(sample, params).write.format("noop").mode("overwrite").save()
            times[name] = time.perf_counter() - t
            print(f"{args.shuffle_sample:.0%} sample, {name} path: {times[name]:.1f}s", flush=True)
        shuffle_lines = [
            f"At {args.shuffle_sample:.0%} of the customers ({n_sample:,}): broadcast path {times['broadcast']:.1f} s, "
            f"shuffle path (ratings over `broadcast_max_mb`) {times['shuffle']:.1f} s = "
            f"{times['shuffle'] / times['broadcast']:.1f}x the broadcast path (neighbours only, no Delta write)."]
    spark.stop()

    gb = 2 ** 30
    ratio = job_s / floor_s
    lines = [
        f"# Rating-cosine item similarity at scale — {args.customers:,} customers x {args.ratings} ratings over "
        f"{args.items:,} items, top-{k}, CPU ({cores} cores)",
        "",
        f"run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; Spark local[{cores}]; command: "
        f"`benchmarks/similarity_ratings.py --customers {args.customers} --ratings {args.ratings} --items "
        f"{args.items} --shuffle-sample {args.shuffle_sample} --repeat {args.repeat}`",
        "",
        "| method | seconds | job time / method time | peak RSS (GB) |",
        "|---|---:|---:|---:|",
        f"| similarity job, shipped recipe `{report.source}` (Delta in -> Delta out) | {job_s:.1f} | 1.00 | "
        f"{job_mem.peak / gb:.1f} (JVM + workers); JVM {jvm_mem.peak / gb:.1f}, Python driver "
        f"{driver_mem.peak / gb:.1f} |",
        f"| scipy floor: X^T X rows + top-{k}, {cores} processes, Parquet in/out (of which load + build "
        f"{build_s:.1f} s) | {floor_s:.1f} | {ratio:.2f} | {floor_mem.peak / gb:.1f} (all processes) |",
        "",
        f"medians of {len(job_runs)} job runs and {len(floor_runs)} floor runs, taken alternately: job "
        + ", ".join(f"{t:.1f}" for t in job_runs) + " s; floor " + ", ".join(f"{t:.1f}" for t, _ in floor_runs)
        + f" s. The job's first run in the session took {job_runs[0]:.1f} s = {job_runs[0] / floor_s:.2f}x the "
        "floor's median.",
        f"job vs floor: {ratio:.2f}x (goal <= 1.5x)",
        f"identical neighbour lists job vs floor: {same:,} of {compared:,} items; largest similarity difference "
        f"at the same rank {diff:.1e}",
        *shuffle_lines,
        *report.lines(),
        "",
        *config_block("similarity", cfg.similarity),
        "",
        f"headline: rating_similarity_job_vs_scipy_floor {ratio:.2f}",
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
