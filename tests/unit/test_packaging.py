"""The wheel as a Databricks (or any Spark) runtime installs it: its base requirements are ranges
that leave the runtime's own Spark alone, and its console scripts exit non-zero on failure.

Everything runs offline: the wheel is built from a copy of the project, and each throwaway
virtualenv sees this virtualenv's packages through a ``.pth`` line, so pip resolves the base
requirements without an index (``--no-index``): a wheel that required pyspark would fail to
install next to the fake pyspark 3.5.1 instead of replacing it."""
from __future__ import annotations

import email.parser
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    for name in ("requirements", "lib"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("hybridrec-*-py3-none-any.whl")
    return whl


def metadata(whl: Path) -> email.message.Message:
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def base_requirements(whl: Path) -> list[str]:
    return [r for r in metadata(whl).get_all("Requires-Dist") or [] if "extra ==" not in r]


def test_base_requirements_are_ranges_without_spark(wheel: Path) -> None:
    base = base_requirements(wheel)
    names = {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in base}
    assert "pyspark" not in names and "delta-spark" not in names, base
    assert {"numpy", "pandas", "pyarrow", "pyyaml", "pillow", "requests"} <= names, base
    assert not [r for r in base if "==" in r], base  # no exact pins: the runtime's versions stay
    extras = metadata(wheel).get_all("Provides-Extra") or []
    assert {"local", "cpu", "gpu", "mlflow", "dev"} <= set(extras)
    local = [r for r in metadata(wheel).get_all("Requires-Dist") or [] if 'extra == "local"' in r]
    assert any(r.startswith("pyspark") for r in local) and any(r.startswith("delta-spark") for r in local)


def make_env(where: Path) -> Path:
    """A virtualenv without pip that sees this one's packages (after its own) through a .pth file."""
    venv.EnvBuilder(with_pip=False).create(where)
    py = where / "bin" / "python"
    own = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                         capture_output=True, text=True).stdout.strip()
    Path(own, "zz_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return py


def pip_install(py: Path, whl: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "-q", str(whl)],
                          capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def test_installing_the_wheel_leaves_the_runtimes_pyspark_in_place(wheel: Path, tmp_path: Path) -> None:
    py = make_env(tmp_path / "runtime")
    own = Path(subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                              capture_output=True, text=True).stdout.strip())
    # the runtime's own (different) Spark: pyspark 3.5.1, as a Databricks Runtime would have it
    (own / "pyspark").mkdir()
    (own / "pyspark" / "__init__.py").write_text('__version__ = "3.5.1"\n')
    info = own / "pyspark-3.5.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyspark\nVersion: 3.5.1\n")
    (info / "INSTALLER").write_text("runtime\n")
    (info / "RECORD").write_text("pyspark/__init__.py,,\n")
    done = pip_install(py, wheel)
    assert done.returncode == 0, done.stderr[-2000:]
    probe = "import importlib.metadata as m, pyspark; print(m.version('pyspark'), pyspark.__version__, m.version('hybridrec'))"
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["3.5.1", "3.5.1", "0.1.0"]


def test_the_wheels_console_script_exits_2_with_one_line(wheel: Path, tmp_path: Path) -> None:
    """A python-wheel task calls the entry point; failure must be an exit status, not a return value."""
    py = make_env(tmp_path / "job")
    done = pip_install(py, wheel)
    assert done.returncode == 0, done.stderr[-2000:]
    where = subprocess.run([str(py), "-c", "import hybridrec; print(hybridrec.__file__)"], check=True,
                           capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(tmp_path)), where  # the wheel's copy, not this clone's
    script = tmp_path / "job" / "bin" / "hybridrec-ingest"
    run = subprocess.run([str(script), "--conf", str(ROOT / "conf" / "local.yaml"), "--set",
                          "input.crawl_dir=/no/such/crawl"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("hybridrec: error:")]
    assert lines == ["hybridrec: error: crawl folder not found: /no/such/crawl (config input.crawl_dir)"], run.stderr
    assert "Traceback" not in run.stderr
    # and the entry function itself raises SystemExit(2) rather than returning it
    call = subprocess.run([str(py), "-c", "from hybridrec.jobs.ingest import main\n"
                           f"main(['--conf', {str(ROOT / 'conf' / 'local.yaml')!r}, '--set', 'input.crawl_dir=/no/such'])\n"
                           "print('returned')"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert call.returncode == 2 and "returned" not in call.stdout
