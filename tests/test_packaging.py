"""What a non-editable install and the sdist carry (an editable install hides omissions).

The full wheel flow (build, install into a fresh venv, compile/train/search/export/diff from a
folder outside the repo) is .ci/wheel_check.sh; these are the fast checks.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _packages_on_disk() -> set[str]:
    """Every folder under trionet_dsl/ holding Python code (with or without an __init__.py)."""
    return {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "trionet_dsl").rglob("*.py")
        if "__pycache__" not in p.parts
    }


def test_every_subpackage_is_listed_for_setuptools():
    listed = set(SETUPTOOLS["packages"])
    on_disk = _packages_on_disk()
    assert on_disk <= listed, f"missing from [tool.setuptools] packages: {sorted(on_disk - listed)}"
    for pkg, folder in SETUPTOOLS["package-dir"].items():  # grammar and shipped spaces ride along as package data
        assert pkg in listed and (ROOT / folder).is_dir()
    stale = {p for p in listed - on_disk if p not in SETUPTOOLS["package-dir"]}
    assert not stale, f"listed in [tool.setuptools] packages but not on disk: {sorted(stale)}"
    assert (ROOT / "grammars" / "space.lark").is_file()


def test_package_data_globs_cover_the_shipped_files():
    data = SETUPTOOLS["package-data"]
    for pkg, folder in SETUPTOOLS["package-dir"].items():
        files = [p.name for p in (ROOT / folder).iterdir() if p.is_file() and not p.name.startswith(".")]
        uncovered = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in data.get(pkg, []))]
        assert not uncovered, f"{folder}/ files a wheel would leave out: {uncovered}"


def test_shipped_spaces_and_archs_load_through_importlib_resources():
    """Found as package resources (a wheel has no spaces/ folder; an editable install of a
    package-dir mapped namespace falls back to the source tree), then parsed and checked."""
    from trionet_dsl.app.shipped import shipped_names
    from trionet_dsl.lang.files import find_space, shipped_space
    from trionet_dsl.space.loader import compile_arch_text, compile_space_text

    names = shipped_names()
    assert names["spaces"] == sorted(p.stem for p in (ROOT / "spaces").glob("*.space")) and names["spaces"]
    assert names["archs"] == sorted(p.name for p in (ROOT / "spaces" / "archs").glob("*.arch")) and names["archs"]
    for name in names["spaces"]:
        entry = shipped_space(name)
        assert entry is not None
        assert compile_space_text(entry.read_text(encoding="utf-8"), name).name == name
    for name in names["archs"]:
        entry = shipped_space(name)
        assert entry is not None
        la = compile_arch_text(entry.read_text(encoding="utf-8"))  # no file: its space is found among the shipped
        assert find_space(la.space.name).is_file()


def test_python_m_prints_the_pyproject_version(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [sys.executable, "-m", "trionet_dsl", "--version"],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"trionet-dsl {PYPROJECT['project']['version']}"


def test_one_version_number():
    import trionet_dsl

    assert trionet_dsl.__version__ == PYPROJECT["project"]["version"]
    text = (ROOT / "trionet_dsl" / "__init__.py").read_text()
    assert PYPROJECT["project"]["version"] not in text  # read from the package metadata, not repeated


def test_metadata_accepts_a_torch_range_and_ci_pins_it():
    torch_dep = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert "==" not in torch_dep and "<" in torch_dep and ">=" in torch_dep
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
    assert "LICENSE" in PYPROJECT["project"]["license-files"] and (ROOT / "LICENSE").is_file()


# --------------------------------------------------------------------------- sdist contents
def _manifest_rules() -> list[tuple[str, list[str]]]:
    rules = []
    for line in (ROOT / "MANIFEST.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            cmd, *args = line.split()
            rules.append((cmd, args))
    return rules


def _manifest_includes(rel: str) -> bool:
    """Whether MANIFEST.in (the commands it uses) puts ``rel`` into the sdist; later rules win."""
    path = Path(rel)
    keep = False
    for cmd, args in _manifest_rules():
        if cmd == "include":
            keep = keep or any(fnmatch.fnmatch(rel, a) for a in args)
        elif cmd == "graft":
            keep = keep or any(rel.startswith(a.rstrip("/") + "/") for a in args)
        elif cmd == "prune":
            keep = keep and not any(rel.startswith(a.rstrip("/") + "/") for a in args)
        elif cmd == "recursive-include":
            d, pats = args[0], args[1:]
            keep = keep or (rel.startswith(d + "/") and any(fnmatch.fnmatch(path.name, p) for p in pats))
        elif cmd == "global-exclude":
            keep = keep and not any(fnmatch.fnmatch(path.name, p) or p in path.parts for p in args)
        else:
            raise AssertionError(f"MANIFEST.in command this test does not understand: {cmd}")
    return keep


def test_sdist_manifest_carries_what_the_tests_need():
    needed = [
        "tests/conftest.py",
        "tests/helpers.py",
        "constraints.txt",
        "LICENSE",
        "README.md",
        "grammars/space.lark",
        "editors/vscode/syntaxes/trionet.tmLanguage.json",
        ".ci/run",
        ".ci/wheel_check.sh",
    ]
    needed += [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".hypothesis" not in p.parts
    ]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "spaces").rglob("*") if p.is_file()]
    missing = [rel for rel in needed if not _manifest_includes(rel)]
    assert not missing, f"the sdist would leave out: {missing}"
    assert any(rel.startswith("tests/data/") for rel in needed)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("TRIONET_SLOW"), reason="slow: set TRIONET_SLOW=1 (CI builds the sdist in .ci/wheel_check.sh)"
)
def test_built_sdist_lists_the_test_files(tmp_path):
    """Builds the sdist for real (needs the `build` package; a minute with a cold cache)."""
    pytest.importorskip("build")
    r = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    import tarfile

    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for rel in (
        "tests/conftest.py",
        "tests/helpers.py",
        "tests/data/tiny.space",
        "constraints.txt",
        "LICENSE",
        "grammars/space.lark",
        "spaces/trionet_small.space",
        "spaces/archs/resnet50.arch",
    ):
        assert rel in names, rel


def test_ci_runs_the_readme_test_command_unchanged():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv && ")]
    test_cmd = next(c for c in commands if c.endswith("-m pytest -q"))
    assert test_cmd in ci
    assert all("-c constraints.txt" in c for c in commands)  # torch==2.13.0 pinned the same way
    assert (ROOT / ".ci" / "wheel_check.sh").is_file() and "bash .ci/wheel_check.sh" in ci
