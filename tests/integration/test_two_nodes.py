"""A real Ray cluster of two nodes on this machine: both run work, and both are gone afterwards.

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

import pytest

from mmlearn.cluster.local import LocalCluster

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
