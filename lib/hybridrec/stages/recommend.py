"""Recommend stage: the configured model (``recommend.model``, the hybrid by default) fitted on every
rating -> top-n ``recommendations`` per customer; this run's rows are replaced in one commit and
``recommendations_latest`` shows the newest run. The same fitted model ranks only the new items
(:func:`new_item_ids`) for ``new_item_recommendations`` ("new for you", ``recommend.new``). A
model whose neighbour recipe is the similarity stage's serves from this run's ``item_neighbors``
instead of computing them again."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config, NewItemsConf
from hybridrec.errors import UserError
from hybridrec.models.base import ModelConf
from hybridrec.models.registry import make_model
from hybridrec.models.scoring import LIST, LIST_MAIN, LIST_NEW, OUTPUT_COLUMNS, SOURCE_COLD_START
from hybridrec.neighbors.recipe import NeighborRecipe
from hybridrec.runtime.timing import Laps
from hybridrec.stages.inputs import fit_data, run_neighbors
from hybridrec.storage.serving import CurrentChanges, merge_current
from hybridrec.storage.tables import ensure_rank_bound, ensure_table, replace_rows, sql_str
from hybridrec.storage.views import create_latest_recommendations_view


@dataclass
class RecommendReport:
    run_id: str
    customers: int = 0
    rows: int = 0
    fallback_customers: int = 0
    model: str = "hybrid"
    cold_rows: int = 0
    model_lines: list[str] = field(default_factory=list)
    current: CurrentChanges | None = None  # what this run changed in recommendations_current
    new_items: int = 0  # items new at the run date (recommend.new)
    new_rows: int = 0  # rows written to new_item_recommendations
    new_customers: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # wall-clock seconds per phase, in order

    @property
    def rows_in(self) -> int:
        return self.customers

    @property
    def rows_out(self) -> int:
        return self.rows

    def lines(self) -> list[str]:
        out = [f"{self.rows} recommendations for {self.customers} customers "
               f"({self.fallback_customers} served by the popularity fallback); model {self.model}"]
        if self.model == "hybrid":
            out.append(f"{self.cold_rows} list positions went to cold-start items")
        if self.current is not None:
            out.append(f"{S.RECOMMENDATIONS_CURRENT}: {self.current.inserted} inserted, {self.current.updated} updated, "
                       f"{self.current.deleted} deleted (version {self.current.version}, change feed on)")
        if self.new_items or self.new_rows:
            out.append(f"{S.NEW_ITEM_RECOMMENDATIONS}: {self.new_rows} rows for {self.new_customers} customers "
                       f"among {self.new_items} new items")
        if self.seconds:
            out.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return out + self.model_lines


def new_item_ids(items: DataFrame, ratings: DataFrame, run_date: dt.date, conf: NewItemsConf) -> DataFrame:
    """(item_id) of the items new at ``run_date``: released at most ``max_age_days`` before it (or
    after it), or with fewer than ``max_ratings`` ratings (none counts 0)."""
    counts = ratings.groupBy(S.ITEM_ID).agg(F.count(F.lit(1)).alias("_n"))
    since = run_date - dt.timedelta(days=conf.max_age_days)
    young = F.col("release_date").isNotNull() & (F.col("release_date") >= F.lit(since))
    return items.select(S.ITEM_ID, "release_date").join(counts, S.ITEM_ID, "left") \
        .filter(young | (F.coalesce(F.col("_n"), F.lit(0)) < conf.max_ratings)).select(S.ITEM_ID)


def _write_run(spark: SparkSession, table: str, lists: DataFrame, top_n: int, run_id: str) -> None:
    """This run's lists into ``table`` (its rows replaced in one commit), under a CHECK that every
    rank is within 1..top_n, added before the write it checks."""
    ensure_rank_bound(spark, table, top_n)
    replace_rows(spark, table, lists, f"{S.RUN_ID} = {sql_str(run_id)}",
                 compare_cols=[S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE])


def run_recommend(spark: SparkSession, cfg: Config) -> RecommendReport:
    """Recommendations for every customer with ratings (see the module doc)."""
    rc = cfg.recommend
    out = ensure_table(spark, cfg.storage, S.RECOMMENDATIONS)
    model = make_model(rc.model, ModelConf.from_config(cfg))
    stored = run_neighbors(spark, cfg)
    if stored is None and model.recipe() == NeighborRecipe.configured(cfg.similarity):
        raise UserError(f"no item_neighbors for run {cfg.run_id}: run the similarity stage for this run first")
    ratings = spark.table(ensure_table(spark, cfg.storage, S.RATINGS))
    laps = Laps()
    fitted = model.fit(fit_data(spark, cfg, ratings, stored))
    report = RecommendReport(run_id=cfg.run_id, model=rc.model, model_lines=fitted.lines())
    laps.lap("fit")
    fresh = None
    if rc.new.top_k > 0:
        items = spark.table(ensure_table(spark, cfg.storage, S.ITEMS))
        fresh = new_item_ids(items, ratings, cfg.run_date, rc.new).localCheckpoint(eager=True)
        report.new_items = fresh.count()
        laps.lap("new items")
    # both lists from one scoring pass, persisted once and written to their two tables
    both = fitted.recommend_lists(rc.top_n, fresh, rc.new.top_k) if fresh is not None and report.new_items \
        else fitted.recommend(None, rc.top_n).withColumn(LIST, F.lit(LIST_MAIN))
    both = both.select(*[F.col(c) for c in OUTPUT_COLUMNS], LIST, F.lit(cfg.run_id).alias(S.RUN_ID)).persist()
    recs = both.filter(F.col(LIST) == LIST_MAIN).drop(LIST)
    # one pass over the persisted lists for every figure of the report (it also fills the cache):
    # every list has exactly one rank 1, and a fallback list is wholly fallback, so the customers
    # are counted at rank 1 - plain counts, with no distinct aggregation's shuffle of every row
    first = F.col(S.RANK) == 1
    counts = both.groupBy(LIST).agg(
        F.count(F.lit(1)).alias("rows"), F.count(F.when(first, 1)).alias("customers"),
        F.count(F.when(first & F.col(S.SOURCE).startswith("fallback"), 1)).alias("fallback"),
        F.count(F.when(F.col(S.SOURCE) == SOURCE_COLD_START, 1)).alias("cold")).collect()
    by_list = {r[LIST]: r for r in counts}
    main = by_list.get(LIST_MAIN)
    if main is not None:
        report.rows, report.customers = int(main["rows"]), int(main["customers"])
        report.fallback_customers, report.cold_rows = int(main["fallback"]), int(main["cold"])
    laps.lap("scoring")
    _write_run(spark, out, recs, rc.top_n, cfg.run_id)
    laps.lap("write")
    report.current = merge_current(spark, cfg.storage, recs, cfg.run_id, rc.top_n)
    laps.lap("merge current")
    if rc.new.top_k > 0:
        new_out = ensure_table(spark, cfg.storage, S.NEW_ITEM_RECOMMENDATIONS)
        new_recs = both.filter(F.col(LIST) == LIST_NEW).drop(LIST)
        new = by_list.get(LIST_NEW)
        report.new_rows, report.new_customers = (int(new["rows"]), int(new["customers"])) if new else (0, 0)
        _write_run(spark, new_out, new_recs, rc.new.top_k, cfg.run_id)
        laps.lap("new-for-you write")
    both.unpersist()
    create_latest_recommendations_view(spark, cfg.storage)
    report.seconds = laps.seconds
    return report
