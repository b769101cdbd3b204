"""Embedding throughput: the Spark embed job vs the bare Keras model, same images, same run.

    $(scripts/bootstrap.sh)/bin/python benchmarks/embed_throughput.py [--images 320] [--size 224]

Both sides decode the same poster JPEGs, resize to --size, and run VGG19 (block5_pool, avg).
Weights: ImageNet when Keras's cache has them, else seeded random (same FLOPs; the table says
which). Both are timed in steady state: the bare model after one warm-up batch, the job after a
warm-up run that builds the model in each Python worker (it stays cached there), so the ratio
measures per-image cost, the figure that matters for a large crawl. Peak RSS is sampled from
the driver (bare) and from every Spark Python worker (job). The same script runs unchanged on
a GPU machine (TensorFlow then places the model on the GPU).

Writes benchmarks/results/embed_throughput.md; the last line printed is the headline.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from hybridrec import schemas as S  # noqa: E402
from hybridrec.features.backbones import IMAGENET_FILES, Extractor, ModelSpec, keras_home  # noqa: E402
from hybridrec.config import load_config  # noqa: E402
from hybridrec.crawl.demo import _genre_style, _sample_genres, render_poster  # noqa: E402
from hybridrec.features.images import decode_for_cnn  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from hybridrec.testing.memory import PeakRss, spark_processes, this_process  # noqa: E402


def make_posters(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    style = _genre_style(rng)
    return [render_poster(_sample_genres(rng), 300, 450, rng, style) for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="Spark local[N] (default: all cores)")
    ap.add_argument("--tf-threads", type=int, default=0,
                    help="embed.tf_threads: intra-op threads per worker (default 0 = TensorFlow's own, as the product)")
    ap.add_argument("--chunks", type=int, default=4, help="commits of the chunked run (embed.commit_every = images / chunks)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "embed_throughput.md"))
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    workers = args.workers or cores
    have_imagenet = (keras_home() / "models" / IMAGENET_FILES[("vgg19", False)]).is_file()
    weights = "imagenet" if have_imagenet else "random"
    data = Path(tempfile.mkdtemp(prefix="hybridrec-bench-"))
    overrides = [
        f"storage.data_dir={data}", f"spark.master=local[{workers}]", "storage.database=bench", "run.id=bench",
        f"embed.backbones=[{{name: vgg19, weights: {weights}}}]", f"embed.input_size={args.size}",
        f"embed.batch_size={args.batch}", f"embed.arrow_batch_size={args.batch * 2}",
        f"embed.tf_threads={args.tf_threads}",
        "spark.conf={spark.sql.shuffle.partitions: '4', spark.databricks.delta.snapshotPartitions: '2', "
        "spark.driver.memory: 2g}",
    ]
    cfg = load_config(ROOT / "conf" / "local.yaml", overrides)
    spec = ModelSpec.from_conf(cfg.embed)
    posters = make_posters(args.images, seed=1)
    warm = make_posters(max(workers * 2, 4), seed=2)

    # ---- bare Keras model in this process ----------------------------------------------
    with PeakRss(this_process) as bare_mem:
        extractor = Extractor(spec)
        extractor(np.stack([decode_for_cnn(b, args.size, "pad") for b in warm[:2]]), batch_size=args.batch)
        t0 = time.perf_counter()
        batch = np.stack([decode_for_cnn(b, args.size, "pad") for b in posters])
        bare_vecs = extractor(batch, batch_size=args.batch)
        bare_s = time.perf_counter() - t0
    del extractor, batch

    # ---- the Spark embed job ------------------------------------------------------------
    from hybridrec.stages.embed import run_embed
    from hybridrec.runtime.session import build_session
    from hybridrec.storage.tables import ensure_table

    spark = build_session(cfg)

    def load(images: list[bytes], base: int) -> None:
        rows = [(base + i, f"/{base + i}.jpg", b, hashlib.sha256(b).hexdigest(), 300, 450, "JPEG", len(b),
                 dt.date(2026, 11, 1), f"/{base + i}.jpg", "bench", dt.datetime(2026, 11, 1)) for i, b in enumerate(images)]
        ensure_table(spark, cfg.storage, S.POSTERS)
        spark.createDataFrame(rows, S.POSTERS_SCHEMA).repartition(workers).write.format("delta") \
            .mode("append").saveAsTable(cfg.table(S.POSTERS))

    load(warm, 900_000)
    run_embed(spark, cfg)  # warm-up: every Python worker builds and caches the model
    load(posters, 0)
    with PeakRss(spark_processes(workers_only=True)) as job_mem:
        report = run_embed(spark, cfg)
    job_s = report.seconds
    assert report.computed == args.images, report.lines()
    got = {r["item_id"]: np.array(r["vector"], np.float32) for r in spark.table(cfg.table(S.ITEM_EMBEDDINGS))
           .filter(f"item_id < 900000 AND model_key = '{spec.key}'").collect()}
    rerun = run_embed(spark, cfg)  # incremental: finds nothing to do; its time is the per-run fixed cost
    assert rerun.computed == 0, rerun.lines()
    # the same images again under new ids, committed in 4 chunks (embed.commit_every): what resumable
    # commits cost against the one-commit run above
    chunk = max(1, args.images // args.chunks)
    chunked_cfg = load_config(ROOT / "conf" / "local.yaml", [*overrides, f"embed.commit_every={chunk}"])
    load(posters, 500_000)
    chunked = run_embed(spark, chunked_cfg)
    assert chunked.computed == args.images and chunked.chunks == -(-args.images // chunk), chunked.lines()
    max_diff = float(np.max(np.abs(np.stack([got[i] for i in range(args.images)]) - bare_vecs)))

    bare_rate, job_rate = args.images / bare_s, args.images / job_s
    ratio = job_rate / bare_rate
    device = "GPU" if _has_gpu() else f"CPU ({cores} cores)"
    lines = [
        f"# Embedding throughput — VGG19 block5_pool/avg, {args.size}x{args.size}, {args.images} posters, {device}",
        "",
        f"weights: {spec.weights_label}; Spark local[{workers}], TF intra-op threads per worker: "
        f"{args.tf_threads or 'TensorFlow default'}; "
        f"run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "| method | seconds | images/s | ratio vs bare | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
        f"| bare Keras model, one process | {bare_s:.1f} | {bare_rate:.2f} | 1.00 | {bare_mem.peak / 2**20:.0f} |",
        f"| Spark embed job (iterator pandas UDF) | {job_s:.1f} | {job_rate:.2f} | {ratio:.2f} | "
        f"{job_mem.peak / 2**20:.0f} per worker |",
        f"| Spark embed job, {chunked.chunks} commits (embed.commit_every={chunk}) | {chunked.seconds:.1f} | "
        f"{args.images / chunked.seconds:.2f} | {args.images / chunked.seconds / bare_rate:.2f} | - |",
        f"| rerun of the job, nothing new to embed | {rerun.seconds:.1f} | - | - | - |",
        "",
        f"max |job - bare| over all vector entries: {max_diff:.2e}; cost of {chunked.chunks} commits against one: "
        f"{(chunked.seconds / job_s - 1) * 100:+.1f}% time (goal <= 5%)",
        "",
        "Config: " + ", ".join(f"{k}={v}" for k, v in vars(args).items()) + "; " + "; ".join(overrides),
        "",
        f"headline: embed_job_vs_bare_model {ratio:.2f}",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    (out.with_suffix(".json")).write_text(json.dumps({"bare_images_per_s": bare_rate, "job_images_per_s": job_rate,
                                                       "ratio": ratio, "device": device, "size": args.size,
                                                       "images": args.images, "weights": spec.weights_label}))
    print("\n".join(lines))
    spark.stop()
    return 0


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


if __name__ == "__main__":
    sys.exit(main())
