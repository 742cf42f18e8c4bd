"""Turn what a user names (a store directory or a source name) into an opened store.

A source name is prepared once into a cache directory keyed by the source and its options, so
that every trial and command that asks for the same data shares one store. Preparing holds a
file lock, so concurrent callers wait for the first instead of writing the same store twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmlearn.data.prepare import prepare_store
from mmlearn.data.source import SPLITS, list_sources
from mmlearn.data.store import MANIFEST, FeatureStore, open_store
from mmlearn.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("runs") / "stores"


def cached_store_path(source: str, options: dict[str, Any], cache: Path = DEFAULT_CACHE) -> Path:
    """Where the store of ``source`` with ``options`` is cached."""
    canonical = json.dumps(options, sort_keys=True, default=list)
    digest = hashlib.sha256(f"{source}:{canonical}".encode()).hexdigest()[:12]
    return cache / f"{source}-{digest}"


def resolve_store(
    data: str | Path, options: dict[str, Any] | None = None, cache: Path = DEFAULT_CACHE
) -> FeatureStore:
    """Open ``data``: a store directory, or a source name prepared (once) into ``cache``.

    Raises:
        DataError: ``data`` is neither a store nor a known source, or preparing it failed.
        ConfigError: bad source options.
    """
    path = Path(data)
    if (path / MANIFEST).is_file():
        if options:
            raise DataError(f"{path} is a prepared store; source options {options} do not apply.")
        return open_store(path)
    known = [source.name for source in list_sources()]
    if str(data) not in known:
        raise DataError(
            f"{data!r} is neither a feature store directory nor a source name; "
            f"name one of {known} or prepare a store with `mmlearn data prepare`."
        )
    out = cached_store_path(str(data), options or {}, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / MANIFEST).is_file():
            log.info("preparing %s into %s", data, out)
            prepare_store(str(data), options or {}, out, force=out.exists())
    return open_store(out)


def open_prepared_store(
    stores: Mapping[Any, Path], prepare: Mapping[Any, str], where: str = "store"
) -> FeatureStore:
    """Check that every store of ``stores`` (e.g. one per fold) is whole; open the first.

    Args:
        stores: key (a fold) -> store directory, in order.
        prepare: key -> the command that writes that store, named in the error.
        where: what the paths are called in the error (``data.path``).

    Raises:
        DataError: a store lacks files: the first such store, its missing files, how many other
            stores are incomplete, and the command that prepares it, in one line.
    """
    files = (MANIFEST, *(f"{split}.arrow" for split in SPLITS))
    lacking = {key: [f for f in files if not (path / f).is_file()] for key, path in stores.items()}
    missing = {key: names for key, names in lacking.items() if names}
    if missing:
        first, names = next(iter(missing.items()))
        path = stores[first]
        others = (
            f" (the stores of folds {', '.join(map(str, missing))} are incomplete)"
            if len(missing) > 1
            else ""
        )
        command = prepare.get(first, f"mmlearn data prepare SOURCE INPUT --out {path}")
        raise DataError(
            f"{where} {path} lacks {', '.join(names)}{others}: prepare the store there with "
            f"`{command}` (mmlearn data prepare -h lists the sources), or point {where} at a "
            "prepared store"
        )
    return open_store(next(iter(stores.values())))
