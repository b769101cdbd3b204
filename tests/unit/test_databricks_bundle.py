"""The Databricks bundle parses against the official SDK's Jobs API types, and its tasks are the
pipeline's stages with entry points that exist in the wheel."""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _bundle() -> tuple[dict[str, Any], dict[str, Any]]:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    jobs: dict[str, Any] = {}
    for pattern in bundle["include"]:
        for path in sorted(ROOT.glob(pattern)):
            jobs.update(yaml.safe_load(path.read_text())["resources"]["jobs"])
    return bundle, jobs


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    """Resolve ${var.x} / ${workspace.file_path} as `databricks bundle` would."""
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            assert m.group(1) in variables, f"unknown bundle variable {m.group(1)}"
            return variables[m.group(1)]
        return re.sub(r"\$\{([a-z_.]+)\}", sub, value)
    return value


def _subset(given: Any, parsed: Any, where: str) -> None:
    """Every key given is one the SDK type knows (from_dict silently drops unknown ones)."""
    if isinstance(given, dict):
        assert isinstance(parsed, dict), where
        for k, v in given.items():
            assert k in parsed, f"{where}.{k} is not a field of the Jobs API type"
            _subset(v, parsed[k], f"{where}.{k}")
    elif isinstance(given, list):
        assert isinstance(parsed, list) and len(parsed) == len(given), where
        for i, (a, b) in enumerate(zip(given, parsed)):
            _subset(a, b, f"{where}[{i}]")


def test_every_job_task_cluster_and_parameter_parses_with_the_sdk() -> None:
    from databricks.sdk.service.jobs import JobSettings

    bundle, jobs = _bundle()
    variables = {f"var.{k}": str(v.get("default", "")) for k, v in bundle["variables"].items()}
    variables["workspace.file_path"] = "/Workspace/Users/someone/.bundle/hybridrec/dev/files"
    assert jobs, "no job in the bundle"
    for name, job in jobs.items():
        resolved = _substitute(job, variables)
        settings = JobSettings.from_dict(resolved)
        _subset(resolved, settings.as_dict(), name)
        assert settings.schedule is not None and settings.schedule.quartz_cron_expression
        assert [p.name for p in settings.parameters or []] == ["run_date"]


def test_tasks_are_the_pipeline_stages_in_order_on_the_right_clusters() -> None:
    from hybridrec.jobs.pipeline import STAGES

    _, jobs = _bundle()
    job = jobs["hybridrec_pipeline"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert list(tasks) == list(STAGES)
    for prev, stage in zip(STAGES, STAGES[1:]):
        assert tasks[stage]["depends_on"] == [{"task_key": prev}]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    assert "gpu" in clusters[tasks["embed"]["job_cluster_key"]]["spark_version"]
    assert "gpu" not in clusters[tasks["recommend"]["job_cluster_key"]]["spark_version"]
    setup = (ROOT / "setup.py").read_text()
    for stage, task in tasks.items():
        assert task["max_retries"] >= 1, stage
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == "hybridrec"
        assert wheel["entry_point"] == f"hybridrec-{stage}"
        assert f'"{stage}"' in setup  # a console script hybridrec-<stage> of the wheel
        assert callable(importlib.import_module(f"hybridrec.jobs.{stage}").main)
        params = " ".join(wheel["parameters"])
        assert "run.date={{job.parameters.run_date}}" in params and "conf/cluster.yaml" in params
        assert task["libraries"] == [{"whl": "../../dist/*.whl"}]
