"""Shared by the benchmarks: describe the machine and update docs/benchmarks.md in place."""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

import torch


def machine_summary() -> str:
    """One line naming the machine the numbers were measured on."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # family and model too: "AMD EPYC" alone names several CPUs
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in cpuinfo.read_text().splitlines())
        )
        if "model name" in fields:
            family, model = fields.get("cpu family"), fields.get("model")
            cpu = f"{fields['model name']} (family {family}, model {model})"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; Python "
        f"{platform.python_version()}, torch {torch.__version__}; measured {date.today()}."
    )


def replace_section(doc: Path, name: str, body: str) -> None:
    """Put ``body`` between the ``<!-- bench:name -->`` markers of ``doc``, adding them if new."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"
    doc.write_text(text)
