"""Coordinate search: each parameter in turn takes its best value, every candidate scored once."""
from __future__ import annotations

from hybridrec.models.tuning import best_of, coordinate_search


def test_coordinate_search_finds_the_separable_optimum_and_scores_each_candidate_once() -> None:
    calls: list[tuple[object, object]] = []

    def score(p: dict[str, object]) -> float:
        calls.append((p["a"], p["b"]))
        return -(float(p["a"]) - 3) ** 2 - (float(p["b"]) - 0.1) ** 2  # type: ignore[arg-type]

    best, seen = coordinate_search({"a": 1, "b": 1.0}, {"a": [1, 3, 9], "b": [0.01, 0.1, 1.0]}, score)
    assert best == {"a": 3, "b": 0.1}
    assert len(calls) == len(set(calls)) == len(seen) == 5  # (1,1) (3,1) (9,1) then (3,.01) (3,.1)


def test_ties_go_to_the_first_candidate() -> None:
    assert best_of({"x": 1.0, "y": 1.0, "z": 0.5}) == "x"


def test_the_lift_with_the_best_new_item_recall_within_the_ndcg_loss_wins() -> None:
    from hybridrec.models.hybrid import choose_lift
    inf = float("inf")
    ndcg = {1.0: 0.150, 2.0: 0.1965, 4.0: 0.199, 8.0: 0.1995, inf: 0.200}
    recall = {1.0: 0.40, 2.0: 0.20, 4.0: 0.10, 8.0: 0.0, inf: 0.0}
    grid = [1.0, 2.0, 4.0, 8.0]  # inf is the reference (no new items), not a candidate
    assert choose_lift(ndcg, recall, 0.02, grid) == 2.0  # 0.1965 >= 0.98 x 0.200; 1.0 loses 25%
    assert choose_lift(ndcg, recall, 0.005, grid) == 4.0
    assert choose_lift(ndcg, recall, 0.5, grid) == 1.0
    # no lift finds a held-out new item: the fewest cold items (the largest lift) among those allowed,
    # still exposing new items
    assert choose_lift(ndcg, {k: 0.0 for k in ndcg}, 0.02, grid) == 8.0
    # every lift costs more than allowed: new items are not exposed
    assert choose_lift(ndcg, recall, 0.001, grid) == inf
    # inf as a candidate wins a tie at zero recall
    assert choose_lift(ndcg, {k: 0.0 for k in ndcg}, 0.02, [*grid, inf]) == inf
    # a lift whose nDCG beats the list without new items sets the bar
    assert choose_lift({**ndcg, 1.0: 0.3}, recall, 0.02, grid) == 1.0


def test_carve_out_recall_counts_only_the_customers_with_a_held_out_item_among_the_given() -> None:
    import numpy as np
    import pandas as pd

    from hybridrec.models.tuning import CarveOut
    carve = CarveOut(train=None, rows=pd.DataFrame(), held=None,  # type: ignore[arg-type]
                     gains={1: {10: 1.0, 20: 1.0, 30: 1.0}, 2: {10: 1.0}, 3: {40: 1.0}})
    lists = pd.DataFrame({"customer_id": [1, 1, 1, 2, 3, 3], "rank": [2, 1, 3, 1, 2, 1],
                          "item_id": [20, 99, 30, 10, 41, 40]})
    # cold items 20, 30, 40: customer 1 holds out 20 and 30 (both listed, 30 at rank 3), customer 3 holds out
    # 40 (listed), customer 2 none of them; at k = 2 customer 1 finds only 20 (rank 2)
    assert carve.recall(lists, np.array([20, 30, 40]), 3) == (1.0, 2)
    assert carve.recall(lists, np.array([20, 30, 40]), 2) == (0.75, 2)
    assert carve.recall(lists, np.array([77]), 3) == (0.0, 0)
    # nDCG over every sampled customer: 1 -> hits at ranks 2, 3 of 3 relevant; 2 -> rank 1; 3 -> rank 1
    d = 1 / np.log2(np.arange(2, 5))
    want = np.mean([(d[1] + d[2]) / d.sum(), 1.0, 1.0])
    assert abs(carve.ndcg(lists, 3) - want) < 1e-12


def test_carve_out_metrics_equal_the_per_customer_reference_on_random_lists() -> None:
    """The vectorised nDCG and recall against ndcg_at / recall_at customer by customer (graded gains,
    customers without a list, lists shorter and longer than k, ranks not in row order)."""
    import numpy as np
    import pandas as pd

    from hybridrec.metrics.ranking import ndcg_at, recall_at
    from hybridrec.models.tuning import CarveOut
    rng = np.random.default_rng(3)
    gains = {c: {int(i): float(rng.integers(1, 4)) for i in rng.choice(30, rng.integers(1, 6), replace=False)}
             for c in range(40)}
    rows = []
    for c in range(45):  # customers 40-44 have lists but no gains; 0-4 have gains but no list
        if c < 5:
            continue
        items = rng.choice(30, rng.integers(1, 15), replace=False)
        for r in rng.permutation(len(items)):
            rows.append((c, r + 1, int(items[r])))
    lists = pd.DataFrame(rows, columns=["customer_id", "rank", "item_id"])
    carve = CarveOut(train=None, rows=pd.DataFrame(), gains=gains, held=None)  # type: ignore[arg-type]
    ranked = {c: g.sort_values("rank")["item_id"].tolist() for c, g in lists.groupby("customer_id")}
    for k in (1, 5, 10):
        want = np.mean([ndcg_at(ranked.get(c, []), g, k) for c, g in gains.items()])
        assert abs(carve.ndcg(lists, k) - want) < 1e-12
        among = np.arange(0, 30, 3)
        rel = {c: {i for i in g if i in set(among.tolist())} for c, g in gains.items()}
        rel = {c: r for c, r in rel.items() if r}
        got, n = carve.recall(lists, among, k)
        assert n == len(rel)
        assert abs(got - np.mean([recall_at(ranked.get(c, []), r, k) for c, r in rel.items()])) < 1e-12
