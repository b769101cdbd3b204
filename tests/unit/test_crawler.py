"""The TMDB crawler against a stub of the API on loopback: paging, 429s (Retry-After in seconds and
as an HTTP date), 5xx, timeouts, broken JSON, a 404 in the middle of a page, resume after an
interruption without duplicates, and a key that never reaches a log."""
from __future__ import annotations

import email.utils
import io
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from hybridrec.config import Config, load_config
from hybridrec.crawl.crawler import Client, RateLimiter, run_crawl
from hybridrec.crawl.layout import FAILURES, MOVIES
from hybridrec.crawl.tmdb import parse_record

ROOT = Path(__file__).resolve().parents[2]
KEY = "canary-key-6f1d2e"  # must never show in a log line
YEARS = {2012: 23, 2013: 5}  # movies per year; 10 per page -> 3 pages and 1 page


def poster_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 12), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


class Stub:
    """The API's behaviour and the faults it injects (each fault once)."""

    def __init__(self) -> None:
        self.movies = {year * 100 + i: year for year, n in YEARS.items() for i in range(n)}
        self.faults = {"/discover/movie?2012:2": "429", "/movie/201203": "500", "/movie/201205": "timeout",
                       "/movie/201207": "broken", "/w342/p201209.jpg": "503", "/movie/201211": "429date"}
        self.always_fail = {"/movie/201301"}  # a movie TMDB keeps failing on: listed in _failures
        self.not_found = {"/movie/201204"}  # a movie listed on a page whose details are gone (404)
        self.hits: dict[str, int] = {}
        self.seen_keys: set[str] = set()
        self.lock = threading.Lock()

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlparse

        url = urlparse(handler.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.seen_keys.add(q.get("api_key", ""))
        fault_key = url.path + (f"?{q.get('primary_release_year')}:{q.get('page')}" if url.path.endswith("discover/movie") else "")
        fault_key = fault_key.replace("/3/", "/").replace("/t/p/", "/")
        with self.lock:
            self.hits[fault_key] = self.hits.get(fault_key, 0) + 1
            fault = self.faults.pop(fault_key, None)
        if fault_key in self.always_fail:
            fault = "500"
        if fault in ("429", "429date"):
            handler.send_response(429)  # Retry-After as seconds, or as an HTTP date 2 s from now
            handler.send_header("Retry-After", "0" if fault == "429" else email.utils.formatdate(time.time() + 2, usegmt=True))
            handler.end_headers()
            return
        if fault_key in self.not_found:
            handler.send_response(404)
            handler.end_headers()
            return
        if fault in ("500", "503"):
            handler.send_response(int(fault))
            handler.end_headers()
            return
        if fault == "timeout":
            time.sleep(0.6)  # longer than the client's timeout
        if url.path.startswith("/t/p/"):
            body, ctype = poster_bytes(), "image/jpeg"
        elif url.path == "/3/discover/movie":
            year, page = int(q["primary_release_year"]), int(q["page"])
            ids = sorted(m for m, y in self.movies.items() if y == year)
            total = max(1, -(-len(ids) // 10))
            results = [{"id": m, "title": f"M{m}", "genre_ids": [18]} for m in ids[(page - 1) * 10: page * 10]]
            body = json.dumps({"page": page, "total_pages": total, "results": results}).encode()
            ctype = "application/json"
        elif url.path.startswith("/3/movie/"):
            m = int(url.path.rsplit("/", 1)[1])
            body = json.dumps({"id": m, "title": f"Movie {m}", "genres": [{"id": 18, "name": "Drama"}],
                               "release_date": f"{self.movies[m]}-05-01", "poster_path": f"/p{m}.jpg",
                               "popularity": 1.5, "vote_average": 6.0, "vote_count": 10}).encode()
            ctype = "application/json"
        else:
            handler.send_response(404)
            handler.end_headers()
            return
        if fault == "broken":
            body = body[: len(body) // 2]
        handler.send_response(200)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture()
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.respond(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def crawl_cfg(tmp_path: Path, base: str) -> Config:
    return load_config(ROOT / "conf" / "local.yaml", [
        f"crawl.out_dir={tmp_path / 'crawl'}", f"crawl.base_url={base}/3", f"crawl.image_base_url={base}/t/p",
        "crawl.first_year=2012", "crawl.last_year=2013", "crawl.max_retries=3", "crawl.backoff_seconds=0.01",
        "crawl.timeout_seconds=0.3", "crawl.requests_per_second=1000", "run.date=2026-11-01"])


def client_for(cfg: Config, fail_after: int | None = None, waits: list[float] | None = None) -> Client:
    cc = cfg.crawl
    waits = [] if waits is None else waits

    class Interrupting(Client):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            if fail_after is not None and self.report.requests >= fail_after:
                raise KeyboardInterrupt("simulated kill")
            return super().get(*args, **kwargs)

    return Interrupting(cc.base_url, KEY, RateLimiter(cc.requests_per_second), cc.timeout_seconds, cc.max_retries,
                        cc.backoff_seconds, sleep=waits.append)  # waits are recorded, not slept


def test_crawl_survives_faults_and_writes_the_ingest_format(tmp_path: Path, stub: tuple[Stub, str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    state, base = stub
    cfg = crawl_cfg(tmp_path, base)
    waits: list[float] = []
    with caplog.at_level(logging.DEBUG):
        report = run_crawl(cfg, client_for(cfg, waits=waits))
    out = tmp_path / "crawl"
    lines = (out / MOVIES).read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert sorted(ids) == sorted(m for m in state.movies if m not in (201301, 201204))  # all but the misses
    assert len(ids) == len(set(ids))
    for line in lines:
        parsed = parse_record(line)
        assert parsed.item is not None and parsed.item["genres"] == ["Drama"], parsed.error
    posters = {p.name for p in (out / "posters").iterdir()}
    assert posters == {f"p{m}.jpg" for m in ids}
    failures = [json.loads(x) for x in (out / FAILURES).read_text().splitlines()]
    assert [f["request"] for f in failures] == ["/movie/201204", "/movie/201301"]
    assert failures[0]["reason"] == "HTTP 404 (not found)" and "HTTP 500" in failures[1]["reason"]
    assert state.hits["/movie/201204"] == 1  # a 404 is a miss, never retried
    # every page is done, the one with the 404 included: a resumed crawl does not stop on it again
    assert sorted(json.loads((out / "_state.json").read_text())["pages_done"]) == ["2012:1", "2012:2", "2012:3", "2013:1"]
    assert report.pages == 4 and report.movies_new == len(ids) and report.failures == 2
    assert report.retries >= 6 + 3  # 2 x 429, 500, timeout, broken JSON, 503, and the 3 retries of 201301
    # Retry-After honoured in both forms: "0" waits nothing, an HTTP date 2 s ahead waits about 2 s
    assert any(0.5 <= w <= 2.5 for w in waits), waits
    assert "HTTP 429" in caplog.text
    assert json.loads((out / "_crawl.json").read_text()) == {"crawl_date": "2026-11-01"}
    assert state.seen_keys == {KEY}
    assert KEY not in caplog.text and "retry" in caplog.text


def test_an_interrupted_crawl_resumes_without_duplicates(tmp_path: Path, stub: tuple[Stub, str]) -> None:
    state, base = stub
    cfg = crawl_cfg(tmp_path, base)
    with pytest.raises(KeyboardInterrupt):
        run_crawl(cfg, client_for(cfg, fail_after=25))
    out = tmp_path / "crawl"
    first = (out / MOVIES).read_text().splitlines()
    assert 0 < len(first) < len(state.movies)
    with (out / MOVIES).open("a") as f:  # a torn line, as a kill during a write leaves
        f.write('{"id": 2012')
    hits_before = dict(state.hits)
    report = run_crawl(cfg, client_for(cfg))
    ids = [json.loads(line)["id"] for line in (out / MOVIES).read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(state.movies) - 2  # all but the 404 and the always-failing one
    assert state.hits["/movie/201204"] == 1  # its page was done before the kill: the resume did not ask again
    assert len(json.loads((out / "_state.json").read_text())["pages_done"]) == 4  # the crawl completed
    assert report.movies_new == len(ids) - len(first)
    # movies crawled before the interruption were not fetched again
    for line in first:
        m = json.loads(line)["id"]
        assert state.hits.get(f"/movie/{m}", 0) == hits_before.get(f"/movie/{m}", 0)


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == pytest.approx([0.25] * 4)


def test_on_databricks_the_key_comes_from_a_secret_scope_through_dbutils(
        tmp_path: Path, stub: tuple[Stub, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A python-wheel task has no dbutils global: the crawler builds it from the session, as on a
    Databricks Runtime (pyspark.dbutils exists only there: a stand-in plays it here)."""
    import sys
    import types

    from pyspark.sql import SparkSession

    asked: list[tuple[str, str]] = []

    class DBUtils:
        def __init__(self, spark: object) -> None:
            assert spark == "the-session"
            self.secrets = self

        def get(self, scope: str, key: str) -> str:
            asked.append((scope, key))
            return KEY

    monkeypatch.setitem(sys.modules, "pyspark.dbutils", types.SimpleNamespace(DBUtils=DBUtils))
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: "the-session"))
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    state, base = stub
    state.faults.clear()
    cfg = load_config(ROOT / "conf" / "cluster.yaml", [  # secrets.tmdb_api_key: {scope: hybridrec, key: tmdb-api-key}
        f"crawl.out_dir={tmp_path / 'crawl'}", f"crawl.base_url={base}/3", f"crawl.image_base_url={base}/t/p",
        "crawl.first_year=2013", "crawl.last_year=2013", "crawl.requests_per_second=1000", "crawl.max_retries=1",
        "crawl.backoff_seconds=0"])
    report = run_crawl(cfg)
    assert asked == [("hybridrec", "tmdb-api-key")] and state.seen_keys == {KEY}
    assert report.movies_new == YEARS[2013] - 1  # all but the always-failing one


def test_outside_databricks_a_secret_scope_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridrec.errors import UserError

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    cfg = load_config(ROOT / "conf" / "cluster.yaml", [f"crawl.out_dir={tmp_path}"])
    with pytest.raises(UserError, match="needs Databricks dbutils"):
        run_crawl(cfg)
