"""The install claims: pyproject's ranges hold constraints.txt's pins, every pin supports every
Python version the project claims, and the wheel builds, installs and runs.

The fast tests read metadata and build the wheel into a fresh venv that borrows this
environment's packages (nothing is downloaded; about 45 s, most of it the example script). The
slow ones (``make test-all``) ask PyPI: that the pins resolve as wheels on each claimed Python
and not on the one below, and that a fresh venv installs the wheel with its dependencies.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: Extras that `make` installs (the Makefile's EXTRAS); wandb is left out (92 MB, 34 s).
MAKE_EXTRAS = ("test", "tensorboard", "autoattack")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements(extras: tuple[str, ...] = ()) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PYPROJECT["optional-dependencies"][extra]]
    return reqs


def claimed_pythons() -> list[str]:
    """The minor versions the classifiers list, e.g. ['3.11', '3.12', '3.13']."""
    prefix = "Programming Language :: Python :: "
    found = [c[len(prefix) :] for c in PYPROJECT["classifiers"] if c.startswith(prefix)]
    return sorted((v for v in found if re.fullmatch(r"3\.\d+", v)), key=lambda v: int(v[2:]))


def test_the_python_claim_is_one_contiguous_range() -> None:
    versions = claimed_pythons()
    minors = [int(v[2:]) for v in versions]
    assert minors == list(range(minors[0], minors[-1] + 1))
    assert PYPROJECT["requires-python"] == f">={versions[0]}"


def test_runtime_dependencies_are_ranges_not_pins() -> None:
    for req in _requirements(("autoattack", "tensorboard", "wandb", "test", "mutation")):
        assert all(s.operator in (">=", "<", "!=") for s in req.specifier), str(req)
    torch = next(r for r in _requirements() if r.name == "torch")
    assert "2.15.0" in torch.specifier and "3.0" in torch.specifier  # no cap on new releases


def test_every_pin_lies_inside_its_range() -> None:
    pins = _pins()
    for req in _requirements(MAKE_EXTRAS):
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in pins  # the Makefile's TORCH chooses the build
            continue
        assert name in pins, f"{name} is not pinned in constraints.txt (run make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]}"


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def test_this_environment_is_the_lock() -> None:
    """`make` installed exactly the pins (so the next test reads the pins' own metadata); a pin
    may name a package that nothing here requires, but every requirement is installed."""
    pins = _pins()
    wrong = {n: (v, _installed(n)) for n, v in pins.items() if _installed(n) not in (v, None)}
    assert wrong == {}
    missing = [r.name for r in _requirements(MAKE_EXTRAS) if _installed(r.name) is None]
    assert missing == []


def test_every_pinned_package_supports_every_claimed_python() -> None:
    """Each installed pin's own Requires-Python admits each claimed version (numpy 2.4 needs
    3.11: the old ">=3.10" claim fails here)."""
    bad = []
    for name in filter(_installed, _pins()):
        spec = SpecifierSet(md.metadata(name).get("Requires-Python") or "")
        bad += [f"{name} on {v}" for v in claimed_pythons() if f"{v}.0" not in spec]
    assert bad == []


def test_one_version_everywhere() -> None:
    import yaml

    from advaug._version import __version__

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and {"message", "title", "authors"} <= set(cff)
    assert PYPROJECT["version"] == __version__ == cff["version"]
    assert f"## [{__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    titles = [r["title"] for r in cff["references"]]
    assert any("Unrestricted Adversarial Examples" in t for t in titles)  # the work reproduced


# ---------------------------------------------------------------------------------------------
# The Makefile's install step


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``make`` in a copy of the build files, with ``PY=false`` so that an install that starts
    fails at once (exit != 0) and one that is not needed does nothing (exit 0)."""
    cmd = ["make", "--no-print-directory", "-C", str(folder), "PY=false", "VENV=v", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_reinstalls_when_torch_or_the_pins_change(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    assert _make(tmp_path, "venv").returncode != 0  # a fresh clone installs
    spec, stamp = tmp_path / "v" / ".torch-spec", tmp_path / "v" / ".installed"
    stamp.touch()

    def age(path: Path, seconds_ago: float) -> None:
        t = time.time() - seconds_ago
        os.utime(path, (t, t))

    for path in (tmp_path / "pyproject.toml", tmp_path / "constraints.txt", spec):
        age(path, 100)
    age(stamp, 50)
    assert _make(tmp_path, "venv").returncode == 0  # installed: nothing to do
    assert _make(tmp_path, "venv", "TORCH=torch==2.14.1").returncode != 0  # another torch
    age(spec, 40)
    age(stamp, 30)  # installed again, with the new torch
    assert _make(tmp_path, "venv", "TORCH=torch==2.14.1").returncode == 0
    age(tmp_path / "constraints.txt", 20)  # new pins
    assert _make(tmp_path, "venv", "TORCH=torch==2.14.1").returncode != 0


def test_make_clean_keeps_results_and_pip_errors_show() -> None:
    text = (ROOT / "Makefile").read_text()
    clean = text.split("\nclean:")[1].split("\n\n")[0]
    assert "rm -rf" in clean and "runs" not in clean.replace("runs/", "")
    assert "|| true" not in text and "2>&1" not in text


# ---------------------------------------------------------------------------------------------
# The wheel


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)
    assert out.returncode == 0, f"{cmd}: {out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source (the work tree stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(tmp / "dist"), str(src)])  # fmt: skip
    (found,) = (tmp / "dist").glob("advaug-*.whl")
    return found


def test_the_wheel_ships_its_data(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("advaug/py.typed", "advaug/data/digits.npz", "advaug/configs/smoke.yaml",
                   "advaug/configs/robustbench.yaml", "advaug/__main__.py"):  # fmt: skip
        assert needed in names
    meta = zipfile.ZipFile(wheel).read(f"advaug-{md.version('advaug')}.dist-info/METADATA")
    assert b"Requires-Python: >=3.11" in meta and b"Provides-Extra: autoattack" in meta


def test_the_wheel_installs_and_runs(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with only the wheel installed in it (its dependencies are borrowed from
    this environment through a .pth file, so nothing is downloaded): the console script,
    ``python -m advaug`` and the example script work from the installed package."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                     ).stdout.strip())  # fmt: skip
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "borrowed.pth").write_text("\n".join(sorted(paths)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
          "--no-index", str(wheel)])  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    where = _run([str(py), "-c", "import advaug; print(advaug.__file__)"], cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(site)), where.stdout  # the wheel, not the source tree
    assert "train-classifier" in _run([str(venv / "bin" / "advaug"), "--help"], env=env).stdout
    assert "export" in _run([str(py), "-m", "advaug", "--help"], env=env).stdout
    example = ROOT / "examples" / "quickstart.py"
    assert len(example.read_text().splitlines()) <= 25
    out = _run([str(py), str(example), str(tmp_path / "qs")], cwd=tmp_path, env=env)
    assert "PGD-10 at 8/255" in out.stdout and "clean_top1" in out.stdout
    assert (tmp_path / "qs" / "export" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# Against PyPI (slow: network, 30 s to minutes each)

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")  # fmt: skip


def _resolves(python: str, tmp: Path, requirements: list[str], *extra: str) -> bool:
    """Whether pip finds wheels for ``requirements`` (under constraints.txt) on ``python``."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
           "--only-binary=:all:", "--python-version", python, "--target", str(tmp / "t"),
           "-c", str(ROOT / "constraints.txt"), *extra, *requirements]  # fmt: skip
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    return subprocess.run(cmd, capture_output=True, timeout=900).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("python", claimed_pythons())
def test_the_pins_install_as_wheels_on_each_claimed_python(python: str, tmp_path: Path) -> None:
    reqs = [str(r) for r in _requirements(("autoattack", "tensorboard")) if r.name != "torch"]
    assert _resolves(python, tmp_path, reqs)
    assert _resolves(python, tmp_path, ["torch>=2.11"], "--no-deps")


@pytest.mark.slow
def test_the_python_below_the_claim_is_refused(tmp_path: Path) -> None:
    below = f"3.{int(claimed_pythons()[0][2:]) - 1}"
    reqs = [str(r) for r in _requirements() if r.name != "torch"]
    assert not _resolves(below, tmp_path, reqs)


@pytest.mark.slow
def test_a_fresh_venv_installs_the_wheel_with_its_dependencies(wheel: Path, tmp_path: Path):
    """What `pip install advaug` does for a user of this Python (torch from pip's usual places:
    here the local CPU wheel, elsewhere PyPI's CUDA build)."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
          f"{wheel}[autoattack]"])  # fmt: skip
    assert "export" in _run([str(py), "-m", "advaug", "--help"], cwd=tmp_path).stdout


@pytest.mark.slow
def test_the_lower_bounds_work(wheel: Path, tmp_path: Path) -> None:
    """pyproject's lower bounds, installed exactly (with this environment's torch: torch's own
    lower bound, 2.11, is a multi-GB CUDA download here), run a smoke study and an export."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    torch_version = md.version("torch").split("+")[0]
    lowest = [f"{r.name}=={s.version}" for r in _requirements() if r.name != "torch"
              for s in r.specifier if s.operator == ">="]  # fmt: skip
    _run([str(py), "-m", "pip", "install", "-q", f"torch=={torch_version}"])
    _run([str(py), "-m", "pip", "install", "-q", "--only-binary=:all:", *lowest])
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    _run([str(venv / "bin" / "advaug"), "--quiet", "study", "--preset", "smoke", "--out",
          str(tmp_path / "study")], cwd=tmp_path, env=env)  # fmt: skip
    _run([str(venv / "bin" / "advaug"), "export", str(tmp_path / "study" / "classifiers" /
          "none-s0")], cwd=tmp_path, env=env)  # fmt: skip


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_looks_for_mnist_where_the_readme_says(tmp_path: Path) -> None:
    """$ADVAUG_DATA first, then ../shared/data where it exists, then ./data (where the demo's
    data.download puts MNIST). Checked with `make -n` (nothing runs) on a copy of the Makefile
    whose venv is stamped as installed."""
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copy(ROOT / "Makefile", work / "Makefile")

    def demo_line(*args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(
            ["make", "-n", "-o", "v/.installed", "demo", "VENV=v", *args],
            cwd=work,
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "ADVAUG_DATA"} | (env or {}),
        )
        assert out.returncode == 0, out.stderr
        return next(line for line in out.stdout.splitlines() if "study --preset demo" in line)

    assert demo_line().startswith("ADVAUG_DATA=data ")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert demo_line().startswith("ADVAUG_DATA=../shared/data ")
    assert demo_line(env={"ADVAUG_DATA": "/mine"}).startswith("ADVAUG_DATA=/mine ")
    assert demo_line("DEMO_DATA=/there").startswith("ADVAUG_DATA=/there ")
