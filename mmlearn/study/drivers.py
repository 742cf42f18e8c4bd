"""How multi-worker trials' drivers run: where they may live and how they tune Ray Train.

A trial with ``workers > 1`` is a Ray Train driver that does no work itself. It must not hold a
CPU (its workers need them), but Ray rejects a trial that asks for nothing, so a driver holds one
unit of ``DRIVER_RESOURCE``; the nodes that may host drivers (a local Ray, a cluster's head)
declare ``DRIVER_SLOTS`` of it. ``max_concurrent_trials`` is what limits drivers.

This module stays free of heavy imports: the cluster checks use it.
"""

DRIVER_RESOURCE = "mmlearn_driver"
DRIVER_SLOTS = 1000

HEALTH_CHECK_S = "0.2"


def train_env(on_cluster: bool) -> dict[str, str]:
    """Ray Train settings a driver passes on to its Train controller and workers.

    Train V2's controller polls its workers every 2 s, which adds up to 2 s to the start and
    to the end of every trial; polling every 0.2 s costs nothing measurable. Train's metrics
    callbacks feed Ray's Prometheus export, which a study does not read. The preemption
    watcher (one more actor, so one more process, per trial) matters on a cluster whose nodes
    can be taken back (spot instances), never on a local Ray.

    Args:
        on_cluster: the study runs on a Ray cluster it connected to (``RAY_ADDRESS``).

    Returns:
        Environment variables to set where the user has not set them.
    """
    env = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": HEALTH_CHECK_S, "RAY_TRAIN_METRICS_ENABLED": "0"}
    if not on_cluster:
        env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"
    return env
