from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from hybridrec.crawl.tmdb import GENRES, LIST_RESULT, MOVIE_DETAILS, parse_record, record_hash

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def real_records() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "tmdb_samples.jsonl").read_text().splitlines()]


def test_genre_table_is_tmdbs_19() -> None:
    assert len(GENRES) == 19 and GENRES[18] == "Drama" and 10769 not in GENRES


def test_real_list_result() -> None:
    rec = real_records()[1]  # Ad Astra, /movie/popular
    parsed = parse_record(json.dumps(rec))
    assert parsed.reason is None and parsed.item is not None
    item = parsed.item
    assert item["item_id"] == 419704 and item["title"] == "Ad Astra"
    assert item["genre_ids"] == [18, 878] and item["genres"] == ["Drama", "Science Fiction"]
    assert item["release_date"] == dt.date(2019, 9, 17) and item["release_year"] == 2019
    assert item["record_kind"] == LIST_RESULT and item["poster_path"] == "/xBHvZcjRiWyobQ9kxBhO6B2dtRI.jpg"
    assert item["vote_count"] == 3547 and item["popularity"] == pytest.approx(581.092)


def test_real_movie_details() -> None:
    rec = real_records()[2]  # Toy Story, /movie/{id}
    item = parse_record(json.dumps(rec)).item
    assert item is not None
    assert item["record_kind"] == MOVIE_DETAILS and item["genre_ids"] == [16, 35, 10751]
    assert item["genres"] == ["Animation", "Comedy", "Family"]


def test_hash_ignores_key_order_but_not_content() -> None:
    rec = real_records()[0]
    shuffled = dict(reversed(list(rec.items())))
    assert record_hash(rec) == record_hash(shuffled)
    assert record_hash(rec) != record_hash({**rec, "title": "changed"})


def _with(**changes: object) -> str:
    rec = real_records()[0]
    rec.update(changes)
    return json.dumps({k: v for k, v in rec.items() if v != "__drop__"})


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"id": 1, "title": "x", "genre_ids": [18', "malformed JSON"),
        ("[1, 2]", "record is not a JSON object but list"),
        ("   ", "empty line"),
        (_with(id="__drop__"), "record has no id"),
        (_with(id=None), "record has no id"),
        (_with(id="123"), "id is not a positive integer: '123'"),
        (_with(id=-5), "id is not a positive integer: -5"),
        (_with(genre_ids=[18, 10769]), "unknown genre id 10769"),
        (_with(genre_ids="18"), "genre_ids is not a list"),
        (_with(genre_ids="__drop__"), "record has neither genre_ids nor genres"),
        (_with(title=""), "record has no title"),
        (_with(release_date="2023-13-45"), "release_date is not a YYYY-MM-DD date"),
        (_with(popularity="high"), "popularity is not a number"),
        (_with(poster_path="/../../etc/passwd"), "poster_path is not a file name"),
    ],
)
def test_bad_records_get_a_reason(line: str, reason: str) -> None:
    parsed = parse_record(line)
    assert parsed.item is None
    assert parsed.reason is not None and reason in parsed.reason


def test_empty_release_date_and_missing_poster_are_fine() -> None:
    item = parse_record(_with(release_date="", poster_path=None)).item
    assert item is not None and item["release_date"] is None and item["poster_path"] is None
