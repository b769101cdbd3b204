"""The genre classifier on a demo crawl: beats trivial baselines, reproducible, documented tables,
petastorm-fed, and unlabelled items still get predictions."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.features.classify import TEST, TRAIN, UNLABELLED, VAL
from hybridrec.config import Config
from hybridrec.crawl.demo import generate_demo
from hybridrec.stages.embed import run_embed
from hybridrec.stages.ingest import run_ingest
from hybridrec.stages.train import TrainReport, run_train

pytestmark = pytest.mark.stage  # every test reads the train stage run on the demo vectors

UNLABELLED_IDS = 12
TRAIN_SETS = ("train.epochs=40", "train.patience=6", "train.min_items=60", "train.batch_size=32")


@pytest.fixture(scope="module")
def cfg(make_cfg: Callable[..., Config], tmp_path_factory: pytest.TempPathFactory) -> Config:
    out = tmp_path_factory.mktemp("train-demo")
    generate_demo(out, movies=500, customers=20, mean_ratings_per_customer=5, poster_size=(48, 72), seed=5,
                  bad_inputs=False)
    return make_cfg(f"input.crawl_dir={out / 'crawl'}", f"input.ratings_path={out / 'ratings.csv'}",
                    "embed.backbones=[{name: vgg19, weights: random}]", "embed.input_size=32", "run.id=t1",
                    *TRAIN_SETS)


@pytest.fixture(scope="module")
def trained(spark: SparkSession, cfg: Config) -> TrainReport:
    run_ingest(spark, cfg)
    run_embed(spark, cfg)
    # a few movies without TMDB genres, as real crawls have
    ids = [r[S.ITEM_ID] for r in spark.table(cfg.table(S.ITEMS)).orderBy(S.ITEM_ID).limit(UNLABELLED_IDS).collect()]
    spark.sql(f"UPDATE {cfg.table(S.ITEMS)} SET {S.GENRE_IDS} = array(), {S.GENRES} = array() "
              f"WHERE {S.ITEM_ID} IN ({', '.join(map(str, ids))})")
    return run_train(spark, cfg)


def test_classifier_beats_trivial_baselines_on_the_largest_genres(trained: TrainReport) -> None:
    head = dict(trained.metrics["head"])
    largest = trained.genres[:3]  # most frequent first
    assert largest[0] == "Drama"
    for g in largest:
        m = head[g]
        assert m.f1 > max(m.f1_majority, m.f1_random) + 0.05, (g, m)
        assert m.roc_auc is not None and m.roc_auc > 0.6, (g, m)


def test_split_is_seeded_disjoint_and_close_to_80_20(spark: SparkSession, cfg: Config, trained: TrainReport) -> None:
    cats = spark.table(cfg.table(S.ITEM_CATEGORIES))
    splits = {r[S.SPLIT]: r["count"] for r in cats.groupBy(S.SPLIT).count().collect()}
    assert splits == trained.splits
    assert splits[UNLABELLED] == UNLABELLED_IDS
    labelled = splits[TRAIN] + splits[VAL] + splits[TEST]
    assert abs(splits[TEST] / labelled - 0.2) < 0.03 and abs(splits[VAL] / labelled - 0.1) < 0.03
    assert cats.select(S.ITEM_ID).distinct().count() == cats.count()


def test_every_item_with_a_vector_gets_categories_labelled_or_not(spark: SparkSession, cfg: Config,
                                                                    trained: TrainReport) -> None:
    cats = spark.table(cfg.table(S.ITEM_CATEGORIES))
    vectors = spark.table(cfg.table(S.ITEM_EMBEDDINGS)).select(S.ITEM_ID)
    assert cats.select(S.ITEM_ID).exceptAll(vectors).isEmpty() and vectors.exceptAll(cats.select(S.ITEM_ID)).isEmpty()
    unl = cats.filter(~F.col(S.LABELLED)).collect()
    assert len(unl) == UNLABELLED_IDS
    for r in unl:
        assert r[S.PREDICTED_GENRES], r[S.ITEM_ID]  # at least the most likely genre
        assert set(r[S.GENRE_PROBS]) == set(trained.genres)
        assert len(r[S.FEATURES]) == 1024
        assert all(0.0 <= p <= 1.0 for p in r[S.GENRE_PROBS].values())
    assert cats.filter(F.size(S.PREDICTED_GENRES) == 0).isEmpty()


def test_tables_have_the_documented_schemas(spark: SparkSession, cfg: Config, trained: TrainReport) -> None:
    for name, schema in ((S.ITEM_CATEGORIES, S.ITEM_CATEGORIES_SCHEMA), (S.CLASSIFIER_METRICS, S.CLASSIFIER_METRICS_SCHEMA)):
        got = spark.table(cfg.table(name)).schema
        assert [(f.name, f.dataType) for f in got] == [(f.name, f.dataType) for f in schema]
        assert all(f.metadata.get("comment") for f in got), name
    rows = spark.table(cfg.table(S.CLASSIFIER_METRICS)).filter(F.col(S.RUN_ID) == "t1").collect()
    assert sorted(r[S.GENRE] for r in rows) == sorted(trained.genres)
    assert all(r[S.STAGE] == "head" and r[S.FOLD] is None for r in rows)


def test_artifacts_and_loader(trained: TrainReport) -> None:
    assert trained.loader == "petastorm"
    assert Path(trained.model_uri).is_file() and trained.model_uri.endswith(".keras")
    png = Path(trained.plot).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = "\n".join(trained.lines())
    assert "F1" in text and "ROC-AUC" in text and "Drama" in text


def test_training_reads_through_the_petastorm_loader(spark: SparkSession, cfg: Config, trained: TrainReport,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import hybridrec.features.classifier as T

    calls: list[int] = []
    real = T.tf_dataset

    def spy(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(T, "tf_dataset", spy)
    again = run_train(spark, cfg)
    assert len(calls) == 2  # training rows and validation rows
    # same seed, same data -> same metrics
    for (g1, m1), (g2, m2) in zip(trained.metrics["head"], again.metrics["head"]):
        assert g1 == g2
        assert m1.threshold == pytest.approx(m2.threshold, abs=1e-6)
        assert (m1.f1, m1.accuracy) == pytest.approx((m2.f1, m2.accuracy), abs=1e-9)
        assert m1.roc_auc == pytest.approx(m2.roc_auc, abs=1e-6)
    # the rerun replaced this run's metric rows instead of adding to them
    assert spark.table(cfg.table(S.CLASSIFIER_METRICS)).filter(F.col(S.RUN_ID) == "t1").count() == len(trained.genres)


def test_fine_tuning_cross_validation_and_mlflow(spark: SparkSession, cfg: Config, trained: TrainReport,
                                                 make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    """Stage 2 re-learns block5 on the posters; 2-fold CV of the head; the run is logged to MLflow and
    the classifier registered (a local SQLite registry), and item_categories names the version."""
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = "hybridrec_genre_classifier"
    full = make_cfg(f"input.crawl_dir={cfg.input.crawl_dir}", f"input.ratings_path={cfg.input.ratings_path}",
                    "embed.backbones=[{name: vgg19, weights: random}]", "embed.input_size=32", "run.id=t2",
                    *TRAIN_SETS, "train.epochs=5", "train.folds=2", "train.fine_tune.enabled=true",
                    "train.fine_tune.epochs=1", f"train.mlflow_tracking_uri={db}", f"train.mlflow_registry_uri={db}",
                    f"train.mlflow_registered_model={name}",
                    f"train.mlflow_artifact_location={(tmp_path / 'artifacts').as_uri()}", database=cfg.storage.database)
    report = run_train(spark, full)
    assert set(report.metrics) == {"head", "fine_tune"}
    assert report.epochs["fine_tune"] >= 1 and report.model_uri.endswith("fine_tuned.keras")
    rows = spark.table(full.table(S.CLASSIFIER_METRICS)).filter(F.col(S.RUN_ID) == "t2").collect()
    g = len(report.genres)
    got = sorted((r[S.STAGE], -1 if r[S.FOLD] is None else r[S.FOLD]) for r in rows)
    assert got == sorted([("head", -1)] * g + [("fine_tune", -1)] * g + [("head", 0)] * g + [("head", 1)] * g)
    # item_categories now reflects the fine-tuned model, for every item, and names its registered version
    assert (report.registered_uri, report.registered_version) == (f"models:/{name}/1", "1")
    cats = spark.table(full.table(S.ITEM_CATEGORIES))
    assert {(r[S.MODEL_URI], r[S.MODEL_VERSION]) for r in cats.select(S.MODEL_URI, S.MODEL_VERSION).distinct()
            .collect()} == {(report.registered_uri, "1")}
    assert cats.count() == trained.categorised
    assert cats.filter(F.size(S.PREDICTED_GENRES) == 0).isEmpty()
    assert all(np.isfinite(r[S.FEATURES]).all() and all(np.isfinite(list(r[S.GENRE_PROBS].values())))
               for r in cats.collect())
    assert all(np.isfinite([m.roc_auc or 0.0, m.f1]).all() for _, m in report.metrics["fine_tune"])
    # the other run's metrics stay queryable
    assert spark.table(full.table(S.CLASSIFIER_METRICS)).filter(F.col(S.RUN_ID) == "t1").count() == len(trained.genres)

    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=db, registry_uri=db)
    run = client.get_run(report.mlflow_run_id)
    assert run.data.params["fine_tune.enabled"] == "True"
    assert "fine_tune.Drama.f1" in run.data.metrics and "head.Drama.roc_auc" in run.data.metrics
    names = {a.path for a in client.list_artifacts(report.mlflow_run_id, "classifier")}
    assert {"classifier/fine_tuned.keras", "classifier/head.keras", "classifier/loss.png"} <= names
    version = client.get_model_version(name, "1")
    assert version.run_id == report.mlflow_run_id
    # the registered model carries a signature (images in, one probability per genre out) and its genres
    mlflow.set_registry_uri(db)
    info = mlflow.models.get_model_info(report.registered_uri)
    assert info.signature is not None and info.metadata["genres"] == report.genres
    assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, len(report.genres))
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 32, 32, 3)
    # a second train run (the head alone: poster vectors in) registers version 2; the table follows it
    head_only = make_cfg(f"input.crawl_dir={cfg.input.crawl_dir}", f"input.ratings_path={cfg.input.ratings_path}",
                         "embed.backbones=[{name: vgg19, weights: random}]", "embed.input_size=32", "run.id=t3",
                         *TRAIN_SETS, "train.epochs=2", f"train.mlflow_tracking_uri={db}",
                         f"train.mlflow_registry_uri={db}", f"train.mlflow_registered_model={name}",
                         database=cfg.storage.database)
    again = run_train(spark, head_only)
    assert again.registered_version == "2"
    assert mlflow.models.get_model_info(f"models:/{name}/2").signature.inputs.to_dict()[0]["tensor-spec"][
        "shape"][0] == -1
    assert {r[S.MODEL_VERSION] for r in spark.table(full.table(S.ITEM_CATEGORIES)).select(S.MODEL_VERSION)
            .distinct().collect()} == {"2"}


def test_categories_thresholds_and_at_least_one_genre(spark: SparkSession) -> None:
    from hybridrec.features.classify import categories

    genres, thresholds = ["Drama", "Comedy", "Horror"], [0.5, 0.3, 0.1]
    rows = [(1, [0.9, 0.4, 0.05]), (2, [0.2, 0.1, 0.08]), (3, [0.1, 0.2, 0.3]), (4, [0.5, 0.3, 0.1])]
    got = {r[S.ITEM_ID]: (r[S.PREDICTED_GENRES], r[S.GENRE_PROBS]) for r in categories(
        spark.createDataFrame(rows, f"{S.ITEM_ID} long, probs array<float>"), genres, thresholds).collect()}
    assert got[1][0] == ["Drama", "Comedy"]  # both at or above their thresholds
    assert got[2][0] == ["Horror"]  # none reaches its threshold: the closest one (0.08/0.1) is kept
    assert got[3][0] == ["Horror"] and got[4][0] == genres  # thresholds are inclusive
    assert got[1][1] == pytest.approx({"Drama": 0.9, "Comedy": 0.4, "Horror": 0.05})


def test_similarity_on_classifier_features_within_predicted_genres(spark: SparkSession, cfg: Config,
                                                                   trained: TrainReport,
                                                                   make_cfg: Callable[..., Config]) -> None:
    """The paper's path end to end: neighbours from the classifier's 1024-d features inside the
    predicted genres, equal to a numpy brute force over the same blocks."""
    from hybridrec.neighbors.kernels import SimilarityParams
    from hybridrec.stages.similarity import run_similarity
    from hybridrec.testing.references import reference_neighbors

    sim_cfg = make_cfg("similarity.vectors=features", "similarity.blocks=predicted", "similarity.top_k=5",
                       "similarity.block_size=64", "run.id=t1", database=cfg.storage.database)
    report = run_similarity(spark, sim_cfg)
    cats = spark.table(cfg.table(S.ITEM_CATEGORIES)).collect()
    vectors = {r[S.ITEM_ID]: np.array(r[S.FEATURES], np.float32) for r in cats}
    members = {r[S.ITEM_ID]: list(r[S.PREDICTED_GENRES]) for r in cats}
    want = reference_neighbors(vectors, members, SimilarityParams("cosine", top_k=5, block_size=64))
    got: dict[int, list[tuple[int, int, float]]] = {}
    for r in spark.table(cfg.table(S.ITEM_NEIGHBORS)).filter(F.col(S.RUN_ID) == "t1").collect():
        got.setdefault(r[S.ITEM_ID], []).append((r[S.RANK], r[S.NEIGHBOR_ID], r[S.SIMILARITY]))
    assert report.rows == sum(len(v) for v in want.values()) > 0
    assert sorted(got) == sorted(want)
    for item, lst in want.items():
        ranked = sorted(got[item])
        assert [n for _, n, _ in ranked] == [n for n, _, _ in lst], item
        np.testing.assert_allclose([s for _, _, s in ranked], [s for _, s, _ in lst], atol=1e-5)
