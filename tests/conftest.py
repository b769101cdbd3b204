"""One session-scoped Spark + Delta for the whole suite (local[2], few shuffle partitions, UI off).

Each test module gets its own database (see ``make_cfg``) so tables never leak between tests.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from hybridrec.config import Config, load_config  # noqa: E402
from hybridrec.crawl.demo import DemoCrawl, generate_demo  # noqa: E402

TEST_DEMO = dict(movies=120, customers=40, mean_ratings_per_customer=15, poster_size=(48, 72), seed=11)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hybridrec-data")


@pytest.fixture(scope="session")
def base_overrides(data_dir: Path) -> list[str]:
    return [
        f"storage.data_dir={data_dir}",
        "spark.master=local[2]",
        "spark.conf={spark.sql.shuffle.partitions: '4', spark.default.parallelism: '4', spark.driver.memory: 2g, "
        "spark.databricks.delta.snapshotPartitions: '2'}",
        "demo.enabled=false",
        # the suite's stage tests exercise the paper's machinery (poster neighbours within genre blocks);
        # tests of the default hybrid set recommend.model=hybrid and similarity.rating_weight=1 themselves
        "similarity.rating_weight=0.0",
        "recommend.model=paper",
    ]


@pytest.fixture(scope="session")
def make_cfg(base_overrides: list[str]) -> Callable[..., Config]:
    """Build a test config: ``make_cfg("ingest.min_rating=0.5", database="x")``."""

    def make(*overrides: str, database: str | None = None) -> Config:
        db = database or f"t_{uuid.uuid4().hex[:8]}"
        return load_config(ROOT / "conf" / "local.yaml", [*base_overrides, f"storage.database={db}", *overrides])

    return make


@pytest.fixture(scope="session")
def spark(make_cfg: Callable[..., Config]) -> Iterator[object]:
    from hybridrec.runtime.session import build_session

    session = build_session(make_cfg(database="default_test"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_crawl(tmp_path_factory: pytest.TempPathFactory) -> DemoCrawl:
    """A small seeded demo crawl with every bad-input case (generated once per session)."""
    return generate_demo(tmp_path_factory.mktemp("demo"), max_poster_bytes=256 * 1024, **TEST_DEMO)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_tmdb_key_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    os.environ.setdefault("HYBRIDREC_TEST", "1")
