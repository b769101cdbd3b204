"""Top-n ranking metrics for one customer's list, in numpy (the reference and the per-customer
kernel that the evaluation job runs inside Spark tasks).

Definitions (k is the list cut-off; ``rel`` is the customer's held-out relevant items, each with
a gain):

* precision@k = hits in the first k / k
* recall@k = hits in the first k / |rel|
* nDCG@k = DCG@k / IDCG@k with DCG@k = sum over positions i = 1..k of gain(item_i) / log2(i + 1);
  gain is the held-out rating (graded, the default) or 1 (binary); IDCG@k is the DCG of the
  best possible list (relevant items by gain, the first min(k, |rel|) of them)
* AP@k = sum over hit positions i <= k of precision@i / min(k, |rel|); MAP@k is its mean
* hit rate@k = 1 when at least one hit in the first k
* novelty@k = mean over the first k items of -log2(p_item), p_item = (training customers who
  rated it + 1) / (training customers + 1)  (self-information: unseen items are the most novel)
* diversity@k (intra-list) = mean cosine distance 1 - cos between the poster vectors of every
  pair among the first k items that have one
* coverage@k = distinct items in all customers' first k / catalogue size (a global metric)

The binary nDCG, precision, recall and MAP agree with Spark's ``RankingMetrics`` (tested).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

PER_CUSTOMER = ("ndcg", "precision", "recall", "map", "hit_rate", "novelty", "diversity")
GLOBAL = ("coverage",)
METRICS = PER_CUSTOMER + GLOBAL


def discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def ndcg_at(ranked: Sequence[int], gains: Mapping[int, float], k: int) -> float:
    """nDCG@k of ``ranked`` against ``gains`` (item -> gain > 0 for relevant items)."""
    if not gains:
        return 0.0
    top = list(ranked)[:k]
    d = discounts(k)
    dcg = float(sum(gains.get(int(item), 0.0) * d[i] for i, item in enumerate(top)))
    ideal = np.sort(np.fromiter(gains.values(), dtype=np.float64))[::-1][:k]
    idcg = float((ideal * d[: len(ideal)]).sum())
    return dcg / idcg if idcg > 0 else 0.0


def precision_at(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    return sum(1 for item in list(ranked)[:k] if int(item) in relevant) / k


def recall_at(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item in list(ranked)[:k] if int(item) in relevant) / len(relevant)


def average_precision_at(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for i, item in enumerate(list(ranked)[:k]):
        if int(item) in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / min(k, len(relevant))


def hit_at(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    return 1.0 if any(int(item) in relevant for item in list(ranked)[:k]) else 0.0


def novelty_at(ranked: Sequence[int], counts: Mapping[int, int], n_customers: int, k: int) -> float:
    top = list(ranked)[:k]
    if not top:
        return 0.0
    p = np.array([(counts.get(int(i), 0) + 1) / (n_customers + 1) for i in top], dtype=np.float64)
    return float((-np.log2(p)).mean())


def diversity_at(ranked: Sequence[int], unit_vectors: Mapping[int, np.ndarray], k: int) -> float:
    """Mean pairwise cosine distance of the first k items that have a (unit-norm) vector; 0 below two."""
    vecs = [unit_vectors[int(i)] for i in list(ranked)[:k] if int(i) in unit_vectors]
    if len(vecs) < 2:
        return 0.0
    m = np.stack(vecs).astype(np.float64)
    sim = m @ m.T
    iu = np.triu_indices(len(vecs), 1)
    return float((1.0 - sim[iu]).mean())


def customer_metrics(ranked: Sequence[int], gains: Mapping[int, float], k: int, counts: Mapping[int, int],
                     n_customers: int, unit_vectors: Mapping[int, np.ndarray]) -> dict[str, float]:
    """Every per-customer metric at k (``gains`` holds the relevant items only)."""
    relevant = set(int(i) for i in gains)
    return {
        "ndcg": ndcg_at(ranked, gains, k),
        "precision": precision_at(ranked, relevant, k),
        "recall": recall_at(ranked, relevant, k),
        "map": average_precision_at(ranked, relevant, k),
        "hit_rate": hit_at(ranked, relevant, k),
        "novelty": novelty_at(ranked, counts, n_customers, k),
        "diversity": diversity_at(ranked, unit_vectors, k),
    }


def coverage_at(lists: Sequence[Sequence[int]], catalogue_size: int, k: int) -> float:
    if catalogue_size <= 0:
        return 0.0
    return len({int(i) for lst in lists for i in list(lst)[:k]}) / catalogue_size


def mean_metrics(lists: Mapping[int, Sequence[int]], gains: Mapping[int, Mapping[int, float]], ks: Sequence[int],
                 counts: Mapping[int, int], n_customers: int, unit_vectors: Mapping[int, np.ndarray],
                 catalogue_size: int) -> dict[tuple[str, int], float]:
    """The reference: mean of every per-customer metric over the customers of ``gains`` (a customer
    without a list scores 0 on accuracy metrics), plus coverage; keyed by (metric, k)."""
    out: dict[tuple[str, int], float] = {}
    customers = sorted(gains)
    for k in ks:
        rows = [customer_metrics(lists.get(c, []), gains[c], k, counts, n_customers, unit_vectors) for c in customers]
        for m in PER_CUSTOMER:
            out[(m, k)] = float(np.mean([r[m] for r in rows])) if rows else 0.0
        out[("coverage", k)] = coverage_at([lists.get(c, []) for c in customers], catalogue_size, k)
    return out
