"""Recommend stage: the configured model (``recommend.model``, the hybrid by default) fitted on every
rating -> top-n ``recommendations`` per customer; this run's rows are replaced in one commit and
``recommendations_latest`` shows the newest run. A model whose neighbour recipe is the similarity
stage's serves from this run's ``item_neighbors`` instead of computing them again."""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.errors import UserError
from hybridrec.models.base import ModelConf
from hybridrec.models.registry import make_model
from hybridrec.models.scoring import OUTPUT_COLUMNS, SOURCE_COLD_START
from hybridrec.neighbors.recipe import NeighborRecipe
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
        return out + self.model_lines


def run_recommend(spark: SparkSession, cfg: Config) -> RecommendReport:
    """Recommendations for every customer with ratings (see the module doc)."""
    rc = cfg.recommend
    out = ensure_table(spark, cfg.storage, S.RECOMMENDATIONS)
    model = make_model(rc.model, ModelConf.from_config(cfg))
    stored = run_neighbors(spark, cfg)
    if stored is None and model.recipe() == NeighborRecipe.configured(cfg.similarity):
        raise UserError(f"no item_neighbors for run {cfg.run_id}: run the similarity stage for this run first")
    ratings = spark.table(ensure_table(spark, cfg.storage, S.RATINGS))
    fitted = model.fit(fit_data(spark, cfg, ratings, stored))
    report = RecommendReport(run_id=cfg.run_id, model=rc.model, model_lines=fitted.lines())
    recs = fitted.recommend(None, rc.top_n)
    recs = recs.select(*[F.col(c) for c in OUTPUT_COLUMNS], F.lit(cfg.run_id).alias(S.RUN_ID)).persist()
    report.rows = recs.count()
    report.customers = recs.select(S.CUSTOMER_ID).distinct().count()
    report.fallback_customers = recs.filter(F.col(S.SOURCE).startswith("fallback")).select(S.CUSTOMER_ID) \
        .distinct().count()
    report.cold_rows = recs.filter(F.col(S.SOURCE) == SOURCE_COLD_START).count()
    ensure_rank_bound(spark, out, rc.top_n)  # CHECK rank within 1..top_n, before the write it checks
    replace_rows(spark, out, recs, f"{S.RUN_ID} = {sql_str(cfg.run_id)}",
                 compare_cols=[S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE])
    report.current = merge_current(spark, cfg.storage, recs, cfg.run_id, rc.top_n)
    recs.unpersist()
    create_latest_recommendations_view(spark, cfg.storage)
    return report
