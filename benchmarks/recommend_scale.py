"""Recommendations at scale: the recommend job with the shipped default model vs an all-core
numpy/scipy floor, Spark ALS and the naive Spark SQL join, on the same synthetic ratings, in one run.

    $(scripts/bootstrap.sh)/bin/python benchmarks/recommend_scale.py [--customers 1000000] [--ratings 50] \
        [--items 50000] [--neighbors 50] [--samples 0.01,0.02,0.04]

Data: ``--customers`` customers with ``--ratings`` distinct ratings each (1-5, MovieLens-like
mix) over ``--items`` items with long-tailed popularity, and ``--neighbors`` neighbours per
item; release dates spread over 20 years, so about 5% of the items are new for
``new_item_recommendations`` (released within ``recommend.new.max_age_days``). Measured side by side (setup — writing the Delta tables — is not timed):

* **job**: ``hybridrec.stages.recommend.run_recommend`` with ``conf/local.yaml``'s default model
  (``hybrid``) end to end on local[*]: reads the Delta ``ratings`` and ``item_neighbors``, fits
  (``min_lift`` on its bounded carve-out, the cold-start model on its bounded sample), scores every
  customer against the broadcast neighbour matrix, writes ``recommendations`` (top-10) to Delta;
* **numpy/scipy floor**: the same vectorised kernel (``hybridrec.models.scoring.score_batch_lists``:
  the top-10 and the "new for you" top-10 from one product) in one process per core, each on its own
  ratings files (read Parquet, score in customer chunks, write Parquet), plus the same cold-start fit
  (numpy) on a sample of the same size; its lists are compared with the job's on a sample of customers;
* **ALS**: Spark MLlib ``ALS(rank=64, maxIter=10)`` fit + ``recommendForAllUsers(10)``;
* **naive SQL**: liked ratings joined with neighbours, grouped by (customer, item), anti-joined
  with rated items, a window for the top-10.

ALS and the naive version are measured at each ``--samples`` fraction of the customers (all their
ratings); a least-squares line through the points (its residual printed) gives the full-size time.
Peak memory: the JVM plus its Python workers for Spark runs; every floor process summed.
Writes benchmarks/results/recommend_scale.md (the table, the command and the recommend config);
the last line printed is the headline.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from hybridrec import schemas as S  # noqa: E402
from hybridrec.config import ColdStartConf, load_config  # noqa: E402
from hybridrec.models.scoring import LIST, LIST_MAIN, NeighborMatrix, NewList, score_batch_lists  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from hybridrec.testing.memory import PeakRss, local_jvm, spark_processes, this_process, this_process_tree  # noqa: E402
from _results import config_block, write_figures, write_results  # noqa: E402

TOP_N, THRESHOLD = 10, 3.0
RATING_P = np.array([0.06, 0.11, 0.27, 0.34, 0.22])


def _distinct_walk(rng: np.random.Generator, n_rows: int, width: int, n_items: int, skew: bool) -> np.ndarray:
    """(n_rows, width) distinct item indices per row: start + k * stride (mod n_items) with a
    stride coprime to n_items; starts long-tailed towards low (popular) indices when skew."""
    start = (rng.pareto(1.2, n_rows) * n_items / 50).astype(np.int64) % n_items if skew \
        else rng.integers(0, n_items, n_rows)
    strides = np.array([s for s in range(1, 400) if np.gcd(s, n_items) == 1])
    stride = rng.choice(strides, n_rows)
    return (start[:, None] + np.arange(width)[None, :] * stride[:, None]) % n_items


def make_data(out: Path, customers: int, per: int, n_items: int, k: int, seed: int) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    item_ids = rng.permutation(np.arange(1, n_items + 1, dtype=np.int64) * 11)  # index -> id
    ratings_dir = out / "ratings.parquet"
    ratings_dir.mkdir(parents=True)
    chunk = 100_000
    ts = pa.scalar(dt.datetime(2026, 1, 1), pa.timestamp("us"))
    for part, c0 in enumerate(range(0, customers, chunk)):
        n = min(chunk, customers - c0)
        items = item_ids[_distinct_walk(rng, n, per, n_items, skew=True)]
        rating = (rng.choice(5, size=(n, per), p=RATING_P) + 1).astype(np.float64)
        cust = np.repeat(np.arange(c0 + 1, c0 + n + 1, dtype=np.int64), per)
        table = pa.table({S.CUSTOMER_ID: cust, S.ITEM_ID: items.ravel(), S.RATING: rating.ravel(),
                          S.TIMESTAMP: pa.array(np.full(n * per, ts.value, "datetime64[us]"))})
        pq.write_table(table, ratings_dir / f"part-{part:05d}.parquet")
    nb = item_ids[_distinct_walk(rng, n_items, k + 1, n_items, skew=False)[:, 1:]]  # never the item itself
    sims = -np.sort(-rng.uniform(0.05, 1.0, (n_items, k)), axis=1)
    neighbors = out / "neighbors.parquet"
    pq.write_table(pa.table({S.ITEM_ID: np.repeat(item_ids, k), S.NEIGHBOR_ID: nb.ravel(),
                             S.SIMILARITY: sims.ravel(),
                             S.RANK: np.tile(np.arange(1, k + 1, dtype=np.int32), n_items)}), neighbors)
    return ratings_dir, neighbors, item_ids


_FLOOR_NM: NeighborMatrix | None = None
_FLOOR_NEW: NewList | None = None
AGE_DAYS = 7300  # release dates: item id x 7919 mod AGE_DAYS days before the run date


def released_days_ago(item_ids: np.ndarray) -> np.ndarray:
    return (item_ids * 7919) % AGE_DAYS


def _floor_init(neighbors: str, new_ids: np.ndarray) -> None:
    global _FLOOR_NM, _FLOOR_NEW
    _FLOOR_NEW = NewList(np.sort(new_ids), TOP_N)
    nbt = pq.read_table(neighbors)
    _FLOOR_NM = NeighborMatrix.from_pairs(nbt[S.ITEM_ID].to_numpy(), nbt[S.NEIGHBOR_ID].to_numpy(),
                                          nbt[S.SIMILARITY].to_numpy())


def _floor_file(job: tuple[str, str, int]) -> dict[int, list]:
    """One worker process: read a ratings file, score it in customer chunks, write Parquet."""
    src, dst, chunk_customers = job
    assert _FLOOR_NM is not None
    t = pq.read_table(src, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.RATING])
    cust, items, r = (t[c].to_numpy() for c in (S.CUSTOMER_ID, S.ITEM_ID, S.RATING))
    bounds = np.searchsorted(cust, np.arange(cust[0], cust[-1] + 2, chunk_customers))
    writer, sample = None, {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        if a == b:
            continue
        assert _FLOOR_NEW is not None
        frame = score_batch_lists(cust[a:b], items[a:b], r[a:b], _FLOOR_NM, TOP_N, THRESHOLD, None, None, _FLOOR_NEW)
        main = frame[frame[LIST] == LIST_MAIN]
        if main[S.CUSTOMER_ID].iloc[0] % 97 == 1:
            for c, g in main[main[S.CUSTOMER_ID] % 1000 == 1].groupby(S.CUSTOMER_ID):
                sample[int(c)] = list(zip(g[S.ITEM_ID].tolist(), np.round(g[S.SCORE], 9).tolist()))
        tab = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(dst, tab.schema)
        writer.write_table(tab)
    if writer:
        writer.close()
    return sample


def floor_cold_fit(ratings_dir: Path, item_ids: np.ndarray, cs: ColdStartConf) -> float:
    """The default's cold-start fit done the floor's way: the same numpy fit (fit_cold_model) on a
    sample of as many customers as the job's, read straight from Parquet. Returns seconds."""
    import pandas as pd

    from hybridrec.models.coldstart import ItemArrays, MapParams, fit_cold_model

    t0 = time.perf_counter()
    frames, n = [], 0
    for f in sorted(ratings_dir.glob("*.parquet")):
        frame = pq.read_table(f, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.RATING]).to_pandas()
        frames.append(frame[frame[S.CUSTOMER_ID] % 50 == 0])
        n += frames[-1][S.CUSTOMER_ID].nunique()
        if n >= cs.fit_customers:
            break
    rows = pd.concat(frames)
    keep = np.sort(rows[S.CUSTOMER_ID].unique())[:cs.fit_customers]
    rows = rows[rows[S.CUSTOMER_ID].isin(keep)]
    items = ItemArrays.of(pd.DataFrame({S.ITEM_ID: np.sort(item_ids), S.GENRES: [["Drama"]] * len(item_ids),
                                        "vote_count": np.nan, "vote_average": np.nan}))
    vec_ids, vectors = np.zeros(0, np.int64), np.zeros((0, 8), np.float32)
    mapping = MapParams.configured(cs)
    fit_cold_model(rows, items, vec_ids, vectors, features=cs.features, fraction=cs.fit_fraction, seed=cs.seed,
                   threshold=THRESHOLD, relevant=cs.relevant, neighbours=cs.image_neighbors, l2=cs.l2,
                   max_pairs=cs.fit_pairs, mapping=mapping)
    if "cf" in cs.features:  # the job also fits the serving map on all the sampled ratings
        mapping.fit(rows, items, vec_ids, vectors, threshold=THRESHOLD, seed=cs.seed)
    return time.perf_counter() - t0


def scipy_floor(ratings_dir: Path, neighbors: Path, out: Path, procs: int, new_ids: np.ndarray,
                chunk_customers: int = 4000) -> tuple[float, dict]:
    """Read, score in customer chunks with the product's kernel, write: one process per core, each
    on its own ratings files (the neighbour matrix loaded once per process)."""
    import multiprocessing

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(f), str(out / f.name), chunk_customers) for f in sorted(ratings_dir.glob("*.parquet"))]
    sample: dict[int, list] = {}
    with multiprocessing.get_context("fork").Pool(procs, initializer=_floor_init,
                                                  initargs=(str(neighbors), new_ids)) as pool:
        for part in pool.imap_unordered(_floor_file, jobs):
            sample.update(part)
    return time.perf_counter() - t0, sample


def fitted_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares t = a + b x; returns a, b and the largest relative residual."""
    b, a = np.polyfit(np.array(xs), np.array(ys), 1)
    resid = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))
    return float(a), float(b), float(resid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--ratings", type=int, default=50)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--neighbors", type=int, default=50)
    ap.add_argument("--samples", default="0.01,0.02,0.04",
                    help="customer fractions ALS and the naive SQL are measured at (a line is fitted); "
                         "none = neither is measured (the scale curves: job and floor only)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides for the job (e.g. --set recommend.model=ranked); the floor does the "
                         "default's work whatever they say, so only the default's ratio is a goal")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recommend_scale.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hybridrec-recbench-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    cores = os.cpu_count() or 1
    samples = [] if args.samples == "none" else sorted(float(x) for x in args.samples.split(","))
    overrides = [
        f"storage.data_dir={work / 'data'}", "storage.database=bench", "run.id=bench", f"spark.master=local[{cores}]",
        "spark.conf={spark.driver.memory: 6g, spark.sql.shuffle.partitions: '16', "
        "spark.databricks.delta.snapshotPartitions: '2'}",
        f"recommend.top_n={TOP_N}", f"recommend.threshold={THRESHOLD}", *args.overrides]
    cfg = load_config(ROOT / "conf" / "local.yaml", overrides)  # the shipped default, these keys aside
    t = time.perf_counter()
    ratings_dir, neighbors, item_ids = make_data(work, args.customers, args.ratings, args.items, args.neighbors, 3)
    print(f"data generated in {time.perf_counter() - t:.0f}s", flush=True)

    # ---- scipy floor (first, before any JVM exists): warm scoring on every core + the cold fit --
    with PeakRss(this_process_tree, total=True) as floor_mem:
        new_ids = np.sort(item_ids[released_days_ago(item_ids) <= cfg.recommend.new.max_age_days])
        floor_warm_s, floor_sample = scipy_floor(ratings_dir, neighbors, work / "floor", cores, new_ids)
        floor_cold_s = floor_cold_fit(ratings_dir, item_ids, cfg.recommend.cold_start)
    floor_s = floor_warm_s + floor_cold_s
    print(f"scipy floor {floor_s:.1f}s (warm {floor_warm_s:.1f}s on {cores} processes, cold fit {floor_cold_s:.1f}s)",
          flush=True)

    # ---- Spark: load the tables (untimed) --------------------------------------------------
    from pyspark.sql import functions as F

    from hybridrec.stages.recommend import run_recommend
    from hybridrec.runtime.session import build_session
    from hybridrec.storage.tables import ensure_table

    spark = build_session(cfg)
    ratings = spark.read.parquet(str(ratings_dir)).select(
        S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP, F.lit("bench").alias(S.SOURCE_FILE),
        F.lit("bench").alias(S.RUN_ID), F.current_timestamp().alias(S.INGESTED_AT))
    ratings.write.format("delta").mode("append").saveAsTable(ensure_table(spark, cfg.storage, S.RATINGS))
    spark.read.parquet(str(neighbors)).select(
        S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, S.RANK, F.array(F.lit("Drama")).alias(S.SHARED_GENRES),
        F.lit("bench").alias(S.RUN_ID)).write.format("delta").mode("append").saveAsTable(
        ensure_table(spark, cfg.storage, S.ITEM_NEIGHBORS))
    items_tbl = ensure_table(spark, cfg.storage, S.ITEMS)
    item_cols = spark.table(items_tbl).schema
    spark.createDataFrame([(int(i),) for i in item_ids], f"{S.ITEM_ID} long").select(*[
        F.col(S.ITEM_ID) if f.name == S.ITEM_ID else
        (F.array(F.lit("Drama")) if f.name == S.GENRES else F.array(F.lit(18)) if f.name == S.GENRE_IDS else
         F.lit("x") if f.name in (S.RECORD_KIND, S.RECORD_HASH, S.SOURCE_FILE, S.RUN_ID) else
         F.current_date() if f.name == S.CRAWL_DATE else F.current_timestamp() if f.name == S.INGESTED_AT else
         F.date_sub(F.current_date(), ((F.col(S.ITEM_ID) * 7919) % AGE_DAYS).cast("int"))
         if f.name == "release_date" else
         F.lit(None)).cast(f.dataType).alias(f.name) for f in item_cols]).write.format("delta").mode("append") \
        .saveAsTable(items_tbl)
    print("tables written", flush=True)

    # ---- the job: the shipped default model (hybrid), its fit included ------------------
    with PeakRss(spark_processes(workers_only=False), total=True) as job_mem, \
            PeakRss(this_process) as driver_mem, PeakRss(local_jvm) as jvm_mem:
        t = time.perf_counter()
        report = run_recommend(spark, cfg)
        job_s = time.perf_counter() - t
    print(f"job {job_s:.1f}s: {report.lines()[0]}", flush=True)
    got = spark.table(cfg.table(S.RECOMMENDATIONS)).filter(F.col(S.CUSTOMER_ID).isin(list(floor_sample))) \
        .select(S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE).collect()
    job_lists: dict[int, list] = {}
    for r in sorted(got, key=lambda r: (r[S.CUSTOMER_ID], r[S.RANK])):
        job_lists.setdefault(r[S.CUSTOMER_ID], []).append((r[S.ITEM_ID], round(r[S.SCORE], 9)))
    same = sum(job_lists.get(c) == lst for c, lst in floor_sample.items())

    # ---- ALS and naive SQL on customer samples of several sizes ---------------------------
    from pyspark.ml.recommendation import ALS

    nb = spark.table(cfg.table(S.ITEM_NEIGHBORS))
    nb.createOrReplaceTempView("nb")
    als_t: list[float] = []
    naive_t: list[float] = []
    als_gb = naive_gb = 0.0
    for frac in samples:
        n_sample = int(args.customers * frac)
        sample = spark.table(cfg.table(S.RATINGS)).filter(F.col(S.CUSTOMER_ID) <= n_sample) \
            .select(F.col(S.CUSTOMER_ID).cast("int").alias("u"), F.col(S.ITEM_ID).cast("int").alias("i"),
                    F.col(S.RATING).cast("float").alias("r")).repartition(cores * 4).persist()
        sample.count()
        with PeakRss(spark_processes(workers_only=False), total=True) as als_mem:
            t = time.perf_counter()
            model = ALS(rank=64, maxIter=10, regParam=0.1, userCol="u", itemCol="i", ratingCol="r", seed=1,
                        coldStartStrategy="drop").fit(sample)
            model.recommendForAllUsers(TOP_N).write.format("noop").mode("overwrite").save()
            als_t.append(time.perf_counter() - t)
        sample.unpersist()
        spark.table(cfg.table(S.RATINGS)).filter(F.col(S.CUSTOMER_ID) <= n_sample).createOrReplaceTempView("r")
        naive_sql = f"""
            WITH cand AS (
              SELECT l.customer_id, n.neighbor_id AS item_id, sum(n.similarity * l.rating) AS score,
                     max_by(l.item_id, n.similarity * l.rating) AS because_item_id
              FROM r l JOIN nb n ON l.item_id = n.item_id WHERE l.rating > {THRESHOLD} GROUP BY 1, 2),
            fresh AS (SELECT c.* FROM cand c LEFT ANTI JOIN r ON c.customer_id = r.customer_id
                      AND c.item_id = r.item_id)
            SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY score DESC, item_id)
                           AS rank FROM fresh) WHERE rank <= {TOP_N}"""
        with PeakRss(spark_processes(workers_only=False), total=True) as naive_mem:
            t = time.perf_counter()
            spark.sql(naive_sql).write.format("noop").mode("overwrite").save()
            naive_t.append(time.perf_counter() - t)
        als_gb, naive_gb = max(als_gb, als_mem.peak / 2 ** 30), max(naive_gb, naive_mem.peak / 2 ** 30)
        print(f"{frac:.0%}: ALS {als_t[-1]:.1f}s, naive {naive_t[-1]:.1f}s", flush=True)
    spark.stop()
    gb = 2 ** 30
    figures = {"customers": args.customers, "ratings": args.ratings, "items": args.items, "job_s": job_s,
               "floor_s": floor_s, "floor_warm_s": floor_warm_s, "floor_cold_s": floor_cold_s,
               "job_peak_gb": job_mem.peak / gb, "jvm_peak_gb": jvm_mem.peak / gb,
               "driver_peak_gb": driver_mem.peak / gb, "floor_peak_gb": floor_mem.peak / gb,
               "same_lists": same, "sampled": len(floor_sample), "model": cfg.recommend.model}
    write_figures(args.out, figures)
    if not samples:  # the scale curves' runs: job and floor only
        write_results(args.out, [
            f"# recommend job vs floor at {args.customers:,} customers x {args.ratings} ratings over {args.items:,} "
            f"items (model {cfg.recommend.model}; no ALS or naive SQL)", "",
            f"job {job_s:.1f} s, floor {floor_s:.1f} s: {job_s / floor_s:.2f}x; peaks: job (JVM + workers) "
            f"{job_mem.peak / gb:.1f} GB, JVM {jvm_mem.peak / gb:.1f} GB, Python driver {driver_mem.peak / gb:.1f} GB, "
            f"floor {floor_mem.peak / gb:.1f} GB; identical lists on {same} of {len(floor_sample)} sampled customers",
            *report.lines(), "", *config_block("recommend", cfg.recommend), "",
            f"headline: recommend_job_vs_scipy_floor {job_s / floor_s:.2f}"])
        return 0
    xs = [args.customers * f for f in samples]
    als_a, als_b, als_res = fitted_line(xs, als_t)
    nv_a, nv_b, nv_res = fitted_line(xs, naive_t)
    als_s, naive_s = als_a + als_b * args.customers, nv_a + nv_b * args.customers

    sizes = ", ".join(f"{f:.0%}" for f in samples)
    lines = [
        f"# Top-{TOP_N} recommendations at scale — {args.customers:,} customers x {args.ratings} ratings over "
        f"{args.items:,} items, top-{args.neighbors} neighbours, CPU ({cores} cores), default model "
        f"{cfg.recommend.model}",
        "",
        f"run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; Spark local[{cores}]; threshold {THRESHOLD}; "
        f"command: `benchmarks/recommend_scale.py --customers {args.customers} --ratings {args.ratings} --items "
        f"{args.items} --neighbors {args.neighbors} --samples {args.samples}"
        + "".join(f" --set {o}" for o in args.overrides) + "`",
        "",
        "| method | seconds | job time / method time | peak RSS (GB) |",
        "|---|---:|---:|---:|",
        f"| recommend job, default `{cfg.recommend.model}` (fit + scoring, Delta in -> Delta out) | {job_s:.1f} | 1.00 | "
        f"{job_mem.peak / gb:.1f} (JVM + workers); JVM {jvm_mem.peak / gb:.1f}, Python driver {driver_mem.peak / gb:.1f} |",
        f"| numpy/scipy floor: same kernel, {cores} processes, Parquet in/out ({floor_warm_s:.1f} s) + the same "
        f"cold-start fit ({floor_cold_s:.1f} s) | {floor_s:.1f} | {job_s / floor_s:.2f} | {floor_mem.peak / gb:.1f} "
        "(all processes) |",
        f"| Spark ALS rank 64, 10 iterations + recommendForAllUsers({TOP_N}) (line through {sizes}) | {als_s:.1f} | "
        f"{job_s / als_s:.2f} | {als_gb:.1f} (largest sample) |",
        f"| naive Spark SQL join/groupBy/window (line through {sizes}) | {naive_s:.1f} | {job_s / naive_s:.3f} | "
        f"{naive_gb:.1f} (largest sample) |",
        "",
        "ALS and naive SQL measured at " + ", ".join(
            f"{f:.0%} ({int(args.customers * f):,} customers): {a:.1f} s / {n:.1f} s" for f, a, n in
            zip(samples, als_t, naive_t)) +
        f"; fitted lines t = a + b x customers: ALS a={als_a:.1f} s, b={als_b * 1e6:.1f} s per 1M, max residual "
        f"{als_res:.1%}; naive a={nv_a:.1f} s, b={nv_b * 1e6:.1f} s per 1M, max residual {nv_res:.1%}",
        f"job vs floor: {job_s / floor_s:.2f}x (goal <= 1.5x); naive / job: {naive_s / job_s:.1f}x (goal >= 10x, "
        f"from the fitted line); ALS / job: {als_s / job_s:.1f}x",
        "The floor does not re-tune min_lift (the job's carve-out of at most "
        f"{cfg.recommend.cold_start.lift_customers:,} customers: split, rating neighbours, one scoring for every "
        "lift); the job's time includes it, so the ratio is an upper bound of the job's overhead. Both write the "
        f"'new for you' lists too ({len(new_ids):,} items released within {cfg.recommend.new.max_age_days} days; the "
        "floor takes the young items only, with no cold scorer: here every item has enough ratings, so the job's "
        "new items are the same and its cold-start model scores none).",
        *report.lines(),
        f"identical top-{TOP_N} lists (items and scores to 1e-9) job vs floor on {len(floor_sample)} sampled "
        f"customers: {same}",
        "",
        *config_block("recommend", cfg.recommend),
        "",
        f"headline: recommend_job_vs_scipy_floor {job_s / floor_s:.2f}",
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
