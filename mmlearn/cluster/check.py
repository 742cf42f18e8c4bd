"""Check a Ray cluster file before ``ray up``: Ray's own schema, then this project's rules.

``ray up`` has no dry run and validates only once it starts launching, so ``mmlearn cluster
check`` reads the file offline. Every problem is one line, ``FILE: key.path: what is wrong``:

- Ray's schema, ``ray/autoscaler/ray-schema.json`` of the installed Ray: unknown keys (typos),
  wrong types, node resources that are not whole numbers;
- node types: ``head_node_type`` names one of ``available_node_types``, whose every type declares
  whole CPU and GPU counts and how many nodes of it may run; on-prem clusters
  (``provider.type: local``) have none of the keys Ray rejects for them, but a ``head_ip``, the
  ``worker_ips``, and the CPUs and GPUs of their nodes given to ``ray start``;
- security: token authentication on (``RAY_AUTH_MODE=token`` and the token mounted on every node),
  and the dashboard, which runs any job it is sent, bound to the head's 127.0.0.1 only (reach it
  with ``ray dashboard FILE``);
- storage: a cluster with worker nodes exports ``MMLEARN_STORAGE``, an absolute path outside the
  synced file mounts, which every node mounts (the Tune experiments, Optuna journals and results
  of every study go there);
- studies: every worker of every study (``resources:``) fits on some node type, the workers of
  one trial fit into the cluster at its largest, and a node type holds the Ray Train drivers of
  multi-worker trials (the ``mmlearn_driver`` resource, given to the head).
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import ray.autoscaler

from mmlearn.errors import ConfigError, Loc, Problem, did_you_mean, key_path, unknown_key
from mmlearn.study import StudySpec, load_study
from mmlearn.study.drivers import DRIVER_RESOURCE
from mmlearn.user_files import read_yaml_mapping, show

SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
"""Ray's cluster-file schema, shipped in the installed wheel."""

_COMMANDS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
_NODE_COMMANDS = ("initialization_commands", "worker_setup_commands")
_ON_PREM_REJECTED = {
    "available_node_types": "Ray makes one node type from provider.head_ip and worker_ips",
    "head_node_type": "Ray names the head's type itself",
    "head_node": "a legacy key; Ray aborts on it",
    "worker_nodes": "a legacy key; Ray aborts on it",
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


MAX_PROBLEM_LINES = 3
"""Lines of problems shown per cluster file; the rest are counted in the last line."""


@dataclass(frozen=True)
class NodeType:
    """A kind of node and how many of it the cluster may hold.

    Attributes:
        name: the key in ``available_node_types`` (on-prem: ``head`` or ``worker``).
        cpus: CPUs Ray schedules on one node.
        gpus: GPUs Ray schedules on one node.
        count: the most nodes of this type at once (the head type counts the head).
        drivers: ``mmlearn_driver`` slots of one node: Ray Train drivers it may host.
    """

    name: str
    cpus: float
    gpus: float
    count: int
    drivers: int = 0

    def fits(self, cpus: float, gpus: float) -> int:
        """How many workers of ``cpus`` CPUs and ``gpus`` GPUs one node holds."""
        by_cpu = math.floor(self.cpus / cpus + 1e-9)
        return min(by_cpu, math.floor(self.gpus / gpus + 1e-9)) if gpus else by_cpu

    def describe(self) -> str:
        """``gpu_1x: up to 4 x (8 CPU, 1 GPU)``, with the driver slots of a driver host."""
        drivers = f", {self.drivers} {DRIVER_RESOURCE}" if self.drivers else ""
        return f"{self.name}: up to {self.count} x ({self.cpus:g} CPU, {self.gpus:g} GPU{drivers})"


@dataclass(frozen=True)
class ClusterFile:
    """The parts of a valid cluster file that the summary shows."""

    path: Path
    provider: str
    node_types: tuple[NodeType, ...]
    storage: str | None

    def summary(self, studies: Sequence[tuple[Path, StudySpec]]) -> str:
        """A few lines: the provider, the node types, the storage and where the studies fit."""
        lines = [
            f"{self.path}: ok",
            f"  provider   {self.provider}, token auth, dashboard on the head's 127.0.0.1 "
            f"(ray dashboard {self.path})",
            f"  nodes      {'; '.join(t.describe() for t in self.node_types)}",
            f"  storage    {self.storage or 'the head alone (no worker nodes)'}",
        ]
        for path, spec in studies:
            r = spec.resources
            lines.append(
                f"  study      {path}: {r.workers} x ({r.cpus_per_worker:g} CPU, "
                f"{r.gpus_per_worker:g} GPU) per trial, up to "
                f"{self.capacity(r.cpus_per_worker, r.gpus_per_worker)} such workers at once"
            )
            per_node = [
                f"{t.name} node {r.trials_per_node(t.cpus, t.gpus)}"
                for t in self.node_types
                if t.gpus > 0
            ]
            if r.gpus_per_worker > 0 and per_node:
                lines.append(
                    f"             trials at once: {r.trials_per_gpu} per GPU, per "
                    f"{', per '.join(per_node)}"
                )
        return "\n".join(lines)

    def capacity(self, cpus: float, gpus: float) -> int:
        """How many workers of ``cpus`` CPUs and ``gpus`` GPUs the cluster holds at its largest."""
        return sum(t.count * t.fits(cpus, gpus) for t in self.node_types)


def check_clusters(paths: Sequence[str | Path], studies: Sequence[str | Path] = ()) -> str:
    """Check cluster files, and that the ``studies`` fit on each; a summary of each when valid.

    Raises:
        ConfigError: the problems of every file, one line each, each starting with its file.
    """
    problems: list[str] = []
    specs = []
    for study in studies:
        try:
            specs.append((Path(study), load_study(study)))
        except ConfigError as e:
            problems.append(str(e))
    summaries = []
    for path in paths:
        try:
            summaries.append(check_cluster(path, specs).summary(specs))
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("\n".join(problems))
    return "\n".join(summaries)


def check_cluster(path: str | Path, studies: Sequence[tuple[Path, StudySpec]] = ()) -> ClusterFile:
    """Check the cluster file at ``path``, and that each of ``studies`` fits on it.

    Raises:
        ConfigError: one line per problem, each starting with the file name.
    """
    path = Path(path)
    config = read_yaml_mapping(path, "cluster file", "(cluster_name, provider, ...)")
    problems = _schema_problems(config)
    if not problems:
        local = config["provider"]["type"] == "local"
        node_types, found = _on_prem_nodes(config) if local else _cloud_nodes(config)
        problems += found
        problems += _security_problems(config)
        storage, found = _storage(config, node_types)
        problems += found
        if not problems:
            head: Loc = (
                ("head_start_ray_commands",)
                if local
                else ("available_node_types", config["head_node_type"], "resources")
            )
            problems += _placement_problems(node_types, studies, head)
    if problems:
        lines = list(dict.fromkeys(f"{path}: {_where(loc)}{message}" for loc, message in problems))
        if len(lines) > MAX_PROBLEM_LINES:  # one slip can break many rules: show the first
            more = len(lines) - (MAX_PROBLEM_LINES - 1)
            lines = [
                *lines[: MAX_PROBLEM_LINES - 1],
                f"{path}: and {more} more problems; fix these and check again",
            ]
        raise ConfigError("\n".join(lines))  # Ray's schema can say a thing twice (anyOf)
    return ClusterFile(path, _provider(config), node_types, storage)


# ---------------------------------------------------------------------------------------------
# Ray's schema


def _schema_problems(config: dict[str, Any]) -> list[Problem]:
    """The errors of Ray's schema, in this project's words, sorted by key path."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems: list[Problem] = []
    for error in validator.iter_errors(config):
        problems += _describe(error)
    return sorted(problems, key=lambda p: [str(part) for part in p[0]])


def _describe(error: jsonschema.ValidationError) -> list[Problem]:
    """One problem per offending key of a schema error."""
    loc: Loc = tuple(error.absolute_path)
    value, rule, kind = error.instance, error.validator_value, error.validator
    if kind == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        return [((*loc, key), unknown_key(key, allowed)) for key in value if key not in allowed]
    if kind == "required":
        return [((*loc, key), "required key is missing") for key in rule if key not in value]
    if kind == "type":
        words = " or ".join(
            _TYPE_WORDS.get(t, t) for t in ([rule] if isinstance(rule, str) else rule)
        )
        hint = " (Ray counts node resources in whole units)" if "resources" in loc else ""
        return [(loc, f"must be {words}, but got {show(value)}{hint}")]
    if kind == "minimum":
        return [(loc, f"must be >= {rule}, but got {show(value)}")]
    return [(loc, f"{error.message} (Ray's cluster schema)")]


# ---------------------------------------------------------------------------------------------
# Node types


def _cloud_nodes(config: dict[str, Any]) -> tuple[tuple[NodeType, ...], list[Problem]]:
    """The node types of a cloud cluster, with the problems of their declarations."""
    types: dict[str, Any] = config.get("available_node_types") or {}
    if not types:
        return (), [(("available_node_types",), "required: the head's type and the worker types")]
    problems: list[Problem] = []
    head = config.get("head_node_type")
    if head is None:
        problems.append(
            (("head_node_type",), f"required: the type of the head, one of {', '.join(types)}")
        )
    elif head not in types:
        problems.append(
            (
                ("head_node_type",),
                f"{head!r} is not a type of available_node_types"
                f"{did_you_mean(head, types)} (they are {', '.join(types)})",
            )
        )
    node_types = []
    for name, entry in types.items():
        loc: Loc = ("available_node_types", name)
        resources = entry["resources"]
        missing = [r for r in ("CPU", "GPU") if r not in resources]
        if missing:
            problems.append(
                (
                    (*loc, "resources"),
                    f"give {' and '.join(missing)} (whole numbers, GPU: 0 for a CPU node), so that "
                    "cluster check can place the studies' workers",
                )
            )
            continue
        if name != head and "max_workers" not in entry:
            problems.append(((*loc, "max_workers"), "required: the most nodes of this type"))
            continue
        low, high = entry.get("min_workers", 0), entry.get("max_workers", 0)
        if low > high:
            problems.append(
                ((*loc, "min_workers"), f"must be <= max_workers ({high}), but got {low}")
            )
        count = high + (1 if name == head else 0)
        drivers = resources.get(DRIVER_RESOURCE, 0)
        node_types.append(NodeType(name, resources["CPU"], resources["GPU"], count, drivers))
    total = config.get("max_workers")
    least = sum(entry.get("min_workers", 0) for entry in types.values())
    if total is not None and least > total:
        problems.append(
            (("max_workers",), f"must be >= the sum of min_workers ({least}), but got {total}")
        )
    return tuple(node_types), problems


def _on_prem_nodes(config: dict[str, Any]) -> tuple[tuple[NodeType, ...], list[Problem]]:
    """The head and the workers of an on-prem cluster, with the problems of the file."""
    problems: list[Problem] = [
        ((key,), f"not supported for on-prem clusters (provider.type: local): {why}")
        for key, why in _ON_PREM_REJECTED.items()
        if key in config
    ]
    provider = config["provider"]
    if "coordinator_address" in provider:
        return (), [
            *problems,
            (
                ("provider", "coordinator_address"),
                "a coordinator's nodes are not known offline; list provider.head_ip and "
                "worker_ips instead",
            ),
        ]
    for key in ("head_ip", "worker_ips"):
        if key not in provider:
            problems.append((("provider", key), "required for an on-prem cluster"))
    workers = provider.get("worker_ips", [])
    for i, ip in enumerate(workers):
        if not isinstance(ip, str):
            problems.append((("provider", "worker_ips", i), f"must be a string, but got {ip!r}"))
        elif ip == provider.get("head_ip"):
            problems.append((("provider", "worker_ips", i), f"{ip} is the head_ip"))
        elif ip in workers[:i]:
            problems.append((("provider", "worker_ips", i), f"{ip} is listed twice"))
    count = min(len(workers), config.get("max_workers", len(workers)))
    node_types = []
    for name, key, n in (
        ("head", "head_start_ray_commands", 1),
        ("worker", "worker_start_ray_commands", count),
    ):
        node, found = _started_node(config, key, name, n)
        problems += found
        if node is not None:
            node_types.append(node)
    return tuple(node_types), problems


def _started_node(
    config: dict[str, Any], key: str, name: str, count: int
) -> tuple[NodeType | None, list[Problem]]:
    """The node that ``config[key]``'s ``ray start`` starts, from its --num-cpus/--num-gpus."""
    commands = config.get(key, [])
    found = [(i, flags) for i, c in enumerate(commands) if (flags := _ray_start(c)) is not None]
    if not found:
        return None, [
            (
                (key,),
                f"required on-prem: a `ray start` with --num-cpus=N and --num-gpus=N, so that "
                f"the {name}'s resources are known (Ray's default detects them on the node)",
            )
        ]
    i, flags = found[-1]
    problems: list[Problem] = []
    counts = {}
    for flag in ("num-cpus", "num-gpus"):
        value = flags.get(flag)
        if value is None or not value.isdigit():
            got = "nothing" if value is None else repr(value)
            problems.append(((key, i), f"--{flag} must be a whole number, but got {got}"))
        else:
            counts[flag] = int(value)
    custom, found = _custom_resources(flags.get("resources", "{}"), (key, i))
    problems += found
    if problems:
        return None, problems
    drivers = custom.get(DRIVER_RESOURCE, 0)
    return NodeType(name, counts["num-cpus"], counts["num-gpus"], count, drivers), []


def _custom_resources(text: str, loc: Loc) -> tuple[dict[str, int], list[Problem]]:
    """The custom resources of ``ray start --resources=JSON``, and their problems."""
    try:
        resources = json.loads(text)
    except json.JSONDecodeError:
        resources = None
    if not isinstance(resources, dict):
        return {}, [(loc, f"--resources must be a JSON mapping, but got {text!r}")]
    problems: list[Problem] = [
        (loc, f"--resources {name!r} must be a whole number, but got {value!r}")
        for name, value in resources.items()
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    ]
    return resources, problems


def _ray_start(command: str) -> dict[str, str] | None:
    """The ``--flag`` values of the ``ray start`` in a shell command, or None without one."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    starts = [i for i in range(len(words) - 1) if words[i : i + 2] == ["ray", "start"]]
    if not starts:
        return None
    flags: dict[str, str] = {}
    rest = words[starts[-1] + 2 :]
    for i, word in enumerate(rest):
        if not word.startswith("--"):
            continue
        name, sep, value = word[2:].partition("=")
        if not sep and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            value = rest[i + 1]
        flags[name] = value
    return flags


# ---------------------------------------------------------------------------------------------
# Security and storage


def _commands(config: dict[str, Any]) -> Iterable[tuple[Loc, str]]:
    """Every shell command of the file with its key path."""
    for key in _COMMANDS:
        for i, command in enumerate(config.get(key, [])):
            yield (key, i), command
    for name, entry in (config.get("available_node_types") or {}).items():
        for key in _NODE_COMMANDS:
            for i, command in enumerate(entry.get(key, [])):
                yield ("available_node_types", name, key, i), command


def _exports(config: dict[str, Any], variable: str) -> list[tuple[Loc, str]]:
    """The values that the file's commands give ``variable`` (``NAME=value``), with where."""
    pattern = re.compile(rf"\b{variable}=(\"[^\"]*\"|'[^']*'|[^\s;'\"&|)]+)")
    return [
        (loc, match.strip("'\""))
        for loc, command in _commands(config)
        for match in pattern.findall(command)
    ]


def _security_problems(config: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    modes = {value for _, value in _exports(config, "RAY_AUTH_MODE")}
    if modes != {"token"}:
        problems.append(
            (
                ("setup_commands",),
                "token authentication must be on: export RAY_AUTH_MODE=token for every shell "
                f"of every node (found {sorted(modes) or 'none'})",
            )
        )
    mounts = config.get("file_mounts") or {}
    if not any(str(remote).rstrip("/").endswith(".ray/auth_token") for remote in mounts):
        problems.append(
            (
                ("file_mounts",),
                'mount the token on every node: "~/.ray/auth_token": "~/.ray/auth_token" '
                "(make cluster-up creates it with ray get-auth-token --generate)",
            )
        )
    starts = config.get("head_start_ray_commands")
    if not starts:
        problems.append(
            (
                ("head_start_ray_commands",),
                "required: the provider's default (aws: --dashboard-host=0.0.0.0) opens the "
                "dashboard beyond the head; start it with --dashboard-host=127.0.0.1",
            )
        )
    for i, command in enumerate(starts or []):
        host = (_ray_start(command) or {}).get("dashboard-host")
        if host is not None and host not in _LOOPBACK:
            problems.append(
                (
                    ("head_start_ray_commands", i),
                    f"--dashboard-host={host} lets anyone who reaches the head run code on the "
                    "cluster; bind 127.0.0.1 and reach it with `ray dashboard FILE`",
                )
            )
    return problems


def _storage(
    config: dict[str, Any], node_types: Sequence[NodeType]
) -> tuple[str | None, list[Problem]]:
    """The shared storage the commands export (MMLEARN_STORAGE), with its problems."""
    exported = _exports(config, "MMLEARN_STORAGE")
    local = config["provider"]["type"] == "local"
    has_workers = any(t.count > 0 for t in node_types if t.name != _head_name(config, local))
    if not exported:
        if not has_workers:
            return None, []
        return None, [
            (
                ("setup_commands",),
                "the cluster has worker nodes, so every study's outputs need a folder every node "
                "mounts: export MMLEARN_STORAGE=/an/nfs/path for every shell of every node",
            )
        ]
    problems: list[Problem] = []
    values = {value for _, value in exported}
    if len(values) > 1:
        problems.append((exported[-1][0], f"MMLEARN_STORAGE is given {len(values)} values"))
    home = PurePosixPath("/root" if _user(config) == "root" else f"/home/{_user(config)}")
    for loc, value in exported:
        path = PurePosixPath(value.replace("~", str(home), 1) if value.startswith("~") else value)
        synced = [
            remote
            for remote in config.get("file_mounts") or {}
            if path.is_relative_to(_remote(remote, home))
        ]
        if not value.startswith("/"):
            problems.append((loc, f"MMLEARN_STORAGE must be an absolute path, but got {value!r}"))
        elif synced:
            problems.append(
                (
                    loc,
                    f"MMLEARN_STORAGE={value} lies in file mount {synced[0]}, a copy on each node;"
                    " point it at a folder every node mounts (NFS)",
                )
            )
    return exported[0][1], problems


def _remote(remote: str, home: PurePosixPath) -> PurePosixPath:
    return PurePosixPath(remote.replace("~", str(home), 1) if remote.startswith("~") else remote)


def _user(config: dict[str, Any]) -> str:
    return (config.get("auth") or {}).get("ssh_user", "ubuntu")


def _head_name(config: dict[str, Any], local: bool) -> str:
    return "head" if local else config.get("head_node_type", "")


def _provider(config: dict[str, Any]) -> str:
    provider = config["provider"]
    where = provider.get("region") or provider.get("head_ip")
    return f"{provider['type']} ({where})" if where else provider["type"]


# ---------------------------------------------------------------------------------------------
# Studies


def _placement_problems(
    node_types: Sequence[NodeType], studies: Sequence[tuple[Path, StudySpec]], head: Loc
) -> list[Problem]:
    """A problem for each study whose trials cannot be placed on the cluster.

    ``head`` is where the head's resources are declared, where driver slots belong.
    """
    problems: list[Problem] = []
    shown = "; ".join(f"{t.name} {t.cpus:g} CPU, {t.gpus:g} GPU" for t in node_types)
    for path, spec in studies:
        r = spec.resources
        worker = f"{r.cpus_per_worker:g} CPU and {r.gpus_per_worker:g} GPU"
        capacity = sum(t.count * t.fits(r.cpus_per_worker, r.gpus_per_worker) for t in node_types)
        if not any(t.fits(r.cpus_per_worker, r.gpus_per_worker) for t in node_types):
            problems.append(
                (
                    ("available_node_types",),
                    f"no node type holds a worker of {path} ({worker}; the node types: {shown})",
                )
            )
        elif capacity < r.workers:
            problems.append(
                (
                    ("max_workers",),
                    f"{path} trains each trial on {r.workers} workers of {worker}, but the "
                    f"cluster holds at most {capacity} at once",
                )
            )
        if r.workers > 1 and not any(t.count and t.drivers for t in node_types):
            problems.append(
                (
                    head,
                    f"{path} trains each trial on {r.workers} workers through a Ray Train driver,"
                    f" which takes one {DRIVER_RESOURCE!r} slot, but no node has one; give the "
                    f"head {DRIVER_RESOURCE}: 1000 (on-prem: ray start --head "
                    f"--resources='{{\"{DRIVER_RESOURCE}\": 1000}}')",
                )
            )
    return problems


# ---------------------------------------------------------------------------------------------
# Formatting


def _where(loc: Loc) -> str:
    """``available_node_types.gpu.resources.GPU: `` for a key path; empty for the whole file."""
    path = key_path(loc)
    return f"{path}: " if path else ""
