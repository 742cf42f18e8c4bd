"""``mmlearn data prepare``: run a source and write its feature store."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from mmlearn.data.source import get_source
from mmlearn.data.store import write_store

log = logging.getLogger(__name__)


def prepare_store(
    source: str, options: dict[str, Any], out: str | Path, force: bool = False
) -> Path:
    """Build ``source`` with ``options`` and write the store to ``out`` (atomically).

    Raises:
        ConfigError: unknown source or options.
        DataError: the source's files are missing or malformed, or ``out`` is taken.
    """
    src = get_source(source)
    opts = src.parse_options(options)
    started = time.perf_counter()
    log.info("building source %s with %s", source, opts)
    data = src.build(opts)
    built = time.perf_counter()
    log.info("built in %.1f s; writing %s", built - started, out)
    path = write_store(data, out, source=source, options=dataclasses.asdict(opts), force=force)
    log.info("wrote %s in %.1f s", path, time.perf_counter() - built)
    return path
