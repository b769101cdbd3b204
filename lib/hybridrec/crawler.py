"""TMDB crawler: ``/discover/movie`` by release year, ``/movie/{id}`` details and posters, written
in exactly the crawl format ingest reads (``movies.jsonl`` of detail records + ``posters/`` +
``_crawl.json``).

* **Key**: the configured secret reference (``secrets.tmdb_api_key``, an environment variable by
  default), read at the point of use; a v4 read token goes in an ``Authorization: Bearer``
  header, a v3 key in the ``api_key`` query parameter. URLs are logged without their query, so
  the key never reaches a log line.
* **Rate limit**: at most ``crawl.requests_per_second`` requests (one shared clock).
* **Retries**: 429 (honouring ``Retry-After``), 5xx, timeouts, connection errors and broken JSON
  are retried with exponential backoff up to ``crawl.max_retries``; a request that still fails is
  written to ``_failures.jsonl`` with its reason (nothing silently dropped) and the crawl goes on.
* **Resume**: ``_state.json`` records finished discover pages; the ids already in ``movies.jsonl``
  are skipped, a torn last line from an interrupted run is cut, and posters already on disk are
  not fetched again — a rerun completes the crawl without duplicates.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hybridrec.config import Config, resolve_secret
from hybridrec.errors import UserError
from hybridrec.tmdb import poster_file_name

log = logging.getLogger("hybridrec.crawler")
MOVIES = "movies.jsonl"
STATE = "_state.json"
FAILURES = "_failures.jsonl"
MANIFEST = "_crawl.json"


class TransientError(Exception):
    """A request worth retrying (429, 5xx, timeout, connection error, broken JSON)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class RateLimiter:
    """At most ``rate`` calls per second across threads."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = self.clock()
            if now < self.next_at:
                self.sleep(self.next_at - now)
                now = self.next_at
            self.next_at = now + self.interval


@dataclass
class CrawlReport:
    run_id: str
    pages: int = 0
    movies_new: int = 0
    movies_skipped: int = 0
    posters_new: int = 0
    requests: int = 0
    retries: int = 0
    failures: int = 0
    out_dir: str = ""

    def lines(self) -> list[str]:
        return [f"crawl into {self.out_dir}: {self.pages} discover pages, {self.movies_new} new movies "
                f"({self.movies_skipped} already crawled), {self.posters_new} posters; {self.requests} requests, "
                f"{self.retries} retried, {self.failures} failed (listed in {FAILURES})"]


@dataclass
class Client:
    """HTTP GET with auth, rate limit, retries and backoff."""

    base_url: str
    key: str
    limiter: RateLimiter
    timeout: float = 10.0
    max_retries: int = 5
    backoff: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    report: CrawlReport = field(default_factory=lambda: CrawlReport(""))

    def _request(self, url: str, params: dict[str, Any]) -> bytes:
        headers = {"Accept": "application/json", "User-Agent": "hybridrec-crawler"}
        query = dict(params)
        if self.key.count(".") == 2 and len(self.key) > 60:  # a v4 read access token (JWT)
            headers["Authorization"] = f"Bearer {self.key}"
        elif self.key:
            query["api_key"] = self.key
        full = url + ("?" + urllib.parse.urlencode(query) if query else "")
        req = urllib.request.Request(full, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (https/loopback)
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                raise TransientError(f"HTTP {exc.code}", float(retry_after) if retry_after else None) from None
            raise UserError(f"TMDB answered HTTP {exc.code} for {url}") from None  # 401/404: not retried
        except (socket.timeout, TimeoutError):
            raise TransientError("timeout") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise TransientError("timeout") from None
            raise TransientError(f"connection error: {exc.reason}") from None

    def get(self, path: str, params: dict[str, Any] | None = None, raw: bool = False, base: str | None = None) -> Any:
        """GET base + path; JSON-decoded unless ``raw``. Raises TransientError after the last retry."""
        url = (base or self.base_url).rstrip("/") + path
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            self.report.requests += 1
            try:
                body = self._request(url, params or {})
                if raw:
                    return body
                try:
                    return json.loads(body)
                except ValueError:
                    raise TransientError("broken JSON") from None
            except TransientError as exc:
                if attempt == self.max_retries:
                    raise
                self.report.retries += 1
                wait = exc.retry_after if exc.retry_after is not None else self.backoff * (2 ** attempt)
                log.warning("GET %s: %s; retry %d/%d in %.1fs", url, exc, attempt + 1, self.max_retries, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")


class CrawlStore:
    """The crawl folder: append-only movies.jsonl, posters/, the resume state and the failure list."""

    def __init__(self, out: Path) -> None:
        self.out = out
        (out / "posters").mkdir(parents=True, exist_ok=True)
        self.movies = out / MOVIES
        self.ids = self._load_ids()
        state = json.loads((out / STATE).read_text()) if (out / STATE).exists() else {}
        self.pages_done: set[str] = set(state.get("pages_done", []))
        self.total_pages: dict[str, int] = dict(state.get("total_pages", {}))

    def _load_ids(self) -> set[int]:
        if not self.movies.exists():
            return set()
        data = self.movies.read_bytes()
        if data and not data.endswith(b"\n"):  # a torn last line from an interrupted run
            data = data[: data.rfind(b"\n") + 1]
            self.movies.write_bytes(data)
        return {int(json.loads(line)["id"]) for line in data.decode().splitlines() if line.strip()}

    def add_movie(self, record: dict[str, Any]) -> None:
        with self.movies.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.ids.add(int(record["id"]))

    def page_done(self, key: str, year: int, total_pages: int) -> None:
        self.pages_done.add(key)
        self.total_pages[str(year)] = total_pages
        tmp = self.out / (STATE + ".tmp")
        tmp.write_text(json.dumps({"pages_done": sorted(self.pages_done), "total_pages": self.total_pages}))
        os.replace(tmp, self.out / STATE)  # atomic: a kill never leaves half a state file

    def poster_path(self, poster: str) -> Path:
        return self.out / "posters" / poster_file_name(poster)

    def save_poster(self, poster: str, data: bytes) -> None:
        target = self.poster_path(poster)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def failure(self, what: str, reason: str) -> None:
        with (self.out / FAILURES).open("a") as f:
            f.write(json.dumps({"request": what, "reason": reason,
                                "at": dt.datetime.now(dt.timezone.utc).isoformat()}) + "\n")


def run_crawl(cfg: Config, client: Client | None = None) -> CrawlReport:
    """Crawl every configured release year into ``crawl.out_dir`` (default ``input.crawl_dir``)."""
    cc = cfg.crawl
    out = Path(cc.out_dir or cfg.input.crawl_dir)
    if not str(out):
        raise UserError("crawl needs crawl.out_dir or input.crawl_dir")
    report = CrawlReport(run_id=cfg.run_id, out_dir=str(out))
    if client is None:
        key = resolve_secret(cfg.secrets.tmdb_api_key)
        client = Client(cc.base_url, key, RateLimiter(cc.requests_per_second), cc.timeout_seconds,
                        cc.max_retries, cc.backoff_seconds)
    client.report = report
    store = CrawlStore(out)
    (out / MANIFEST).write_text(json.dumps({"crawl_date": cfg.run_date.isoformat()}))
    for year in range(cc.first_year, cc.last_year + 1):
        page, pages = 1, store.total_pages.get(str(year), 1)
        while page <= min(pages, cc.max_pages):
            key = f"{year}:{page}"
            if key in store.pages_done and str(year) in store.total_pages:
                page += 1
                continue
            params = {"primary_release_year": year, "page": page, "sort_by": "popularity.desc",
                      "include_adult": "false", "language": cc.language}
            try:
                listing = client.get("/discover/movie", params)
            except TransientError as exc:
                store.failure(f"/discover/movie year={year} page={page}", str(exc))
                report.failures += 1
                page += 1
                continue
            pages = int(listing.get("total_pages") or 1)
            for result in listing.get("results") or []:
                _crawl_movie(client, store, report, cc.poster_size, cc.image_base_url, cc.language, result)
            store.page_done(key, year, pages)
            report.pages += 1
            page += 1
    return report


def _crawl_movie(client: Client, store: CrawlStore, report: CrawlReport, size: str, image_base: str,
                 language: str, result: dict[str, Any]) -> None:
    movie_id = int(result["id"])
    if movie_id in store.ids:
        report.movies_skipped += 1
        return
    try:
        details = client.get(f"/movie/{movie_id}", {"language": language})
    except TransientError as exc:
        store.failure(f"/movie/{movie_id}", str(exc))
        report.failures += 1
        return
    poster = details.get("poster_path")
    if poster and not store.poster_path(poster).exists():
        try:
            store.save_poster(poster, client.get(f"/{size}{poster}", raw=True, base=image_base))
            report.posters_new += 1
        except TransientError as exc:  # the movie is kept: ingest quarantines its missing poster
            store.failure(f"poster {poster} of movie {movie_id}", str(exc))
            report.failures += 1
    store.add_movie(details)
    report.movies_new += 1
