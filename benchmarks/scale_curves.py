"""Scale curves: the similarity job over growing catalogues and the recommend job over growing
customer counts, each beside its floor, measured (not extrapolated), tabled and plotted.

    $(scripts/bootstrap.sh)/bin/python benchmarks/scale_curves.py \
        [--items 50000,100000,200000] [--customers 250000,500000,1000000,2000000]

Each point is one run of the benchmark that owns it, in its own process, one after another (this
machine has two cores: nothing else runs beside them):

* similarity: ``benchmarks/similarity_blocked.py --items N --lsh-sample 0`` (the job, FAISS exact on
  every core, numpy brute force) - time per item pair scored (the sum over genre blocks of the
  block's size squared), and a projection for TMDB's whole catalogue (about 1M movies) from the
  measured per-pair time with the same genre skew (block sizes grow with the catalogue);
* recommend: ``benchmarks/recommend_scale.py --customers N --samples none`` (the shipped default
  model, its fits included, against the all-core numpy/scipy floor) - time per customer and the
  peak memory of the Python driver, the JVM (driver and executors in local mode) and the floor.

Goals (issue 24): time per customer and per item pair constant within 20% across the curve
(max / min <= 1.2), driver and executor peak memory flat in customers. Both jobs have a fixed cost
(worker start and broadcast; the fits on bounded samples), so the table also gives a fitted line
and the marginal cost between consecutive points. Writes benchmarks/results/scale_curves.md,
scale_curves.png and each point's own results under benchmarks/results/curves/ (``--reuse`` makes
the table and plot again from them); the last line printed is the headline: the larger spread of
the two marginal costs (max / min).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write_results  # noqa: E402

TMDB_MOVIES = 1_000_000
SPREAD_GOAL = 1.2


def run_point(script: str, args: list[str], out: Path, reuse: bool = False) -> dict[str, object]:
    """One benchmark run in its own process; its figures (``<out>.json``). ``reuse``: an earlier
    run's figures when they are there (the table and plot made again, nothing re-measured)."""
    if reuse and Path(str(out) + ".json").is_file():
        return json.loads(Path(str(out) + ".json").read_text())
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out)]
    print("$ " + " ".join(cmd[1:]), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"  done in {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads(Path(str(out) + ".json").read_text())


def spread(values: list[float]) -> float:
    return max(values) / min(values) if values and min(values) > 0 else float("inf")


def line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares t = a + b x: (a, b, the largest relative residual)."""
    import numpy as np

    b, a = np.polyfit(np.array(xs), np.array(ys), 1)
    return float(a), float(b), max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))


def marginal(xs: list[float], ys: list[float]) -> list[float]:
    """(t_i+1 - t_i) / (x_i+1 - x_i) between consecutive points: the cost of one more unit."""
    return [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default="50000,100000,200000")
    ap.add_argument("--customers", default="250000,500000,1000000,2000000")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_curves.md"))
    ap.add_argument("--reuse", action="store_true", help="take each point's figures from an earlier run when present")
    args = ap.parse_args()
    out = Path(args.out)
    points = out.parent / "curves"
    points.mkdir(parents=True, exist_ok=True)
    sim = [run_point("similarity_blocked.py", ["--items", n, "--lsh-sample", "0"], points / f"similarity_{n}.md",
                     args.reuse) for n in args.items.split(",")]
    rec = [run_point("recommend_scale.py", ["--customers", n, "--samples", "none"], points / f"recommend_{n}.md",
                     args.reuse) for n in args.customers.split(",")]

    lines = ["# Scale curves (benchmarks/scale_curves.py)", "",
             f"command: `benchmarks/scale_curves.py --items {args.items} --customers {args.customers}`; "
             "each point is its own run of the benchmark named, one after another on this 2-core machine.", "",
             "## Similarity: exact top-50 inside genre blocks, 512-d", "",
             "| items | item pairs (sum of block sizes squared) | job s | FAISS s | job / FAISS | job ns per pair "
             "| FAISS ns per pair | job peak GB (JVM + workers) | exact |", "|---|---|---|---|---|---|---|---|---|"]
    per_pair = []
    for p in sim:
        pairs = float(p["pairs"])  # type: ignore[arg-type]
        job, faiss = float(p["spark_s"]), float(p["faiss_s"])  # type: ignore[arg-type]
        per_pair.append(job / pairs)
        lines.append(f"| {p['items']:,} | {pairs:,.0f} | {job:.1f} | {faiss:.1f} | {job / faiss:.2f} | "
                     f"{job / pairs * 1e9:.2f} | {faiss / pairs * 1e9:.2f} | {float(p['spark_peak_gb']):.1f} "  # type: ignore[arg-type]
                     f"| {p['exact']} |")
    big = sim[-1]
    scale = TMDB_MOVIES / float(big["items"])  # type: ignore[arg-type]
    tmdb_pairs = float(big["pairs"]) * scale ** 2  # type: ignore[arg-type]
    xs = [float(p["pairs"]) for p in sim]  # type: ignore[arg-type]
    ys = [float(p["spark_s"]) for p in sim]  # type: ignore[arg-type]
    a, b, res = line(xs, ys)
    steps = marginal(xs, ys)
    slowest = max(steps + [b])
    lines += ["", f"Time per item pair: spread {spread(per_pair):.2f} (max / min; goal <= {SPREAD_GOAL}). A line "
              f"t = a + b x pairs through the points: a = {a:.1f} s fixed (worker start, broadcast), b = {b * 1e9:.2f} "
              f"ns per pair (largest residual {res:.0%}); the marginal cost between consecutive points: "
              + ", ".join(f"{m * 1e9:.2f}" for m in steps) + " ns per pair. "
              f"Projection for TMDB's catalogue ({TMDB_MOVIES:,} movies, the same genre skew: every block "
              f"{scale:.0f}x the largest run's, so {tmdb_pairs:,.0f} pairs) at the slowest marginal or fitted per-pair "
              f"time ({slowest * 1e9:.2f} ns): {tmdb_pairs * slowest / 3600:.1f} hours on these 2 cores, "
              f"{tmdb_pairs * slowest / 3600 / 32:.2f} hours on 64 cores if it scales out linearly (tasks are "
              "independent item chunks), against FAISS's "
              f"{tmdb_pairs * float(big['faiss_s']) / float(big['pairs']) / 3600:.1f} hours here.", ""]

    lines += ["## Recommend: the shipped default model, fits included", "",
              "| customers | job s | floor s | job / floor | job ms per customer | floor ms per customer "
              "| Python driver peak GB | JVM peak GB | job peak GB (JVM + workers) | floor peak GB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    per_cust = []
    for p in rec:
        n = float(p["customers"])  # type: ignore[arg-type]
        job, floor = float(p["job_s"]), float(p["floor_s"])  # type: ignore[arg-type]
        per_cust.append(job / n)
        lines.append(f"| {int(n):,} | {job:.1f} | {floor:.1f} | {job / floor:.2f} | {job / n * 1e3:.3f} | "
                     f"{floor / n * 1e3:.3f} | {float(p['driver_peak_gb']):.2f} | {float(p['jvm_peak_gb']):.1f} | "  # type: ignore[arg-type]
                     f"{float(p['job_peak_gb']):.1f} | {float(p['floor_peak_gb']):.1f} |")  # type: ignore[arg-type]
    cx = [float(p["customers"]) for p in rec]  # type: ignore[arg-type]
    cy = [float(p["job_s"]) for p in rec]  # type: ignore[arg-type]
    ca, cb, cres = line(cx, cy)
    csteps = marginal(cx, cy)
    driver = [float(p["driver_peak_gb"]) for p in rec]  # type: ignore[arg-type]
    jvm = [float(p["jvm_peak_gb"]) for p in rec]  # type: ignore[arg-type]
    lines += ["", f"Time per customer: spread {spread(per_cust):.2f} (goal <= {SPREAD_GOAL}); Python driver peak "
              f"spread {spread(driver):.2f}, JVM peak spread {spread(jvm):.2f} over a {spread([float(p['customers']) for p in rec]):.0f}x "  # type: ignore[arg-type]
              "range of customers (the JVM's heap is capped by spark.driver.memory; its peak RSS is what it grew to). "
              f"A line t = a + b x customers: a = {ca:.1f} s fixed (the fits on bounded samples), b = {cb * 1e6:.1f} s "
              f"per million customers (largest residual {cres:.0%}); the marginal cost between consecutive points: "
              + ", ".join(f"{m * 1e6:.1f}" for m in csteps) + " s per million.", ""]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    items = [float(p["items"]) for p in sim]  # type: ignore[arg-type]
    axes[0].plot(items, [float(p["spark_s"]) for p in sim], "o-", label="hybridrec job")  # type: ignore[arg-type]
    axes[0].plot(items, [float(p["faiss_s"]) for p in sim], "s--", label="FAISS exact, all cores")  # type: ignore[arg-type]
    axes[0].set(xlabel="items", ylabel="seconds", title="similarity (top-50 within genre blocks)")
    custs = [float(p["customers"]) for p in rec]  # type: ignore[arg-type]
    axes[1].plot(custs, [float(p["job_s"]) for p in rec], "o-", label="hybridrec job (default model)")  # type: ignore[arg-type]
    axes[1].plot(custs, [float(p["floor_s"]) for p in rec], "s--", label="numpy/scipy floor, all cores")  # type: ignore[arg-type]
    axes[1].set(xlabel="customers", ylabel="seconds", title="recommend")
    axes[2].plot(custs, driver, "o-", label="Python driver")
    axes[2].plot(custs, jvm, "s-", label="JVM (driver + executors)")
    axes[2].plot(custs, [float(p["floor_peak_gb"]) for p in rec], "^--", label="floor (all processes)")  # type: ignore[arg-type]
    axes[2].set(xlabel="customers", ylabel="peak RSS (GB)", title="recommend: peak memory")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=90)
    lines += [f"Plot: {png.name}", "",
              f"headline: scale_curves_worst_marginal_spread {max(spread(steps), spread(csteps)):.2f}"]
    write_results(out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
