"""Read the files a user hands to mmlearn (study and cluster files, store manifests) defensively.

Whatever a file holds, reading it ends in its content or in one line that names the file and
what is wrong: a folder or a missing path, no permission, more than a sane size, bytes that are
not UTF-8, an empty file, YAML or JSON that does not parse, nesting deeper than any real file's,
YAML aliases that expand to more nodes than any real file has (an "alias bomb": ten lines of
anchors of anchors that expand to 10**9 nodes), a key given twice, a key that is not text, or
content that is not a mapping. YAML is read by PyYAML's ``SafeConstructor``: a tag that constructs a
Python object (``!!python/object``) is an error, never a call.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.cyaml import CParser
from yaml.events import AliasEvent
from yaml.resolver import Resolver

from mmlearn.errors import ConfigError, MmlearnError

MAX_BYTES = 1 << 20
"""The largest study or cluster file read (1 MiB: the shipped ones are a few KiB)."""
MAX_DEPTH = 50
"""The deepest nesting of mappings and lists read (the shipped files nest 6 levels at most)."""
MAX_NODES = 100_000
"""The most YAML nodes a file may expand to, every alias counted at its full size."""


def read_text(
    path: Path, kind: str, error: type[MmlearnError] = ConfigError, limit: int = MAX_BYTES
) -> str:
    """The UTF-8 text of the file at ``path``, at most ``limit`` bytes.

    Args:
        path: the file.
        kind: what the file is, for messages (``study file``).
        error: the error to raise.
        limit: the largest size read.

    Raises:
        error: the path is no readable file, is larger than ``limit`` or is not UTF-8.
    """
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)  # not st_size: /dev/zero and pipes have none
    except IsADirectoryError as e:
        raise error(f"{path}: is a folder, but a {kind} is expected there") from e
    except OSError as e:
        raise error(f"{path}: cannot read the {kind} ({e.strerror or e})") from e
    if len(data) > limit:
        raise error(
            f"{path}: a {kind} is at most {limit / 2**20:g} MiB, but this file is larger; "
            "is it the right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(
            f"{path}: a {kind} is UTF-8 text, but byte {e.start} (line {line}) is "
            f"0x{data[e.start]:02x}; save the file as UTF-8"
        ) from e


def read_yaml_mapping(path: Path, kind: str, keys: str) -> dict[str, Any]:
    """The mapping that the YAML file at ``path`` holds: a study or cluster file.

    Args:
        path: the file.
        kind: what the file is, for messages (``study file``).
        keys: what its keys are, for the message when it holds no mapping.

    Raises:
        ConfigError: in one line that names the file, for any of the problems of the module's
            docstring.
    """
    text = read_text(path, kind)
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {_yaml_problem(e)}") from e
    if raw is None:
        raise ConfigError(f"{path}: the {kind} is empty; it is a mapping {keys}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {kind} is a mapping {keys}, but got {show(raw)}")
    return raw


def parse_yaml(text: str) -> Any:
    """The plain data (mappings, lists, scalars) of a YAML document, within this module's limits.

    Raises:
        yaml.YAMLError: the text is not YAML, or breaks a limit.
    """
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeConstructor: plain data only


def read_json_mapping(path: Path, kind: str, error: type[MmlearnError], fix: str) -> dict[str, Any]:
    """The mapping that the JSON file at ``path`` holds (a store's manifest).

    Args:
        path: the file.
        kind: what the file is, for messages (``store manifest``).
        error: the error to raise.
        fix: what the user should do, appended to every message.

    Raises:
        error: in one line that names the file, for any of the problems of the module's
            docstring.
    """
    text = read_text(path, kind, error, limit=16 * MAX_BYTES)
    try:
        raw = json.loads(text, object_pairs_hook=_unique_json_object)
    except ValueError as e:  # JSONDecodeError, and a key given twice
        raise error(f"{path} is malformed ({e}); {fix}") from e
    except RecursionError as e:
        raise error(f"{path} is malformed (nested too deeply); {fix}") from e
    if not isinstance(raw, dict):
        raise error(f"{path}: a {kind} is a JSON object, but got {show(raw)}; {fix}")
    return raw


def _unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"key {twice!r} is given twice")
    return found


class _Loader(Composer, CParser, SafeConstructor, Resolver):
    """SafeLoader with the fixes and limits of user files.

    It is ``yaml.CSafeLoader`` (libyaml's parser, 20 times faster than PyYAML's) but for the
    composer, which is PyYAML's, so that it can count: libyaml's is recursive C that no limit
    stops.

    It reads ``1e-5`` as a float (YAML 1.2; YAML 1.1 wants ``1.0e-5``); it rejects a key given
    twice in one mapping (YAML keeps the last one silently) and a key that is not text; and it
    stops composing at ``MAX_DEPTH`` levels and at ``MAX_NODES`` nodes, aliases expanded, before
    the constructor or anything downstream walks the document.
    """

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it expands to, once composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if self._depth >= MAX_DEPTH:
            raise ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
            )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(event, AliasEvent):
            if id(node) not in self._sizes:
                raise ComposerError(
                    None, None, f"alias *{event.anchor} refers to itself", event.start_mark
                )
            size = self._sizes[id(node)]
        elif isinstance(node, yaml.ScalarNode):
            size = 1
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(item)] for item in node.value)
        else:
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        if size > MAX_NODES:
            raise ComposerError(
                None,
                None,
                f"its aliases expand to more than {MAX_NODES} nodes (an alias bomb?)",
                event.start_mark,
            )
        self._sizes[id(node)] = size
        return node


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _unique_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)  # resolve '<<' merges first, as construct_mapping does
    seen: set[str] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            if isinstance(key_node, yaml.ScalarNode):
                message = f"key {show(key)} is not text; keys are names (quote it: "
                message += f"'{key_node.value}')"
            else:
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                message = f"a key is a {kind}; keys are names"
            raise ConstructorError(None, None, message, key_node.start_mark)
        if key in seen:
            raise ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``line L, column C: problem`` of a YAML error, on one line."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"invalid YAML: {' '.join(str(error).split())}"
    mark = error.problem_mark
    context = f" ({error.context})" if error.context else ""
    problem = " ".join(str(error.problem).split())
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"


def show(value: Any, limit: int = 60) -> str:
    """A short repr of a user's value, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
