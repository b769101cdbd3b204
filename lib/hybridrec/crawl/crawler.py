"""TMDB crawler: ``/discover/movie`` by release year, ``/movie/{id}`` details and posters, written
in exactly the crawl format ingest reads (``movies.jsonl`` of detail records + ``posters/`` +
``_crawl.json``).

* **Key**: the configured secret reference (``secrets.tmdb_api_key``, an environment variable by
  default), read at the point of use; a v4 read token goes in an ``Authorization: Bearer``
  header, a v3 key in the ``api_key`` query parameter. URLs are logged without their query, so
  the key never reaches a log line.
* **Rate limit**: at most ``crawl.requests_per_second`` requests (one shared clock).
* **Retries**: one pooled ``requests`` session whose adapter carries urllib3's ``Retry``: 429 and
  5xx (honouring ``Retry-After``, given as seconds or as an HTTP date), timeouts and connection
  errors are retried with exponential backoff up to ``crawl.max_retries`` (a body that is not JSON
  too). Every wait goes through the client, so it is counted, logged without the key, and
  rate-limited. A request that still fails is written to ``_failures.jsonl`` with its reason
  (nothing silently dropped; ingest copies the list into ``quarantine``) and the crawl goes on.
* **Misses**: a 404 (or another 4xx but 401/403/429) for one movie's details or poster is a miss,
  listed in ``_failures.jsonl``; its page is still marked done. A 401/403 stops the crawl with one
  line (the key is wrong), since every further request would fail the same way.
* **Resume**: ``_state.json`` records finished discover pages; the ids already in ``movies.jsonl``
  are skipped, a torn last line from an interrupted run is cut, and posters already on disk are
  not fetched again — a rerun completes the crawl without duplicates.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from hybridrec.config import Config, resolve_secret
from hybridrec.crawl.layout import FAILURES, MANIFEST, MOVIES, POSTERS, STATE, local_poster
from hybridrec.errors import UserError
from hybridrec.runtime.secrets import databricks_dbutils

log = logging.getLogger("hybridrec.crawler")


class TransientError(Exception):
    """A request that still failed after its retries (429, 5xx, timeout, connection error, broken JSON)."""


class Missing(Exception):
    """TMDB has no such resource (404, or another 4xx that retrying cannot change): a miss."""


RETRY_STATUSES = (429, 500, 502, 503, 504)
_KEY_IN_URL = re.compile(r"(api_key=)[^&\s'\"]+")


class RedactKey(logging.Filter):
    """urllib3 logs whole URLs at DEBUG; a v3 key travels in the query, so it is cut out first."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message:
            record.msg, record.args = _KEY_IN_URL.sub(r"\1***", message), ()
        return True


def _redact_urllib3_logs() -> None:
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKey) for f in logger.filters):
            logger.addFilter(RedactKey())


class _Retry(Retry):
    """urllib3's ``Retry`` whose waits go through the client (counted, logged, rate-limited, and a
    sleep the tests can replace), and where a malformed ``Retry-After`` means "use the backoff"."""

    on_wait: Callable[[_Retry, float], None] | None = None

    def new(self, **kw: Any) -> _Retry:
        fresh = super().new(**kw)
        fresh.on_wait = self.on_wait
        return fresh

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)  # seconds, or an HTTP date turned into seconds
        except InvalidHeader:
            return None

    def sleep(self, response: Any = None) -> None:
        wait = self.get_retry_after(response) if (self.respect_retry_after_header and response is not None) else None
        if wait is None:
            wait = self.get_backoff_time()
        if self.on_wait is not None:
            self.on_wait(self, wait)
        elif wait > 0:
            time.sleep(wait)


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
    """HTTP GET with auth, rate limit, retries and backoff, over one pooled session."""

    base_url: str
    key: str
    limiter: RateLimiter
    timeout: float = 10.0
    max_retries: int = 5
    backoff: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    report: CrawlReport = field(default_factory=lambda: CrawlReport(""))
    pool_size: int = 8

    def __post_init__(self) -> None:
        retry = _Retry(total=self.max_retries, connect=self.max_retries, read=self.max_retries,
                       status=self.max_retries, other=0, redirect=5, status_forcelist=RETRY_STATUSES,
                       allowed_methods=frozenset({"GET"}), backoff_factor=self.backoff,
                       respect_retry_after_header=True, raise_on_status=False)
        retry.on_wait = self._waited
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=self.pool_size, pool_maxsize=self.pool_size, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._url = ""
        _redact_urllib3_logs()

    def _waited(self, retry: Retry, wait: float) -> None:
        """urllib3 is about to retry: count it, log it (the URL without its query), wait, take a slot."""
        last = retry.history[-1] if retry.history else None
        why = f"HTTP {last.status}" if last is not None and last.status else str(getattr(last, "error", "") or "error")
        if "timed out" in why.lower():
            why = "timeout"
        self.report.retries += 1
        log.warning("GET %s: %s; retry %d/%d in %.1fs", self._url, why, len(retry.history), self.max_retries, wait)
        if wait > 0:
            self.sleep(wait)
        self.limiter.wait()
        self.report.requests += 1

    def _request(self, url: str, params: dict[str, Any]) -> bytes:
        headers = {"Accept": "application/json", "User-Agent": "hybridrec-crawler"}
        query = dict(params)
        if self.key.count(".") == 2 and len(self.key) > 60:  # a v4 read access token (JWT)
            headers["Authorization"] = f"Bearer {self.key}"
        elif self.key:
            query["api_key"] = self.key
        self._url = url
        try:
            resp = self.session.get(url, params=query, headers=headers, timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise TransientError(f"timeout after {self.max_retries} retries") from None
        except requests.exceptions.ConnectionError as exc:  # urllib3 gave up: timeouts or refused connections
            why = "timeout" if "timed out" in str(exc).lower() else "connection error"
            raise TransientError(f"{why} after {self.max_retries} retries") from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"request failed: {type(exc).__name__}") from None
        code = resp.status_code
        if code in RETRY_STATUSES:
            raise TransientError(f"HTTP {code} after {self.max_retries} retries")
        if code in (401, 403):
            raise UserError(f"TMDB answered HTTP {code} for {url}: check the key (secrets.tmdb_api_key)")
        if code >= 400:
            raise Missing(f"HTTP {code}" + (" (not found)" if code == 404 else ""))
        return bytes(resp.content)

    def get(self, path: str, params: dict[str, Any] | None = None, raw: bool = False, base: str | None = None) -> Any:
        """GET base + path; JSON-decoded unless ``raw``. Raises TransientError once the retries are spent,
        Missing for a 404. HTTP-level retries are urllib3's; a body that is not JSON is fetched again here."""
        url = (base or self.base_url).rstrip("/") + path
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            self.report.requests += 1
            body = self._request(url, params or {})
            if raw:
                return body
            try:
                return json.loads(body)
            except ValueError:
                if attempt == self.max_retries:
                    raise TransientError(f"broken JSON after {self.max_retries} retries") from None
            self.report.retries += 1
            wait = self.backoff * (2 ** attempt)
            log.warning("GET %s: broken JSON; retry %d/%d in %.1fs", url, attempt + 1, self.max_retries, wait)
            self.sleep(wait)
        raise AssertionError("unreachable")


class CrawlStore:
    """The crawl folder: append-only movies.jsonl, posters/, the resume state and the failure list."""

    def __init__(self, out: Path) -> None:
        self.out = out
        (out / POSTERS).mkdir(parents=True, exist_ok=True)
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
        return local_poster(self.out, poster)

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
        key = resolve_secret(cfg.secrets.tmdb_api_key, databricks_dbutils())  # a secret scope on Databricks
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
            except (TransientError, Missing) as exc:
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
    except (TransientError, Missing) as exc:  # a miss: listed, and the page goes on
        store.failure(f"/movie/{movie_id}", str(exc))
        report.failures += 1
        return
    poster = details.get("poster_path")
    if poster and not store.poster_path(poster).exists():
        try:
            store.save_poster(poster, client.get(f"/{size}{poster}", raw=True, base=image_base))
            report.posters_new += 1
        except (TransientError, Missing) as exc:  # the movie is kept: ingest quarantines its missing poster
            store.failure(f"poster {poster} of movie {movie_id}", str(exc))
            report.failures += 1
    store.add_movie(details)
    report.movies_new += 1
