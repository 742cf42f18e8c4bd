"""The local Ray of a study ends with its driver, however the driver ends (``kill -9`` included).

``ray.init`` makes the Ray processes it starts itself (GCS, raylet, dashboard) die with the
driver, but not those the raylet starts: after ``kill -9`` of a study's driver,
``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` (about 220 MiB) stayed alive, waiting for
the dead GCS (Ray 2.60, ``ray._private.process_watcher``). So the driver starts a small reaper
in its own session (a Ctrl-C in the terminal does not reach it) and holds the write end of a
pipe to its stdin. When the pipe closes (the driver released it after ``ray.shutdown()``, or
the kernel closed it because the driver died) the reaper kills what is left of the driver's
Ray session: the processes of the driver's session that hold a file of Ray's session folder
open (every Ray process writes its logs there), the driver itself excepted. Then it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SETTLE_S = 1.0
"""How long the reaper lets Ray's processes end by themselves before it kills them."""
REAP_S = 20.0
"""How long the reaper keeps looking for processes of the session (a dying raylet may start
none, but processes end asynchronously)."""


class RayReaper:
    """The reaper of one local Ray session, started by its driver."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: int) -> None:
        self._process = process
        self._pipe = pipe

    @classmethod
    def start(cls) -> RayReaper:
        """Start the reaper of the local Ray session this driver started."""
        import ray

        session_dir = ray._private.worker.global_worker.node.get_session_dir_path()
        read, write = os.pipe()
        os.set_inheritable(write, False)  # only this driver holds it: its death closes it
        process = subprocess.Popen(  # the file, not the module: it imports no mmlearn
            [sys.executable, __file__, session_dir, str(os.getpid()), str(os.getsid(0))],
            stdin=read,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(read)
        return cls(process, write)

    def release(self) -> None:
        """Let the reaper clean up after ``ray.shutdown()`` and wait for it to end."""
        os.close(self._pipe)
        self._process.wait()


def session_processes(session_dir: str, sid: int, spare: int) -> list[int]:
    """The processes of session ``sid`` that hold a file under ``session_dir``, but ``spare``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (spare, os.getpid()):
            continue
        try:
            if os.getsid(int(entry.name)) != sid:
                continue
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # it ended meanwhile
            continue
        if any(link.startswith(session_dir) for link in links):
            found.append(int(entry.name))
    return found


def reap(session_dir: str, driver: int, sid: int) -> None:
    """Wait for the driver's pipe to close, then kill what is left of its Ray session."""
    sys.stdin.buffer.read()  # returns at EOF: the driver released the pipe or died
    time.sleep(SETTLE_S)
    deadline = time.monotonic() + REAP_S
    while time.monotonic() < deadline:
        left = session_processes(session_dir.rstrip("/") + "/", sid, driver)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        time.sleep(0.5)


if __name__ == "__main__":
    reap(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
