"""Read a study file into a StudySpec, turning every problem into one line that names the file.

Each line reads ``FILE: key.path[1].sub: what is wrong, the value, and the fix``. Problems are
found in two phases (see ``mmlearn.study.spec``): every section's own problems at once, then,
once the sections are well formed, those that span sections.

On a cluster, ``MMLEARN_STORAGE`` in the environment replaces the storage folder of every study,
so that its outputs land where every node sees them (``MMLEARN_AIM_REPO`` moves its Aim runs).
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mmlearn.errors import ConfigError, Loc, did_you_mean, key_path, unknown_key
from mmlearn.study._errors import ERROR_TYPE
from mmlearn.study.spec import StudySpec
from mmlearn.user_files import read_yaml_mapping, show

STORAGE_ENV = "MMLEARN_STORAGE"
"""When set (not empty), the ``storage`` of every study: a cluster's shared folder."""


def load_study(path: str | Path) -> StudySpec:
    """Read and validate the study file at ``path``, without starting Ray or reading data.

    Only a prepared store's manifest is read, and only when the store exists.

    Raises:
        ConfigError: one line per problem, each starting with the file name.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "study file", "of sections (name, data, methods, ...)")
    try:
        return StudySpec.model_validate(_storage_override(raw))
    except ValidationError as e:
        lines = _one_line_per_rule(_missing_keys_together(e.errors()))
        raise ConfigError("\n".join(f"{path}: {line}" for line in lines)) from e


def _missing_keys_together(errors: list[ErrorDetails]) -> list[tuple[Loc, str]]:
    """(key path, message) of each error, the required keys missing from one section in one
    (random bytes that happen to be a mapping lack every section)."""
    problems: list[tuple[Loc, str]] = []
    missing: dict[Loc, list[tuple[Loc, str]]] = {}
    for d in errors:
        loc = d["loc"]
        if d["type"] == "missing" and loc and isinstance(loc[-1], str):
            if loc[:-1] not in missing:
                problems.append((loc[:-1], ""))  # its place among the problems
            missing.setdefault(loc[:-1], []).append((loc, _describe(d)))
        else:
            problems.append((loc, _describe(d)))
    for i, (section, message) in enumerate(problems):
        if message:
            continue
        keys = missing[section]
        if len(keys) == 1:
            problems[i] = (keys[0][0], f"required key is missing ({keys[0][1]})")
        else:
            listed = ", ".join(f"{loc[-1]} ({what})" for loc, what in keys)
            problems[i] = (section, f"required keys are missing: {listed}")
    return problems


def _one_line_per_rule(problems: list[tuple[Loc, str]]) -> list[str]:
    """``key.path: message`` of each problem, those that repeat a message at other list
    indices (one removed modality breaks every condition) folded into the first one's line."""
    groups: dict[tuple[Loc, str], list[Loc]] = {}
    for loc, message in problems:
        shape = tuple("[]" if isinstance(part, int) else part for part in loc)
        groups.setdefault((shape, message), []).append(loc)
    lines = []
    for (_, message), locs in groups.items():
        more = f" (and at {len(locs) - 1} more indices)" if len(locs) > 1 else ""
        lines.append(f"{key_path(locs[0])}: {message}{more}" if locs[0] else message)
    return lines


def _storage_override(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with ``storage`` from ``$MMLEARN_STORAGE`` when that is set.

    A cluster exports it on every node, so that every study writes where every node sees it,
    whatever its file says.
    """
    storage = os.environ.get(STORAGE_ENV)
    return {**raw, "storage": storage} if storage else raw


def check_studies(paths: Sequence[str | Path]) -> str:
    """Validate study files; a summary of each when all are valid.

    Raises:
        ConfigError: the problems of every invalid file, one line each.
    """
    summaries, problems = [], []
    for path in paths:
        try:
            summaries.append(f"{path}: ok\n{load_study(path).summary()}")
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("\n".join(problems))
    return "\n".join(summaries)


def _describe(error: ErrorDetails) -> str:
    """The message of one pydantic error, in this project's words."""
    loc, kind, got = error["loc"], error["type"], show(error["input"])
    if kind in (ERROR_TYPE, "value_error"):
        message = error["msg"].removeprefix("Value error, ")
    elif kind == "missing":
        section = _section_at(loc[:-1])
        if isinstance(section, type) and issubclass(section, BaseModel):
            message = section.model_fields[str(loc[-1])].description or ""
        else:  # an item of a list of fixed length
            message = "a value is missing here"
    elif kind == "extra_forbidden":
        message = unknown_key(str(loc[-1]), _section_at(loc[:-1]).model_fields)
    elif kind == "literal_error":
        expected = error.get("ctx", {})["expected"]
        hint = did_you_mean(str(error["input"]), re.findall(r"'([^']*)'", expected))
        message = f"must be {expected}, but got {got}{hint}"
    elif kind in ("model_type", "dict_type"):
        message = f"must be a mapping, but got {got}"
    elif kind in ("tuple_type", "list_type"):
        message = f"must be a list, but got {got}"
    else:
        message = f"{error['msg'].replace('Input should be', 'must be', 1)}, but got {got}"
    return message.removesuffix(".")  # some rules end their sentence, most do not


def _section_at(loc: Loc) -> type[BaseModel]:
    """The section model at key path ``loc`` (which pydantic reported, so it exists)."""
    tp: Any = StudySpec
    for part in loc:
        tp = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            tp = tp.model_fields[str(part)].annotation
        else:  # a tuple of sections, or a mapping of them
            tp = typing.get_args(tp)[0 if isinstance(part, int) else -1]
    return _strip(tp)


def _strip(tp: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``X | None``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(arm for arm in typing.get_args(tp) if arm is not type(None))
        else:
            return tp
