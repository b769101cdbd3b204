"""Classification metrics in numpy (no scikit-learn): the paper's Table 2 per genre.

Every function takes 1-d arrays for one genre: ``y`` in {0, 1} and ``p`` a score in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinaryMetrics:
    n: int
    positives: int
    threshold: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float | None  # None when the split holds one class only
    f1_majority: float  # F1 of always predicting the split's majority class
    f1_random: float  # expected F1 of guessing positive at the split's base rate


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula, ties counted half."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = np.asarray(p)[order]
    # average ranks over ties
    i = 0
    while i < len(sorted_p):
        j = i
        while j + 1 < len(sorted_p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _prf(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float]:
    tp = float(np.sum(pred & y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    acc = float(np.mean(pred == y)) if len(y) else 0.0
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return acc, prec, rec, f1


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> BinaryMetrics:
    """Accuracy, precision, recall and F1 at ``threshold`` (positive when p >= threshold), ROC-AUC,
    and the two trivial baselines' F1 on the same rows."""
    yb = np.asarray(y).astype(bool)
    acc, prec, rec, f1 = _prf(yb, np.asarray(p) >= threshold)
    n, pos = len(yb), int(yb.sum())
    rate = pos / n if n else 0.0
    f1_majority = 2 * rate / (1 + rate) if rate > 0.5 else 0.0
    return BinaryMetrics(n, pos, threshold, acc, prec, rec, f1, roc_auc(yb, p), f1_majority, rate)


def tune_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold that maximises F1 on (validation) rows; 0.5 when they hold no positive.

    Candidates are the distinct scores; the chosen threshold is the midpoint between the best
    candidate and the next lower score, so it does not sit exactly on a training score.
    """
    yb = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    if not yb.any() or len(p) == 0:
        return 0.5
    order = np.argsort(-p, kind="mergesort")
    sp, sy = p[order], yb[order]
    tp = np.cumsum(sy)
    fp = np.cumsum(~sy)
    last_of_value = np.r_[sp[1:] != sp[:-1], True]  # a threshold admits every row with an equal score
    tp, fp, cand = tp[last_of_value], fp[last_of_value], sp[last_of_value]
    f1 = 2 * tp / (tp + fp + yb.sum())
    best = int(np.argmax(f1))
    lower = cand[best + 1] if best + 1 < len(cand) else 0.0
    return float((cand[best] + lower) / 2.0)
