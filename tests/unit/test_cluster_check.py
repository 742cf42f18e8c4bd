"""Cluster files: every shipped one passes `mmlearn cluster check`, each broken one fails in a line.

Also the storage folder a cluster sets on its nodes (MMLEARN_STORAGE) and cluster/submit.py, the
script `ray submit` runs on the head.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmlearn.cluster.check import check_cluster, check_clusters
from mmlearn.errors import ConfigError
from mmlearn.study import load_study

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = sorted((ROOT / "cluster").glob("*.yaml"))
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))
BROKEN = ROOT / "tests" / "assets" / "cluster"
GPU = ROOT / "cluster" / "gpu.yaml"
ON_PREM = ROOT / "cluster" / "onprem.yaml"


def problem(path: Path, *studies: Path) -> str:
    """The one problem of a broken cluster file."""
    with pytest.raises(ConfigError) as e:
        check_clusters([path], studies)
    lines = str(e.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: ")
    return lines[0]


def edited(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """A copy of ``source`` with the one occurrence of ``old`` replaced by ``new``."""
    text = source.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / source.name
    path.write_text(text.replace(old, new))
    return path


# ---------------------------------------------------------------------------------------------
# Shipped cluster files


def test_cluster_files_are_found() -> None:
    assert {p.name for p in CLUSTERS} == {"gpu.yaml", "onprem.yaml"}


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.stem)
def test_every_cluster_file_holds_every_shipped_study(path: Path) -> None:
    summary = check_clusters([path], STUDIES)
    assert summary.startswith(f"{path}: ok")
    assert summary.count("\n  study      ") == len(STUDIES)
    assert "storage    /mnt/shared/runs" in summary


def test_gpu_cluster_capacity_is_counted_per_node_type() -> None:
    cluster = check_cluster(GPU)
    assert [(t.name, t.cpus, t.gpus, t.count) for t in cluster.node_types] == [
        ("head", 8, 0, 1),
        ("gpu_1x", 8, 1, 4),
        ("gpu_4x", 48, 4, 2),
    ]
    # (4 CPU, 1 GPU) workers: none on the head, 1 per gpu_1x (its GPU), 4 per gpu_4x (its GPUs).
    assert cluster.capacity(4, 1) == 0 + 4 * 1 + 2 * 4
    # (1 CPU, 0 GPU) workers: as many as CPUs, 8 + 4 x 8 + 2 x 48.
    assert cluster.capacity(1, 0) == 136
    # Fractional GPUs pack: 0.25 GPU and 2 CPU -> gpu_1x holds min(8 / 2, 1 / 0.25) = 4.
    assert cluster.capacity(2, 0.25) == 4 * 4 + 2 * min(24, 16)


def test_on_prem_nodes_come_from_ray_start_flags_and_worker_ips() -> None:
    cluster = check_cluster(ON_PREM)
    assert [(t.name, t.cpus, t.gpus, t.count) for t in cluster.node_types] == [
        ("head", 16, 0, 1),
        ("worker", 32, 4, 2),
    ]


# ---------------------------------------------------------------------------------------------
# Broken copies: one line each, naming the file, the key and what is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "typo_key.yaml",
            "idle_timout_minutes: unknown key; did you mean 'idle_timeout_minutes'?",
        ),
        (
            "fractional_resource.yaml",
            "available_node_types.gpu_1x.resources.GPU: must be a whole number, but got 0.5 "
            "(Ray counts node resources in whole units)",
        ),
        (
            "missing_head_type.yaml",
            "head_node_type: required: the type of the head, one of head, gpu_1x, gpu_4x",
        ),
    ],
)
def test_broken_copies_fail_in_one_line(name: str, expected: str) -> None:
    assert expected in problem(BROKEN / name)


@pytest.mark.parametrize(
    ("source", "old", "new", "expected"),
    [
        (GPU, "head_node_type: head", "head_node_type: haed",
         "head_node_type: 'haed' is not a type of available_node_types; did you mean 'head'?"),
        (GPU, "resources: {CPU: 48, GPU: 4}", "resources: {CPU: 48}",
         "available_node_types.gpu_4x.resources: give GPU (whole numbers"),
        (GPU, "    max_workers: 2\n", "",
         "available_node_types.gpu_4x.max_workers: required: the most nodes of this type"),
        (GPU, "max_workers: 6", "max_workers: 6\nmax_workers: 7",
         "invalid YAML at line 21, column 1: key 'max_workers' is given twice"),
        (GPU, "'export RAY_AUTH_MODE=token'", "'export RAY_AUTH_MODE=disabled'",
         "setup_commands: token authentication must be on: export RAY_AUTH_MODE=token for "
         "every shell of every node (found ['disabled'])"),
        (GPU, "  ~/.ray/auth_token: ~/.ray/auth_token\n", "",
         'file_mounts: mount the token on every node: "~/.ray/auth_token"'),
        (GPU, "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0",
         "head_start_ray_commands[1]: --dashboard-host=0.0.0.0 lets anyone who reaches the head"),
        (GPU, "'export MMLEARN_STORAGE=/mnt/shared/runs'", "'export MMLEARN_VENV=$HOME/venv'",
         "setup_commands: the cluster has worker nodes, so every study's outputs need a folder "
         "every node mounts: export MMLEARN_STORAGE="),
        (GPU, "MMLEARN_STORAGE=/mnt/shared/runs", "MMLEARN_STORAGE=/home/ubuntu/mmlearn/runs",
         "setup_commands[2]: MMLEARN_STORAGE=/home/ubuntu/mmlearn/runs lies in file mount "
         "~/mmlearn, a copy on each node"),
        (ON_PREM, "file_mounts:", "available_node_types: {}\nfile_mounts:",
         "available_node_types: not supported for on-prem clusters (provider.type: local)"),
        (ON_PREM, "--num-gpus=4", "--num-gpus=0.5",
         "worker_start_ray_commands[1]: --num-gpus must be a whole number, but got '0.5'"),
        (ON_PREM, " --num-cpus=16", "",
         "head_start_ray_commands[1]: --num-cpus must be a whole number, but got nothing"),
        (ON_PREM, "worker_ips: [10.0.0.11, 10.0.0.12]", "worker_ips: [10.0.0.11, 10.0.0.11]",
         "provider.worker_ips[1]: 10.0.0.11 is listed twice"),
        (ON_PREM, '{"mmlearn_driver": 1000}', '{"mmlearn_driver": 0.5}',
         "head_start_ray_commands[1]: --resources 'mmlearn_driver' must be a whole number, but "
         "got 0.5"),
    ],
)  # fmt: skip
def test_each_broken_rule_fails_in_one_line(
    tmp_path: Path, source: Path, old: str, new: str, expected: str
) -> None:
    assert expected in problem(edited(tmp_path, source, old, new))


def quickstart_with(tmp_path: Path, workers: int, cpus: float, gpus: float) -> Path:
    """studies/quickstart.yaml with other resources per trial."""
    return edited(
        tmp_path,
        ROOT / "studies" / "quickstart.yaml",
        "resources: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0",
        f"resources: {{workers: {workers}, cpus_per_worker: {cpus}, gpus_per_worker: {gpus}",
    )


def test_a_study_that_does_not_fit_names_the_study_and_the_node_types(tmp_path: Path) -> None:
    study = quickstart_with(tmp_path, workers=1, cpus=4, gpus=8)
    assert (
        f"available_node_types: no node type holds a worker of {study} (4 CPU and 8 GPU; "
        "the node types: head 8 CPU, 0 GPU; gpu_1x 8 CPU, 1 GPU; gpu_4x 48 CPU, 4 GPU)"
    ) in problem(GPU, study)
    # 3 workers of 4 GPUs: one per node on the 2 workers of the on-prem cluster.
    study = quickstart_with(tmp_path, workers=3, cpus=4, gpus=4)
    assert (
        f"max_workers: {study} trains each trial on 3 workers of 4 CPU and 4 GPU, but the "
        "cluster holds at most 2 at once"
    ) in problem(ON_PREM, study)


@pytest.mark.parametrize(
    ("source", "old", "where"),
    [
        (GPU, ", mmlearn_driver: 1000", "available_node_types.head.resources"),
        (ON_PREM, " --resources='{\"mmlearn_driver\": 1000}'", "head_start_ray_commands"),
    ],
)
def test_multi_worker_studies_need_driver_slots_on_the_head(
    tmp_path: Path, source: Path, old: str, where: str
) -> None:
    study = ROOT / "studies" / "two_nodes.yaml"
    assert load_study(study).resources.workers == 2
    assert (
        f"{where}: {study} trains each trial on 2 workers through a Ray Train driver, which "
        "takes one 'mmlearn_driver' slot, but no node has one"
    ) in problem(edited(tmp_path, source, old, ""), study)


def test_cli_prints_every_problem_in_one_line_each_and_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mmlearn", "cluster", "check", "cluster/gpu.yaml",
         "tests/assets/cluster/typo_key.yaml", "tests/assets/cluster/missing_head_type.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(
        "mmlearn: error: tests/assets/cluster/typo_key.yaml: idle_timout_minutes: unknown key"
    )
    assert lines[1].startswith("tests/assets/cluster/missing_head_type.yaml: head_node_type:")


# ---------------------------------------------------------------------------------------------
# What a cluster's nodes set: the storage folder, and the submit script


def test_storage_comes_from_the_environment_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    quickstart = ROOT / "studies" / "quickstart.yaml"
    monkeypatch.delenv("MMLEARN_STORAGE", raising=False)
    assert load_study(quickstart).storage == Path("runs")
    monkeypatch.setenv("MMLEARN_STORAGE", "/mnt/shared/runs")
    assert load_study(quickstart).storage == Path("/mnt/shared/runs")
    monkeypatch.setenv("MMLEARN_STORAGE", "")
    assert load_study(quickstart).storage == Path("runs")


def submit(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """cluster/submit.py as `ray submit` runs it on a head whose home is ``home``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MMLEARN_", "RAY_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "cluster" / "submit.py"), *args],
        capture_output=True,
        text=True,
        env={**clean, "HOME": str(home), **env},
    )


def test_submit_runs_the_study_of_the_synced_repository(tmp_path: Path) -> None:
    studies = tmp_path / "mmlearn" / "studies"
    studies.mkdir(parents=True)
    missing = submit(tmp_path, "nope")
    assert missing.returncode == 2
    assert missing.stderr == f"submit.py: error: no study {studies}/nope.yaml on the head " \
        "(the studies there: none)\n"  # fmt: skip
    (studies / "broken.yaml").write_text("name: broken\n")
    bare = submit(tmp_path, "broken")
    assert bare.returncode == 2
    assert "RAY_AUTH_MODE, MMLEARN_STORAGE, MMLEARN_VENV not set" in bare.stderr
    # The head's environment: mmlearn of MMLEARN_VENV, here a script that shows how it was run.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "mmlearn").write_text('#!/bin/sh\necho "$PWD $RAY_ADDRESS $*"\n')
    (venv / "bin" / "mmlearn").chmod(0o755)
    cluster = {"RAY_AUTH_MODE": "token", "MMLEARN_STORAGE": str(tmp_path / "shared"),
               "MMLEARN_VENV": str(venv)}  # fmt: skip
    ran = submit(tmp_path, "broken", **cluster)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"{tmp_path}/mmlearn auto study run {studies}/broken.yaml\n"


def test_fractional_gpus_are_packed_per_gpu_and_per_node(tmp_path: Path) -> None:
    study = quickstart_with(tmp_path, workers=1, cpus=2, gpus=0.25)
    spec = load_study(study)
    assert (
        "  packing    4 trials share a GPU (0.25 GPU each); a GPU node runs "
        "min(4 x its GPUs, its CPUs / 2) trials at once"
    ) in spec.summary()
    # gpu_1x: 8 CPUs hold 4, 1 GPU holds 4; gpu_4x: 48 CPUs hold 24, 4 GPUs hold 16.
    summary = check_clusters([GPU], [study])
    assert "trials at once: 4 per GPU, per gpu_1x node 4, per gpu_4x node 16" in summary


def test_many_problems_of_one_file_are_shown_three_lines_at_most(tmp_path: Path) -> None:
    import yaml

    config = yaml.safe_load(GPU.read_text())
    for name, node_type in config["available_node_types"].items():
        node_type.pop("resources")  # a required key missing in every node type
        node_type[f"resourcez_{name}"] = {}  # and an unknown key beside it
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as e:
        check_cluster(path)
    lines = str(e.value).splitlines()
    assert len(lines) == 3, lines
    assert lines[-1].startswith(f"{path}: and ") and "more problems; fix these" in lines[-1]
