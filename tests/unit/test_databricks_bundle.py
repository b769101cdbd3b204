"""The Databricks bundle, checked up to the API boundary (no workspace is reachable from here):
every job parses against the official SDK's Jobs API types and every schema and Volume against
its Unity Catalog types; dev and prod resolve to different catalogs; prod runs as a service
principal; nothing forces a schedule on; every task's entry point is a console script of the
wheel; the GPU cluster runs embed only, with the [gpu] extra; every table the notebooks and
views read is written by some task."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hybridrec import schemas as S
from hybridrec.stages.registry import STAGES
from hybridrec.storage.views import VIEW_SOURCES, VIEWS

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("dev", "prod")


def _raw() -> tuple[dict[str, Any], dict[str, Any]]:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    resources: dict[str, Any] = {}
    for pattern in bundle["include"]:
        for path in sorted(ROOT.glob(pattern)):
            for kind, items in yaml.safe_load(path.read_text())["resources"].items():
                resources.setdefault(kind, {}).update(items)
    return bundle, resources


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    """Resolve ${var.x}, ${workspace.file_path} and ${resources...} as `databricks bundle` would."""
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            assert m.group(1) in variables, f"unknown bundle reference {m.group(1)}"
            return variables[m.group(1)]
        return re.sub(r"\$\{([a-z_.]+)\}", sub, value)
    return value


def resolved(target: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the target's settings, its resources) with every reference resolved."""
    bundle, resources = _raw()
    tgt = bundle["targets"][target]
    variables = {f"var.{k}": v.get("default") for k, v in bundle["variables"].items()}
    variables.update({f"var.{k}": v for k, v in (tgt.get("variables") or {}).items()})
    missing = [k for k, v in variables.items() if v is None]
    assert not missing, f"target {target} leaves {missing} without a value"
    variables = {k: str(v) for k, v in variables.items()}
    variables["workspace.file_path"] = f"/Workspace/Users/someone/.bundle/hybridrec/{target}/files"
    variables["resources.schemas.hybridrec_schema.name"] = variables["var.schema"]
    return _substitute(tgt, variables), _substitute(resources, variables)


def _subset(given: Any, parsed: Any, where: str, skip: tuple[str, ...] = ()) -> None:
    """Every key given is one the SDK type knows (from_dict silently drops unknown ones)."""
    if isinstance(given, dict):
        assert isinstance(parsed, dict), where
        for k, v in given.items():
            if k in skip:
                continue
            assert k in parsed, f"{where}.{k} is not a field of the API type"
            _subset(v, parsed[k], f"{where}.{k}")
    elif isinstance(given, list):
        assert isinstance(parsed, list) and len(parsed) == len(given), where
        for i, (a, b) in enumerate(zip(given, parsed)):
            _subset(a, b, f"{where}[{i}]")


def wheel_console_scripts() -> set[str]:
    """hybridrec-<job> for every job setup.py declares (read from setup.py, not from whatever the
    virtualenv's editable install recorded)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    jobs = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "JOBS" for t in n.targets))
    for job in jobs:
        assert callable(importlib.import_module(f"hybridrec.jobs.{job}").main), job
    return {f"hybridrec-{job}" for job in jobs}


@pytest.mark.parametrize("target", TARGETS)
def test_every_job_schema_and_volume_parses_with_the_sdk(target: str) -> None:
    from databricks.sdk.service.catalog import SchemaInfo, VolumeInfo
    from databricks.sdk.service.jobs import JobPermissionLevel, JobSettings

    _, res = resolved(target)
    assert res["jobs"], "no job in the bundle"
    for name, job in res["jobs"].items():
        settings = JobSettings.from_dict(job)
        _subset(job, settings.as_dict(), name, skip=("permissions",))  # permissions: a bundle key
        assert settings.schedule is not None and settings.schedule.quartz_cron_expression
        for p in job.get("permissions", []):
            JobPermissionLevel(p["level"])  # a real level
        for cluster in job["job_clusters"]:
            assert cluster["new_cluster"]["data_security_mode"] == "SINGLE_USER", name  # Unity Catalog access mode
    for name, schema in res["schemas"].items():
        _subset(schema, SchemaInfo.from_dict(schema).as_dict(), name, skip=("grants",))
    for name, volume in res["volumes"].items():
        _subset(volume, VolumeInfo.from_dict(volume).as_dict(), name)
        assert volume["schema_name"] == res["schemas"]["hybridrec_schema"]["name"]


def test_dev_and_prod_never_share_a_catalog_and_prod_runs_as_a_service_principal() -> None:
    (dev, dev_res), (prod, prod_res) = resolved("dev"), resolved("prod")
    assert dev["mode"] == "development" and prod["mode"] == "production"
    catalogs = {t: r["schemas"]["hybridrec_schema"]["catalog_name"] for t, r in (("dev", dev_res), ("prod", prod_res))}
    assert catalogs["dev"] != catalogs["prod"]
    for target, res in (("dev", dev_res), ("prod", prod_res)):
        for volume in res["volumes"].values():
            assert volume["catalog_name"] == catalogs[target]
        for job in res["jobs"].values():
            for cluster in job["job_clusters"]:
                env = cluster["new_cluster"]["spark_env_vars"]
                assert env["HYBRIDREC_CATALOG"] == catalogs[target]  # what conf/cluster.yaml builds names from
            for task in job["tasks"]:
                for arg in task["python_wheel_task"]["parameters"]:
                    if "/Volumes/" in arg:
                        assert f"/Volumes/{catalogs[target]}/" in arg, arg
    assert "service_principal_name" in prod["run_as"] and "run_as" not in dev
    assert {p["level"] for p in prod["permissions"]} >= {"CAN_MANAGE", "CAN_VIEW"}
    # no schedule forced on: development mode pauses dev's, production runs prod's
    text = (ROOT / "conf" / "databricks" / "hybridrec.job.yml").read_text() + (ROOT / "databricks.yml").read_text()
    assert "UNPAUSED" not in text
    for job in prod_res["jobs"].values():
        assert "pause_status" not in job["schedule"]


def test_cluster_conf_builds_every_name_from_the_targets_catalog_and_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridrec.config import load_config

    monkeypatch.setenv("HYBRIDREC_CATALOG", "hybridrec_dev")
    monkeypatch.setenv("HYBRIDREC_SCHEMA", "recs")
    cfg = load_config(ROOT / "conf" / "cluster.yaml")
    assert cfg.table(S.RECOMMENDATIONS) == "`hybridrec_dev`.`recs`.`recommendations`"
    for path in (cfg.input.crawl_dir, cfg.input.ratings_path, cfg.train.model_dir, cfg.train.petastorm_cache_url):
        assert "/Volumes/hybridrec_dev/recs/" in path, path
    # the classifier is registered in Unity Catalog's model registry, in the target's own schema
    assert (cfg.train.mlflow_registry_uri, cfg.train.mlflow_registered_model) == \
        ("databricks-uc", "hybridrec_dev.recs.genre_classifier")


def test_tasks_are_the_pipeline_on_the_right_clusters_with_entry_points_of_the_wheel() -> None:
    _, res = resolved("prod")
    job = res["jobs"]["hybridrec_pipeline"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert list(tasks) == ["crawl", *[s.name for s in STAGES], "views"]
    keys = list(tasks)
    for prev, task in zip(keys, keys[1:]):
        assert tasks[task]["depends_on"] == [{"task_key": prev}]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    on_gpu = [k for k, t in tasks.items() if "gpu" in clusters[t["job_cluster_key"]]["spark_version"]]
    assert on_gpu == ["embed"]  # the GPU cluster for embed only
    gpu_libs = tasks["embed"]["libraries"]
    assert {"requirements": "/Workspace/Users/someone/.bundle/hybridrec/prod/files/requirements/gpu.txt"} in gpu_libs
    scripts = wheel_console_scripts()
    for name, jb in res["jobs"].items():
        for task in jb["tasks"]:
            wheel = task["python_wheel_task"]
            assert wheel["package_name"] == "hybridrec"
            assert wheel["entry_point"] in scripts, (name, wheel["entry_point"])
            assert task["max_retries"] >= 1, task["task_key"]
            assert {"whl": "../../dist/*.whl"} in task["libraries"]
            assert not any("pypi" in lib for lib in task["libraries"])  # never Spark, Delta or Arrow from PyPI
            assert "conf/cluster.yaml" in " ".join(wheel["parameters"])
    for stage in [s.name for s in STAGES]:
        assert "run.date={{job.parameters.run_date}}" in " ".join(tasks[stage]["python_wheel_task"]["parameters"])
    crawl_out = next(a for a in tasks["crawl"]["python_wheel_task"]["parameters"] if a.startswith("crawl.out_dir="))
    ingest_in = next(a for a in tasks["ingest"]["python_wheel_task"]["parameters"] if a.startswith("input.crawl_dir="))
    assert crawl_out.split("=", 1)[1] == ingest_in.split("=", 1)[1]  # ingest reads what the crawl task wrote


def test_gpu_requirements_are_the_cpu_ones_with_tensorflows_cuda_build() -> None:
    def reqs(name: str) -> list[str]:
        return [ln.strip() for ln in (ROOT / "requirements" / name).read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert reqs("gpu.txt") == [r.replace("tensorflow-cpu", "tensorflow[and-cuda]") for r in reqs("ml.txt")]


def test_every_table_the_notebooks_and_views_read_is_written_by_some_task() -> None:
    _, res = resolved("prod")
    tasks = [t["task_key"] for t in res["jobs"]["hybridrec_pipeline"]["tasks"]]
    written = {table for s in STAGES if s.name in tasks for table in s.writes}
    if "views" in tasks:
        written |= set(VIEWS)
    assert set(VIEW_SOURCES) <= written
    read = set()
    for nb in sorted((ROOT / "notebooks").glob("*.py")):
        read |= set(re.findall(r"\{DATABASE\}\.(\w+)", nb.read_text()))
    assert read, "found no table the notebooks read"
    assert read <= written, read - written
    assert set(S.TABLE_SCHEMAS) <= written  # and every table the package defines has a writer in the job
