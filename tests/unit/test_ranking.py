"""Ranking metrics against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hybridrec.metrics import ranking as R

LOG2_3 = math.log2(3)


def test_ndcg_binary_hand_case() -> None:
    # relevant {2, 5}; list [1, 2, 3, 5]: hits at positions 2 and 4
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert R.ndcg_at([1, 2, 3, 5], {2: 1.0, 5: 1.0}, 4) == pytest.approx(dcg / idcg)
    assert R.ndcg_at([1, 2, 3, 5], {2: 1.0, 5: 1.0}, 2) == pytest.approx((1 / LOG2_3) / idcg)
    assert R.ndcg_at([2, 5], {2: 1.0, 5: 1.0}, 10) == pytest.approx(1.0)
    assert R.ndcg_at([7, 8], {2: 1.0}, 10) == 0.0
    assert R.ndcg_at([7, 8], {}, 10) == 0.0


def test_ndcg_graded_uses_the_rating_as_gain_and_the_ideal_order() -> None:
    gains = {10: 5.0, 20: 4.0}
    # list puts the 4-star first: DCG = 4 + 5/log2(3); ideal = 5 + 4/log2(3)
    assert R.ndcg_at([20, 10], gains, 2) == pytest.approx((4 + 5 / LOG2_3) / (5 + 4 / LOG2_3))
    assert R.ndcg_at([10, 20], gains, 2) == pytest.approx(1.0)
    # k = 1 with the best item missing: ideal takes only the top gain
    assert R.ndcg_at([20], gains, 1) == pytest.approx(4 / 5)


def test_precision_recall_hit_and_average_precision_hand_cases() -> None:
    ranked, rel = [3, 1, 4, 9, 2], {1, 2, 7}
    assert R.precision_at(ranked, rel, 5) == pytest.approx(2 / 5)
    assert R.precision_at(ranked, rel, 2) == pytest.approx(1 / 2)
    assert R.recall_at(ranked, rel, 5) == pytest.approx(2 / 3)
    assert R.hit_at(ranked, rel, 1) == 0.0 and R.hit_at(ranked, rel, 2) == 1.0
    # hits at 2 (precision 1/2) and 5 (precision 2/5), divided by min(k, |rel|) = 3
    assert R.average_precision_at(ranked, rel, 5) == pytest.approx((1 / 2 + 2 / 5) / 3)
    assert R.average_precision_at(ranked, rel, 2) == pytest.approx((1 / 2) / 2)
    assert R.precision_at([1], rel, 10) == pytest.approx(0.1)  # a short list still divides by k


def test_novelty_and_diversity_hand_cases() -> None:
    counts = {1: 3, 2: 0}
    # p1 = 4/8, p2 = 1/8 with 7 training customers
    assert R.novelty_at([1, 2], counts, 7, 10) == pytest.approx((1 + 3) / 2)
    e = np.eye(3)
    vecs = {1: e[0], 2: e[1], 3: e[0]}
    # pairs (1,2): 1, (1,3): 0, (2,3): 1 ; item 4 has no vector
    assert R.diversity_at([1, 2, 3, 4], vecs, 10) == pytest.approx(2 / 3)
    assert R.diversity_at([1, 4], vecs, 10) == 0.0


def test_coverage_and_the_mean_over_customers() -> None:
    lists = {1: [10, 11], 2: [11, 12], 3: []}
    assert R.coverage_at(list(lists.values()), 10, 1) == pytest.approx(2 / 10)
    assert R.coverage_at(list(lists.values()), 10, 2) == pytest.approx(3 / 10)
    gains = {1: {11: 1.0}, 2: {99: 1.0}, 3: {10: 1.0}}  # customer 3 has no list: zeros
    out = R.mean_metrics(lists, gains, [2], {}, 5, {}, 10)
    assert out[("precision", 2)] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert out[("recall", 2)] == pytest.approx(1 / 3)
    assert out[("coverage", 2)] == pytest.approx(3 / 10)
