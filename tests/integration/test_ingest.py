"""Ingest of the demo crawl into Delta: counts, quarantine reasons, idempotent reruns, a second crawl."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.crawl.demo import BAD_CASES, DemoCrawl, render_poster, _genre_style
from hybridrec.errors import UserError
from hybridrec.stages.ingest import (POSTER_BYTES_PER_TASK, IngestReport, list_poster_files, poster_tasks,
                              read_poster_bytes, run_ingest)

pytestmark = pytest.mark.stage  # every test reads the ingest stage run on the demo crawl

MAX_BYTES = 256 * 1024


def versions(spark: SparkSession, cfg: Config) -> dict[str, int]:
    return {t: DeltaTable.forName(spark, cfg.table(t)).history(1).first()["version"]
            for t in (S.ITEMS, S.POSTERS, S.RATINGS, S.QUARANTINE)}


@pytest.fixture(scope="module")
def cfg(make_cfg: Callable[..., Config], demo_crawl: DemoCrawl) -> Config:
    return make_cfg(f"input.crawl_dir={demo_crawl.crawl_dir}", f"input.ratings_path={demo_crawl.ratings_path}",
                    f"ingest.max_poster_bytes={MAX_BYTES}", "run.id=r1")


@pytest.fixture(scope="module")
def first(spark: SparkSession, cfg: Config) -> IngestReport:
    return run_ingest(spark, cfg)


def test_counts_add_up_and_match_the_tables(spark: SparkSession, cfg: Config, first: IngestReport,
                                            demo_crawl: DemoCrawl) -> None:
    lines = (demo_crawl.crawl_dir / "movies.jsonl").read_text().splitlines()
    assert first.items.read == len(lines)
    assert first.ratings.read == demo_crawl.ratings + 1 - 1  # every data row of the CSV (header excluded)
    for c in (first.items, first.posters, first.ratings):
        assert c.read == c.inserted + c.quarantined and c.updated == c.unchanged == 0
    assert spark.table(cfg.table(S.ITEMS)).count() == first.items.inserted == demo_crawl.movies + 6
    assert spark.table(cfg.table(S.POSTERS)).count() == first.posters.inserted
    assert spark.table(cfg.table(S.RATINGS)).count() == first.ratings.inserted
    by_stage = {r["stage"]: r["count"] for r in spark.table(cfg.table(S.QUARANTINE)).groupBy("stage").count().collect()}
    assert by_stage == {"ingest.items": first.items.quarantined, "ingest.posters": first.posters.quarantined,
                        "ingest.ratings": first.ratings.quarantined, "ingest.crawl": first.crawl_misses}
    assert first.crawl_misses == 1  # the crawler's _failures.jsonl line (and no crawl record read from it)


INGEST_CASES = sorted(c for c, (stage, _) in BAD_CASES.items() if stage.startswith("ingest."))


@pytest.mark.parametrize("case", INGEST_CASES)
def test_every_bad_input_is_quarantined_with_its_reason(spark: SparkSession, cfg: Config, first: IngestReport,
                                                        case: str) -> None:
    stage, reason = BAD_CASES[case]
    rows = spark.table(cfg.table(S.QUARANTINE)).filter(f"stage = '{stage}' AND run_id = 'r1'").collect()
    hits = [r for r in rows if reason in r["reason"]]
    assert len(hits) == 1, (case, [r["reason"] for r in rows])
    assert hits[0]["source_file"] and hits[0]["record"]


def test_quarantine_has_no_unexplained_rows(spark: SparkSession, cfg: Config, first: IngestReport) -> None:
    total = spark.table(cfg.table(S.QUARANTINE)).count()
    assert total == len(INGEST_CASES)  # the embed stage's case (a strip) is a valid image: kept here


def test_tables_are_typed_and_commented(spark: SparkSession, cfg: Config, first: IngestReport) -> None:
    items = spark.table(cfg.table(S.ITEMS))
    assert items.schema.fieldNames() == S.ITEMS_SCHEMA.fieldNames()
    assert [f.dataType for f in items.schema] == [f.dataType for f in S.ITEMS_SCHEMA]
    described = {r["col_name"]: r["comment"] for r in spark.sql(f"DESCRIBE TABLE {cfg.table(S.ITEMS)}").collect()}
    assert described["crawl_date"] == "Date of the crawl this version of the record came from"
    detail = spark.sql(f"DESCRIBE TABLE EXTENDED {cfg.table(S.QUARANTINE)}").collect()
    assert any(r["col_name"] == "Comment" and "nothing is dropped silently" in r["data_type"] for r in detail)
    row = items.filter("size(genres) > 1").first()
    assert row is not None and len(row["genres"]) == len(row["genre_ids"])
    assert str(row["crawl_date"]) == "2026-11-01" and row["run_id"] == "r1"


def test_posters_are_decoded_and_hashed(spark: SparkSession, cfg: Config, first: IngestReport) -> None:
    rows = spark.table(cfg.table(S.POSTERS)).limit(20).collect()
    for r in rows:
        assert (r["width"], r["height"], r["format"]) == (48, 72, "JPEG")
        assert r["content_hash"] == hashlib.sha256(bytes(r["image"])).hexdigest()
        assert r["byte_size"] == len(r["image"])


def test_small_posters_are_decoded_in_few_tasks(spark: SparkSession, demo_crawl: DemoCrawl, tmp_path: Path) -> None:
    """Spark's file splitting charges each file a 4 MB open cost: small posters would be decoded 32
    to a Python task. The read is coalesced to one task per 64 MB, at least one per core."""
    for k in range(4):  # a crawl of ~500 small posters
        for f in (demo_crawl.crawl_dir / "posters").iterdir():
            shutil.copyfile(f, tmp_path / f"{k}_{f.name}")
    posters = str(tmp_path)
    _, total = list_poster_files(spark, posters)
    assert total == sum(p.stat().st_size for p in tmp_path.iterdir())
    split = spark.read.format("binaryFile").load(posters).rdd.getNumPartitions()
    tasks = read_poster_bytes(spark, posters, MAX_BYTES, total).rdd.getNumPartitions()
    assert tasks == poster_tasks(total, spark.sparkContext.defaultParallelism) < split
    assert poster_tasks(0, 3) == 3 and poster_tasks(5 * POSTER_BYTES_PER_TASK + 1, 3) == 6


def test_duplicate_rating_keeps_the_newest(spark: SparkSession, cfg: Config, first: IngestReport) -> None:
    rows = spark.table(cfg.table(S.RATINGS)).filter("customer_id = 3").collect()
    assert [(r["rating"], r["timestamp"].isoformat()) for r in rows] == [(4.0, "2025-01-02T00:00:00")]


@pytest.fixture(scope="module")
def rerun(spark: SparkSession, cfg: Config, first: IngestReport) -> tuple[IngestReport, dict, dict]:
    before = versions(spark, cfg)
    report = run_ingest(spark, cfg)
    return report, before, versions(spark, cfg)


def test_rerunning_the_same_crawl_changes_no_data(rerun: tuple[IngestReport, dict, dict], first: IngestReport) -> None:
    report, before, after = rerun
    assert before == after  # no new version in any table: history shows nothing happened
    for name in ("items", "posters", "ratings"):
        c, f = getattr(report, name), getattr(first, name)
        assert (c.inserted, c.updated, c.unchanged, c.quarantined) == (0, 0, f.inserted, f.quarantined)


def _second_crawl(src: Path, dst: Path) -> dict[str, Any]:
    shutil.copytree(src, dst)
    lines = (dst / "movies.jsonl").read_text().splitlines()
    good = [json.loads(line) for line in lines[:100]]
    changed = good[:3]
    for rec in changed:
        rec["title"] = rec["title"] + " (Director's Cut)"
        rec["popularity"] = 99.0
    new_poster_item = good[3]
    style = _genre_style(__import__("numpy").random.default_rng(1))
    rng = __import__("numpy").random.default_rng(2)
    (dst / "posters" / new_poster_item["poster_path"].lstrip("/")).write_bytes(
        render_poster([27, 53], 48, 72, rng, style))
    new = []
    for k in range(2):
        rec = dict(good[10 + k], id=990_000 + k, title=f"Brand New {k}", poster_path=f"/brandNewPoster{k}.jpg")
        (dst / "posters" / f"brandNewPoster{k}.jpg").write_bytes(render_poster([35], 48, 72, rng, style))
        new.append(rec)
    (dst / "movies.jsonl").write_text("\n".join(json.dumps(r) for r in changed + [new_poster_item] + new) + "\n")
    (dst / "_crawl.json").write_text(json.dumps({"crawl_date": "2026-11-20"}))
    return {"changed": [r["id"] for r in changed], "new": [r["id"] for r in new], "poster": new_poster_item["id"]}


def test_second_crawl_changes_only_changed_and_new_rows(spark: SparkSession, cfg: Config, rerun: Any,
                                                        demo_crawl: DemoCrawl, tmp_path: Path,
                                                        make_cfg: Callable[..., Config]) -> None:
    ids = _second_crawl(demo_crawl.crawl_dir, tmp_path / "crawl2")
    cfg2 = make_cfg(f"input.crawl_dir={tmp_path / 'crawl2'}", f"input.ratings_path={demo_crawl.ratings_path}",
                    f"ingest.max_poster_bytes={MAX_BYTES}", "run.id=r2", database=cfg.storage.database)
    before_items = {r["item_id"]: r.asDict() for r in spark.table(cfg.table(S.ITEMS)).collect()}
    report = run_ingest(spark, cfg2)
    assert (report.items.read, report.items.inserted, report.items.updated, report.items.unchanged) == (6, 2, 3, 1)
    assert (report.posters.inserted, report.posters.updated, report.posters.unchanged) == (2, 1, 3)
    assert report.ratings.inserted == report.ratings.updated == 0
    after_items = {r["item_id"]: r.asDict() for r in spark.table(cfg.table(S.ITEMS)).collect()}
    touched = {k for k in after_items if after_items[k] != before_items.get(k)}
    assert touched == set(ids["changed"]) | set(ids["new"])
    for k in ids["changed"]:
        assert after_items[k]["title"].endswith("(Director's Cut)") and after_items[k]["run_id"] == "r2"
        assert str(after_items[k]["crawl_date"]) == "2026-11-20"
    metrics = DeltaTable.forName(spark, cfg.table(S.ITEMS)).history(1).first()["operationMetrics"]
    assert (metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"]) == ("2", "3")
    poster = spark.table(cfg.table(S.POSTERS)).filter(f"item_id = {ids['poster']}").first()
    assert poster["run_id"] == "r2"

    # an OLDER crawl of changed content never overwrites the newer one
    (tmp_path / "crawl2" / "_crawl.json").write_text(json.dumps({"crawl_date": "2026-10-01"}))
    lines = (tmp_path / "crawl2" / "movies.jsonl").read_text().splitlines()
    stale = json.loads(lines[0])
    stale["title"] = "Stale title"
    (tmp_path / "crawl2" / "movies.jsonl").write_text(json.dumps(stale) + "\n")
    old = run_ingest(spark, cfg2)
    assert (old.items.inserted, old.items.updated, old.items.unchanged) == (0, 0, 1)
    assert spark.table(cfg.table(S.ITEMS)).filter(f"item_id = {stale['id']}").first()["title"].endswith("Cut)")


def test_missing_inputs_are_one_line_errors(spark: SparkSession, make_cfg: Callable[..., Config],
                                            demo_crawl: DemoCrawl, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^crawl folder not found: /no/such/crawl \(config input.crawl_dir\)$"):
        run_ingest(spark, make_cfg("input.crawl_dir=/no/such/crawl", f"input.ratings_path={demo_crawl.ratings_path}"))
    with pytest.raises(UserError, match=r"^ratings file not found: /no/ratings.csv"):
        run_ingest(spark, make_cfg(f"input.crawl_dir={demo_crawl.crawl_dir}", "input.ratings_path=/no/ratings.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no crawl files"):
        run_ingest(spark, make_cfg(f"input.crawl_dir={tmp_path / 'empty'}", f"input.ratings_path={demo_crawl.ratings_path}"))
    bad = tmp_path / "r.csv"
    bad.write_text("user,movie,stars\n1,2,3\n")
    with pytest.raises(UserError, match="lacks column"):
        run_ingest(spark, make_cfg(f"input.crawl_dir={demo_crawl.crawl_dir}", f"input.ratings_path={bad}",
                                   f"ingest.max_poster_bytes={MAX_BYTES}"))


def test_parquet_ratings(spark: SparkSession, make_cfg: Callable[..., Config], demo_crawl: DemoCrawl,
                         tmp_path: Path) -> None:
    import pandas as pd

    pdf = pd.read_csv(demo_crawl.ratings_path, dtype=str)
    pdf = pdf[pdf["rating"].str.fullmatch(r"\d+") & pdf["customer_id"].str.fullmatch(r"\d+")
              & pdf["timestamp"].str.fullmatch(r"\d+")]
    typed = pdf.astype({"customer_id": "int64", "item_id": "int64", "rating": "float64", "timestamp": "int64"})
    path = tmp_path / "ratings.parquet"
    typed.to_parquet(path)
    cfg = make_cfg(f"input.crawl_dir={demo_crawl.crawl_dir}", f"input.ratings_path={path}",
                   f"ingest.max_poster_bytes={MAX_BYTES}")
    report = run_ingest(spark, cfg)
    assert report.ratings.read == len(typed)
    assert report.ratings.read == report.ratings.inserted + report.ratings.quarantined
