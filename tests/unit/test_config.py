from __future__ import annotations

from pathlib import Path

import pytest

from hybridrec.config import SecretRef, load_config, resolve_secret
from hybridrec.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "conf" / "local.yaml"
CLUSTER = ROOT / "conf" / "cluster.yaml"


def test_both_environment_files_load() -> None:
    local, cluster = load_config(LOCAL), load_config(CLUSTER)
    assert local.spark.mode == "local" and cluster.spark.mode == "cluster"
    assert cluster.secrets.tmdb_api_key == SecretRef(scope="hybridrec", key="tmdb-api-key")


def test_set_overrides_are_typed() -> None:
    cfg = load_config(LOCAL, ["ingest.min_rating=0.5", "demo.movies=42", "demo.bad_inputs=false",
                              "run.date=2024-02-29", "storage.catalog=main"])
    assert cfg.ingest.min_rating == 0.5 and isinstance(cfg.ingest.min_rating, float)
    assert cfg.demo.movies == 42 and cfg.demo.bad_inputs is False
    assert cfg.run_id == "2024-02-29"
    assert cfg.table("items") == "`main`.`hybridrec`.`items`"


@pytest.mark.parametrize(
    "override, message",
    [
        ("ingest.min_ratng=1", "unknown config key 'ingest.min_ratng' (did you mean 'ingest.min_rating'?)"),
        ("nosuch.key=1", "unknown config key 'nosuch'"),
        ("demo.movies=many", "config key 'demo.movies' must be int, got 'many'"),
        ("demo.bad_inputs=maybe", "config key 'demo.bad_inputs' must be true or false"),
        ("spark.mode=yarn", "config key 'spark.mode' must be local or cluster"),
        ("run.date=yesterday", "config key 'run.date': 'yesterday' is not a date"),
        ("ingest.min_rating=9", "'ingest.min_rating' must be below 'ingest.max_rating'"),
        ("embed.max_aspect_ratio=0.5", "config key 'embed.max_aspect_ratio' must be at least 1"),
        ("novalue", "expected key=value"),
    ],
)
def test_bad_config_names_the_key(override: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(LOCAL, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark: [unclosed\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        load_config(bad)


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDREC_DATA", "/srv/recs")
    assert load_config(LOCAL).storage.data_dir == "/srv/recs"
    monkeypatch.delenv("HYBRIDREC_DATA")
    assert load_config(LOCAL).storage.data_dir == ".hybridrec"


def test_secrets_are_references_never_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMDB_API_KEY", "canary-3f9a1c")
    cfg = load_config(LOCAL)
    assert "canary-3f9a1c" not in repr(cfg) and "canary-3f9a1c" not in str(cfg.describe())
    assert cfg.describe()["secrets"]["tmdb_api_key"] == "env:TMDB_API_KEY"
    assert resolve_secret(cfg.secrets.tmdb_api_key) == "canary-3f9a1c"
    monkeypatch.delenv("TMDB_API_KEY")
    with pytest.raises(UserError, match="secret env:TMDB_API_KEY is not set"):
        resolve_secret(cfg.secrets.tmdb_api_key)


def test_databricks_secret_scope() -> None:
    class Secrets:
        @staticmethod
        def get(scope: str, key: str) -> str:
            return f"{scope}/{key}-value"

    class DbUtils:
        secrets = Secrets()

    ref = SecretRef(scope="hybridrec", key="tmdb-api-key")
    assert resolve_secret(ref, DbUtils()) == "hybridrec/tmdb-api-key-value"
    with pytest.raises(UserError, match="needs Databricks dbutils"):
        resolve_secret(ref)


def test_local_session_conf_is_embedded_delta(tmp_path: Path) -> None:
    from hybridrec.runtime.session import QUICK_JIT, delta_maven_coordinates, for_one_query, local_spark_conf

    cfg = load_config(LOCAL, [f"storage.data_dir={tmp_path}", "spark.conf={spark.sql.shuffle.partitions: '3'}"])
    conf = local_spark_conf(cfg)
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert conf["spark.sql.warehouse.dir"] == str(tmp_path / "warehouse")
    assert f"databaseName={tmp_path / 'metastore_db'}" in conf["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert conf["spark.jars.packages"] == ",".join(delta_maven_coordinates()) and "spark.jars" not in conf
    resolved = local_spark_conf(cfg, ["/ivy/jars/a.jar", "/ivy/jars/b.jar"])  # what the first run resolved
    assert resolved["spark.jars"] == "/ivy/jars/a.jar,/ivy/jars/b.jar" and "spark.jars.packages" not in resolved
    assert conf["spark.sql.shuffle.partitions"] == "3"  # conf wins over defaults, locally
    # the local JVM's options: hybridrec's own, then the config's (none by default)
    java = conf["spark.driver.extraJavaOptions"].split()
    assert java[0] == f"-Dderby.system.home={tmp_path}" and java[1].startswith("-Dlog4j2.configurationFile=file:")
    assert java[2:] == []
    other = load_config(LOCAL, [f"storage.data_dir={tmp_path}", "spark.java_options=-Xss4m -Dx=1"])
    assert local_spark_conf(other)["spark.driver.extraJavaOptions"].split()[2:] == ["-Xss4m", "-Dx=1"]
    # hybridrec sql's JVM (one query): the quick JIT, unless the config names its own options
    assert local_spark_conf(for_one_query(cfg))["spark.driver.extraJavaOptions"].split()[2:] == QUICK_JIT.split()
    assert for_one_query(other) == other and for_one_query(cfg).spark.master == cfg.spark.master


def test_local_python_workers_import_this_checkout() -> None:
    """Two clones share one virtualenv (its editable install follows the last bootstrapped clone):
    the workers must still run the driver's code."""
    import hybridrec
    from hybridrec.runtime.session import local_spark_conf

    conf = local_spark_conf(load_config(LOCAL))
    assert conf["spark.executorEnv.PYTHONPATH"] == str(Path(hybridrec.__file__).resolve().parents[1])


def _raw(obj: object) -> object:
    """A config value as YAML would spell it (dataclasses as mappings)."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _raw(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [_raw(v) for v in obj]
    return obj


def _assert_defaults(section: object, yaml_part: object, key: str) -> None:
    if isinstance(yaml_part, dict):
        assert isinstance(section, dict), key
        for k, v in yaml_part.items():
            assert k in section, f"{key}.{k} is in conf/local.yaml but no config key"
            _assert_defaults(section[k], v, f"{key}.{k}")
    elif isinstance(yaml_part, list) and yaml_part and isinstance(yaml_part[0], dict):
        assert isinstance(section, list) and len(section) == len(yaml_part), key
        for i, (a, b) in enumerate(zip(section, yaml_part)):
            _assert_defaults(a, b, f"{key}[{i}]")
    else:
        assert section == yaml_part, f"{key}: the dataclass default {section!r} is not conf/local.yaml's {yaml_part!r}"


def test_the_dataclass_defaults_are_the_shipped_local_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One source of defaults: every key conf/local.yaml sets has exactly that value as its default,
    and a config file that sets nothing loads the same Config as the shipped one."""
    import yaml

    from hybridrec.config import Config

    shipped = yaml.safe_load(LOCAL.read_text())
    _assert_defaults(_raw(Config()), shipped, "config")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing: every key at its default\n")
    monkeypatch.delenv("HYBRIDREC_DATA", raising=False)
    assert load_config(empty) == load_config(LOCAL)
    monkeypatch.setenv("HYBRIDREC_DATA", str(tmp_path / "elsewhere"))
    moved = load_config(empty)
    assert moved == load_config(LOCAL) and moved.input.crawl_dir == f"{tmp_path}/elsewhere/demo/crawl"


@pytest.mark.parametrize("override, message", [
    ("similarity.blocks=genres", "config key 'similarity.blocks' must be labelled or predicted, got 'genres'"),
    ("evaluate.models=[popular, nope]", "config key 'evaluate.models[1]' must be popular, item_knn, als"),
    ("recommend.model=nope", "config key 'recommend.model' must be popular, item_knn"),
    ("embed.backbones=[{name: vgg19, pooling: mean}]", "config key 'embed.backbones[0].pooling' must be avg, max or "
                                                       "flatten, got 'mean'"),
    ("recommend.cold_start.features=[prior, poster]", "'recommend.cold_start.features[1]' must be prior, vote_average"),
    ("evaluate.models=[]", "config key 'evaluate.models' needs at least one model"),
])
def test_fixed_choices_are_literal_types_checked_by_their_section(override: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(LOCAL, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_model_name_is_a_registered_recommender() -> None:
    from hybridrec.config import EVAL_MODELS
    from hybridrec.models.registry import MODELS

    assert set(MODELS) == set(EVAL_MODELS)
    assert all(cls.name == name for name, cls in MODELS.items())
