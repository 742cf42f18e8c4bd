"""A real Ray cluster of two nodes on this machine: both run work, and both are gone afterwards.

A tiny study runs on it with 2-worker trials of 2 CPUs each, so every trial's Train workers are
spread over both nodes; results, Aim runs and where the workers ran are checked.

The nodes are two ``ray start`` processes (a head and a node that joins it), 2 CPUs each, with
token authentication. Drivers run as their own processes with ``cluster.client_env``: a driver
inside pytest would carry whatever authentication mode an earlier local ``ray.init`` left in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pandas as pd
import pytest

from mmlearn.cluster.local import LocalCluster
from tests.integration.studies import aim_runs, study_file

# A driver that places one task on each bundle of a STRICT_SPREAD placement group (one bundle per
# node, never two on one) and prints the alive nodes and the node each task ran on.
SPREAD_PROBE = """
import json, ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init(log_to_driver=False)
alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
ray.get(group.ready(), timeout=60)

@ray.remote(num_cpus=1)
def node_id():
    return ray.get_runtime_context().get_node_id()

ran = ray.get([
    node_id.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group, i)).remote()
    for i in range(2)
])
print(json.dumps({"alive": alive, "ran": ran}))
"""


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[LocalCluster]:
    """A head and one more node, 2 CPUs each; stopped after the module, however its tests end.

    Its ``address`` is what ``RAY_ADDRESS`` takes; ``run(command)`` runs a driver (e.g.
    ``mmlearn study run FILE``) with ``client_env`` and returns its exit code. Both nodes see the
    same disk, so any folder is storage they share. Teardown fails the module if any process of
    the cluster outlived its node's stop.
    """
    cluster = LocalCluster(nodes=2, cpus=2)
    with cluster:
        yield cluster
    assert cluster.killed == [], "processes outlived their node's SIGTERM"
    assert cluster.processes() == []


def test_a_task_runs_on_each_of_the_two_nodes(two_node_cluster: LocalCluster) -> None:
    processes = Counter(p.name() for p in two_node_cluster.processes())
    assert processes["raylet"] == 2 and processes["gcs_server"] == 1, processes
    probe = subprocess.run(
        [sys.executable, "-c", SPREAD_PROBE],
        capture_output=True,
        text=True,
        env={**os.environ, **two_node_cluster.client_env},
        timeout=180,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert len(found["alive"]) == 2
    assert sorted(found["ran"]) == found["alive"]


def test_a_study_places_each_trials_two_workers_on_both_nodes(
    two_node_cluster: LocalCluster, mfeat_path, tmp_path
) -> None:
    path = study_file(
        tmp_path,
        mfeat_path,
        name="spread",
        methods=[{"name": "early_fusion", "fixed": {"hidden": 16, "cls_layers": [16]}}],
        train={"epochs": 2, "batch_size": 128, "lr": 5e-3},
        search={"sampler": "tpe", "trials_per_cell": 1, "seed": 0},
        scheduler={"type": "none"},
        resources={"workers": 2, "cpus_per_worker": 2, "max_concurrent_trials": 1},
        final={"seeds": 1},
        tracking={"aim": str(tmp_path / "aim")},
    )
    assert two_node_cluster.run([sys.executable, "-m", "mmlearn", "study", "run", str(path)]) == 0
    folder = tmp_path / "runs" / "spread"
    reported = [
        json.loads(line)
        for file in (folder / "tune").glob("*/result.json")
        for line in file.read_text().splitlines()
    ]
    assert {r["phase"] for r in reported} == {"search", "final"}
    assert all(len(set(r["nodes"])) == 2 for r in reported)  # one worker per node
    frame = pd.read_parquet(folder / "results.parquet")
    assert set(frame["phase"]) == {"search", "final"}
    assert frame.loc[frame["phase"] == "final", "test.macro_f1"].notna().all()
    runs = [r for r in aim_runs(tmp_path / "aim") if r.experiment == "spread"]
    assert sorted(r["mmlearn"]["phase"] for r in runs) == ["final", "search"]
    assert all(r["outcome"]["status"] == "completed" for r in runs)
