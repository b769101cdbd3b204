"""TMDB's record formats: the genre table and the parsing of one crawl line.

Pure Python (no Spark) so it is unit-testable and runs unchanged inside ``mapInPandas``.
Two record shapes are accepted, exactly as the TMDB API returns them:

* list results (``/discover/movie``, ``/movie/popular``, ...) with ``genre_ids: [int]``;
* ``/movie/{id}`` details with ``genres: [{"id": int, "name": str}]``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

# TMDB's movie genre table (GET /genre/movie/list). 10769 "Foreign" was retired by TMDB and is
# deliberately absent: records still carrying it are quarantined with a reason.
GENRES: dict[int, str] = {
    28: "Action",
    12: "Adventure",
    16: "Animation",
    35: "Comedy",
    80: "Crime",
    99: "Documentary",
    18: "Drama",
    10751: "Family",
    14: "Fantasy",
    36: "History",
    27: "Horror",
    10402: "Music",
    9648: "Mystery",
    10749: "Romance",
    878: "Science Fiction",
    10770: "TV Movie",
    53: "Thriller",
    10752: "War",
    37: "Western",
}
GENRE_IDS_BY_NAME: dict[str, int] = {v: k for k, v in GENRES.items()}

LIST_RESULT = "list_result"
MOVIE_DETAILS = "movie_details"
MAX_RAW_CHARS = 10_000


@dataclass(frozen=True)
class ParsedRecord:
    """One crawl line, parsed: either ``item`` (a dict of typed columns) or ``reason``."""

    item: dict[str, Any] | None
    reason: str | None


def _bad(reason: str) -> ParsedRecord:
    return ParsedRecord(None, reason)


def _opt_str(rec: dict[str, Any], key: str) -> str | None:
    v = rec.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"{key} is not a string: {v!r}")
    return v


def _opt_float(rec: dict[str, Any], key: str) -> float | None:
    v = rec.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{key} is not a number: {v!r}")
    return float(v)


def _opt_int(rec: dict[str, Any], key: str) -> int | None:
    v = rec.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{key} is not an integer: {v!r}")
    return v


def _genre_ids(rec: dict[str, Any]) -> tuple[list[int], str]:
    if "genres" in rec and rec["genres"] is not None:
        genres = rec["genres"]
        if not isinstance(genres, list) or not all(isinstance(g, dict) for g in genres):
            raise ValueError(f"genres is not a list of {{id, name}} objects: {genres!r}")
        raw = [g.get("id") for g in genres]
        kind = MOVIE_DETAILS
    elif "genre_ids" in rec and rec["genre_ids"] is not None:
        raw = rec["genre_ids"]
        if not isinstance(raw, list):
            raise ValueError(f"genre_ids is not a list: {raw!r}")
        kind = LIST_RESULT
    else:
        raise ValueError("record has neither genre_ids nor genres")
    ids: list[int] = []
    for g in raw:
        if isinstance(g, bool) or not isinstance(g, int):
            raise ValueError(f"genre id is not an integer: {g!r}")
        if g not in GENRES:
            raise ValueError(f"unknown genre id {g} (not in TMDB's 19-genre table; 10769 is retired)")
        ids.append(g)
    return sorted(set(ids)), kind


def record_hash(rec: dict[str, Any]) -> str:
    """sha256 of the record in canonical JSON (sorted keys): equal content, equal hash."""
    canon = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def parse_record(line: str) -> ParsedRecord:
    """Parse and validate one JSON line of a TMDB crawl.

    Returns typed columns for the ``items`` table (without crawl/run bookkeeping), or a
    readable reason for the quarantine. Never raises on bad data.
    """
    text = line.strip()
    if not text:
        return _bad("empty line")
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        return _bad(f"malformed JSON: {exc.msg} at char {exc.pos}")
    if not isinstance(rec, dict):
        return _bad(f"record is not a JSON object but {type(rec).__name__}")
    if rec.get("id") is None:
        return _bad("record has no id")
    item_id = rec["id"]
    if isinstance(item_id, bool) or not isinstance(item_id, int) or item_id <= 0:
        return _bad(f"id is not a positive integer: {item_id!r}")
    try:
        genre_ids, kind = _genre_ids(rec)
        title = _opt_str(rec, "title")
        if not title:
            raise ValueError("record has no title")
        release = _opt_str(rec, "release_date")
        release_date: dt.date | None = None
        if release:
            try:
                release_date = dt.date.fromisoformat(release)
            except ValueError:
                raise ValueError(f"release_date is not a YYYY-MM-DD date: {release!r}") from None
        poster_path = _opt_str(rec, "poster_path")
        if poster_path is not None and (not poster_path.strip("/") or ".." in poster_path):
            raise ValueError(f"poster_path is not a file name: {poster_path!r}")
        adult = rec.get("adult")
        if adult is not None and not isinstance(adult, bool):
            raise ValueError(f"adult is not true/false: {adult!r}")
        item = {
            "item_id": item_id,
            "title": title,
            "original_title": _opt_str(rec, "original_title"),
            "original_language": _opt_str(rec, "original_language"),
            "overview": _opt_str(rec, "overview"),
            "release_date": release_date,
            "release_year": release_date.year if release_date else None,
            "popularity": _opt_float(rec, "popularity"),
            "vote_average": _opt_float(rec, "vote_average"),
            "vote_count": _opt_int(rec, "vote_count"),
            "adult": adult,
            "poster_path": poster_path or None,
            "genre_ids": genre_ids,
            "genres": [GENRES[g] for g in genre_ids],
            "record_kind": kind,
            "record_hash": record_hash(rec),
        }
    except ValueError as exc:
        return _bad(str(exc))
    return ParsedRecord(item, None)
