"""Run a study on the cluster: ``ray submit cluster/gpu.yaml cluster/submit.py NAME``.

``ray submit`` copies this file to the head node and runs it there with the shell of the cluster
(``~/.mmlearn_env``: token authentication, ``MMLEARN_STORAGE`` on the shared storage, the
project's environment). It runs ``mmlearn study run studies/NAME.yaml`` in the repository that
``ray up`` synced to ``~/mmlearn``, as a driver of the running cluster, and exits with its code.
Rerunning the same command resumes the study. With ``ray submit --tmux`` (``make submit``) the
study outlives the SSH session; ``ray attach --tmux cluster/gpu.yaml`` shows it again.

Only the standard library: this runs before anything is imported from the project.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPOSITORY = Path.home() / "mmlearn"
NEEDED = ("RAY_AUTH_MODE", "MMLEARN_STORAGE", "MMLEARN_VENV")


def main(argv: list[str] | None = None) -> int:
    """Replace this process with the study's run; returns 2 when it cannot start."""
    parser = argparse.ArgumentParser(prog="submit.py", description=__doc__.splitlines()[0])
    parser.add_argument("name", metavar="NAME", help="a study of studies/, without .yaml")
    args = parser.parse_args(argv)
    studies = REPOSITORY / "studies"
    study = studies / f"{args.name}.yaml"
    if not study.is_file():
        known = ", ".join(sorted(p.stem for p in studies.glob("*.yaml"))) or "none"
        return _error(f"no study {study} on the head (the studies there: {known})")
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing:
        return _error(
            f"{', '.join(missing)} not set: run this through `ray submit` on a cluster started "
            "from cluster/*.yaml, whose setup writes them to ~/.mmlearn_env"
        )
    mmlearn = Path(os.environ["MMLEARN_VENV"]) / "bin" / "mmlearn"
    env = {**os.environ, "RAY_ADDRESS": "auto"}  # the cluster this head runs
    os.chdir(REPOSITORY)
    os.execve(mmlearn, [str(mmlearn), "study", "run", str(study)], env)


def _error(message: str) -> int:
    print(f"submit.py: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
