"""The TMDB crawler against a stub of the API on loopback: paging, 429s, 5xx, timeouts, broken
JSON, resume after an interruption without duplicates, and a key that never reaches a log."""
from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from hybridrec.config import Config, load_config
from hybridrec.crawler import FAILURES, MOVIES, Client, RateLimiter, run_crawl
from hybridrec.tmdb import parse_record

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
                       "/movie/201207": "broken", "/w342/p201209.jpg": "503"}
        self.always_fail = {"/movie/201301"}  # a movie TMDB keeps failing on: listed in _failures
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
        if fault == "429":
            handler.send_response(429)
            handler.send_header("Retry-After", "0")
            handler.end_headers()
            return
        if fault in ("500", "503"):
            handler.send_response(int(fault))
            handler.end_headers()
            return
        if fault == "timeout":
            import time

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


def client_for(cfg: Config, fail_after: int | None = None) -> Client:
    cc = cfg.crawl

    class Interrupting(Client):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            if fail_after is not None and self.report.requests >= fail_after:
                raise KeyboardInterrupt("simulated kill")
            return super().get(*args, **kwargs)

    return Interrupting(cc.base_url, KEY, RateLimiter(cc.requests_per_second), cc.timeout_seconds, cc.max_retries,
                        cc.backoff_seconds)


def test_crawl_survives_faults_and_writes_the_ingest_format(tmp_path: Path, stub: tuple[Stub, str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    state, base = stub
    cfg = crawl_cfg(tmp_path, base)
    with caplog.at_level(logging.DEBUG):
        report = run_crawl(cfg, client_for(cfg))
    out = tmp_path / "crawl"
    lines = (out / MOVIES).read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert sorted(ids) == sorted(m for m in state.movies if m != 201301)  # all but the always-failing one
    assert len(ids) == len(set(ids))
    for line in lines:
        parsed = parse_record(line)
        assert parsed.item is not None and parsed.item["genres"] == ["Drama"], parsed.error
    posters = {p.name for p in (out / "posters").iterdir()}
    assert posters == {f"p{m}.jpg" for m in ids}
    failures = [json.loads(x) for x in (out / FAILURES).read_text().splitlines()]
    assert [f["request"] for f in failures] == ["/movie/201301"] and "HTTP 500" in failures[0]["reason"]
    assert report.pages == 4 and report.movies_new == len(ids) and report.failures == 1
    assert report.retries >= 5 + 3  # 429, 500, timeout, broken JSON, 503, and the 3 retries of 201301
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
    assert len(ids) == len(set(ids)) == len(state.movies) - 1
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
