"""Rules of the package's layout that a reviewer would otherwise have to remember."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mmlearn.data.source import Source, list_sources

PACKAGE = Path(__file__).parents[2] / "mmlearn"
RAY_PRIVATE = PACKAGE / "study" / "ray_private.py"


def test_ray_private_api_is_used_in_one_module_only() -> None:
    private = re.compile(r"^\s*(from|import)\s+ray\.\S*_internal", re.MULTILINE)
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if private.search(path.read_text())
    )
    assert users == [str(RAY_PRIVATE.relative_to(PACKAGE))]


@pytest.mark.parametrize("source", list_sources(), ids=lambda s: s.name)
def test_every_registered_source_names_its_modalities_without_data(source: Source) -> None:
    """A study is checked without data: each source must say which modalities it writes from
    its options alone (required options, such as an input file, are given a path that does
    not exist, so a source that tried to read data would fail here)."""
    required = {
        f.name: "/nonexistent/input"
        for f in dataclasses.fields(source.options)
        if f.default is dataclasses.MISSING
    }
    names = source.modalities(source.parse_options(required))
    assert isinstance(names, tuple) and len(names) >= 2
    assert len(set(names)) == len(names) and all(isinstance(n, str) and n for n in names)


def test_the_sources_package_registers_each_of_its_modules() -> None:
    folder = PACKAGE / "data" / "sources"
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}  # _: helpers
    registered = {source.build.__module__.rsplit(".", 1)[1] for source in list_sources()}
    assert modules <= registered
