"""Packaging: the wheel carries the experiment configs; installed into a fresh virtual environment it runs
`dfer-pd demo --help` and finds a config by name; the declared Python and dependency bounds hold here."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (no build/ or egg-info left in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "experiments"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, source / name)
    shutil.copytree(REPO / "dfer_pd", source / "dfer_pd", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("dfer_pd-*.whl")
    return path


def test_wheel_carries_configs_and_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"dfer_pd/experiments/{p.relative_to(REPO / 'experiments').as_posix()}"
               for p in (REPO / "experiments").rglob("*.yaml")}
    assert shipped and shipped <= names
    assert "dfer_pd/assets/tiny_clip/config.json" in names
    assert not [n for n in names if n.startswith("tests/")]
    metadata_text = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Python: >=3.11" in metadata_text


def test_wheel_in_a_fresh_venv_runs_the_demo_help_and_finds_configs(wheel, tmp_path):
    """A fresh venv that sees the already-installed dependencies (not this checkout) gets the wheel's dfer-pd."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies from this environment's site-packages, appended after the venv's own: a plain path
    # line does not run that folder's .pth files, so this checkout's editable install stays out of it.
    Path(site, "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    script = venv / "bin" / "dfer-pd"
    elsewhere = tmp_path / "elsewhere"  # not the repository: configs must come from the installed package
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}

    def run(*args):
        result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, cwd=elsewhere, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    where = subprocess.run([str(python), "-c", "import dfer_pd; print(dfer_pd.__file__)"], capture_output=True,
                           text=True, cwd=elsewhere, env=env).stdout.strip()
    assert where.startswith(site), where
    assert "usage: dfer-pd [options] demo" in run("demo", "--help")
    assert run("configs", "pd_lstm") == (REPO / "experiments" / "pd_lstm.yaml").read_text()
    printed = yaml.safe_load(run("train-pd", "--config", "pd_lstm", "--classifier.init_args.hidden_size", "8",
                                 "--print_config"))
    assert printed["classifier"]["init_args"] == {"hidden_size": 8}
    assert printed["classifier"]["class_path"] == "dfer_pd.stage2.classifiers.ResidualRNNEstimator"
    assert run("--version").strip() == f"dfer-pd {metadata.version('dfer-pd')}"


def test_requires_python_matches_the_code():
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert "3.10" not in spec  # hashlib.file_digest (common/files.py) is 3.11+
    assert "3.11" in spec and f"{sys.version_info.major}.{sys.version_info.minor}" in spec
    assert "file_digest" in (REPO / "dfer_pd" / "common" / "files.py").read_text()


def test_installed_dependencies_satisfy_the_declared_bounds():
    """Cheap honesty check of the bounds: what CI installed and tested lies inside every declared range,
    and every range has an upper bound at the next major version."""
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    optional = [Requirement(r) for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra]
    for requirement in requirements + optional:
        if requirement.name == "dfer-pd":
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            assert requirement in optional, f"{requirement.name} is required but not installed"
            continue
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"installed {requirement.name} {installed} is outside the declared {requirement.specifier}")
    for requirement in requirements:
        upper = [s for s in requirement.specifier if s.operator == "<"]
        lower = [s for s in requirement.specifier if s.operator == ">="]
        assert upper and lower, f"{requirement} needs a tested lower bound and an upper bound"
        low, high = Version(lower[0].version), Version(upper[0].version)
        # The next major (for 0.x libraries, whose minors break, the next minor or later), never a pin.
        assert high > low and (high.major > low.major or low.major == 0), requirement
