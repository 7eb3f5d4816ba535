"""A non-editable install must carry every subpackage (an editable one hides omissions)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_for_setuptools():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "trionet_dsl").rglob("__init__.py")}
    assert on_disk <= listed, f"missing from [tool.setuptools] packages: {sorted(on_disk - listed)}"
    for pkg, folder in cfg["package-dir"].items():  # grammar and shipped spaces ride along as package data
        assert pkg in listed and (ROOT / folder).is_dir()
    assert (ROOT / "grammars" / "space.lark").is_file()
