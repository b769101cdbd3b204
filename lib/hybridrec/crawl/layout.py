"""The crawl folder, named once: what the crawler and the demo write and ingest reads.

    <crawl_dir>/movies.jsonl     TMDB records, one JSON object a line (any *.jsonl, *.json, *.ndjson)
    <crawl_dir>/posters/<file>   each record's poster, the file named by its poster_path
    <crawl_dir>/_crawl.json      {"crawl_date": "YYYY-MM-DD"} (optional)
    <crawl_dir>/_state.json      the crawler's resume state; _failures.jsonl what it could not fetch
"""
from __future__ import annotations

from pathlib import Path

MOVIES = "movies.jsonl"
RECORD_SUFFIXES = (".jsonl", ".json", ".ndjson")
POSTERS = "posters"
MANIFEST = "_crawl.json"
STATE = "_state.json"
FAILURES = "_failures.jsonl"
# poster_path -> file name inside posters/, as a SQL regular expression (the leading slashes go)
POSTER_PATH_PREFIX_RE = "^/+"


def poster_file_name(poster_path: str) -> str:
    """The file name a crawl stores a poster under: TMDB's path without the leading slash."""
    return poster_path.lstrip("/")


def posters_dir(crawl_dir: str, configured: str | None = None) -> str:
    """The crawl's posters folder (``input.posters_dir`` when set)."""
    return configured or crawl_dir.rstrip("/") + "/" + POSTERS


def manifest_path(crawl_dir: str) -> str:
    return crawl_dir.rstrip("/") + "/" + MANIFEST


def failures_path(crawl_dir: str) -> str:
    return crawl_dir.rstrip("/") + "/" + FAILURES


def local_poster(crawl_dir: Path, poster_path: str) -> Path:
    """Where a crawl on a local disk keeps ``poster_path``'s file."""
    return crawl_dir / POSTERS / poster_file_name(poster_path)
