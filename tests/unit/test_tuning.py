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
