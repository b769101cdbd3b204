"""hybridrec: Spark batch jobs for poster-aware hybrid movie recommendations."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _reqs(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


JOBS = ["pipeline", "ingest", "embed", "train", "similarity", "recommend", "evaluate", "demo", "crawl", "views",
        "maintenance"]

setup(
    name="hybridrec",
    version="0.1.0",
    description="Spark/Delta jobs: VGG19 poster features + genre blocks + rating-weighted top-n",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    package_data={"hybridrec": ["py.typed", "runtime/log4j2.properties"]},
    include_package_data=True,
    # ranges only: what a Spark runtime lacks (requirements/base.txt); exact pins live in
    # requirements/constraints.txt, which only scripts/bootstrap.sh reads
    install_requires=_reqs("base.txt"),
    extras_require={
        # Spark and Delta for the embedded default; never on Databricks, whose runtime brings its own
        "local": _reqs("local.txt"),
        # the deep-learning stages on CPU executors
        "cpu": _reqs("ml.txt"),
        # the deep-learning stages on GPU executors (CUDA wheels instead of tensorflow-cpu)
        "gpu": _reqs("gpu.txt"),
        # MLflow logging of the trained classifier (train.mlflow_tracking_uri)
        "mlflow": _reqs("tracking.txt"),
        "dev": _reqs("local.txt") + _reqs("ml.txt") + _reqs("dev.txt") + _reqs("tracking.txt"),
    },
    entry_points={
        "console_scripts": ["hybridrec=hybridrec.cli:main"]
        + [f"hybridrec-{job}=hybridrec.jobs.{job}:main" for job in JOBS],
    },
)
