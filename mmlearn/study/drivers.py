"""Where multi-worker trials' drivers may run: a custom Ray resource, kept free of heavy imports.

A trial with ``workers > 1`` is a Ray Train driver that does no work itself. It must not hold a
CPU (its workers need them), but Ray rejects a trial that asks for nothing, so a driver holds one
unit of ``DRIVER_RESOURCE``; the nodes that may host drivers (a local Ray, a cluster's head)
declare ``DRIVER_SLOTS`` of it. ``max_concurrent_trials`` is what limits drivers.
"""

DRIVER_RESOURCE = "mmlearn_driver"
DRIVER_SLOTS = 1000
