"""Classification metrics against hand-computed cases and a brute force."""
from __future__ import annotations

import numpy as np
import pytest

from hybridrec.metrics.classification import binary_metrics, roc_auc, tune_threshold


def test_roc_auc_hand_cases() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.3])) == pytest.approx(1.0)
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None  # one class only


def test_roc_auc_equals_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200), 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, p) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_binary_metrics_hand_case() -> None:
    m = binary_metrics(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.4, 0.6, 0.1, 0.7]), 0.5)
    assert (m.n, m.positives) == (5, 3)
    assert (m.accuracy, m.precision, m.recall, m.f1) == pytest.approx((0.6, 2 / 3, 2 / 3, 2 / 3))
    assert m.f1_majority == pytest.approx(0.75) and m.f1_random == pytest.approx(0.6)
    minority = binary_metrics(np.array([1, 0, 0]), np.array([0.2, 0.1, 0.0]), 0.5)
    assert minority.f1 == 0.0 and minority.f1_majority == 0.0 and minority.precision == 0.0


def test_tune_threshold_hand_case_and_brute_force() -> None:
    assert tune_threshold(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(0.4)
    assert tune_threshold(np.array([0, 0]), np.array([0.3, 0.2])) == 0.5
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        p = np.round(rng.random(60), 2)
        best = max(binary_metrics(y, p, t).f1 for t in np.unique(p))
        assert binary_metrics(y, p, tune_threshold(y, p)).f1 == pytest.approx(best)
