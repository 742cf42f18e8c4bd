"""Benchmark of the feature store on a full-size MOSEI-shaped data set.

Measures prepare time and size on disk, open time (target < 2 s), one training epoch of
batches of 256 with per-epoch masks (target >= 20 000 samples/s for the aligned layout on 2
cores), and the memory of 4 processes reading the same store (target: about one copy).
Results replace the ``store`` section of docs/benchmarks.md.

Run: ``make bench`` (or ``python -m tests.benchmarks.store --scale 0.1`` for a quick look).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mmlearn.data.loader import SplitLoader
from mmlearn.data.missing import MissingProtocol
from mmlearn.data.prepare import prepare_store
from mmlearn.data.store import FeatureStore, open_store
from tests.benchmarks.report import machine_summary, replace_section

RATES = {"audio": 0.2, "vision": 0.5, "text": 0.8}


def epochs(store: FeatureStore, count: int, batch_size: int = 256) -> list[float]:
    """Samples per second of ``count`` shuffled, masked training epochs in this process."""
    spec = store.spec()
    loader = SplitLoader(store.split("train"), spec, batch_size, seed=0)
    protocol = MissingProtocol(spec.names, mode="per_epoch", rates=RATES, seed=0)
    rates = []
    for epoch in range(count):
        started = time.perf_counter()
        seen = sum(len(batch) for batch in loader.train(protocol, epoch))
        rates.append(seen / (time.perf_counter() - started))
    return rates


def store_memory() -> tuple[int, int]:
    """(RSS, PSS) in bytes of this process's mappings of store files (``*.arrow``)."""
    rss = pss = 0
    in_store = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            in_store = line.endswith(".arrow")
        elif in_store and head[0] == "Rss:":
            rss += int(head[1]) * 1024
        elif in_store and head[0] == "Pss:":
            pss += int(head[1]) * 1024
    return rss, pss


def _reader(path: str, queue: mp.Queue, barrier: Any) -> None:
    """Read the train split twice; measure once every reader is done, while all still map it."""
    store = open_store(path)
    epochs(store, 2)
    barrier.wait()
    queue.put(store_memory())
    barrier.wait()


def readers_memory(path: Path, n: int = 4) -> tuple[list[int], list[int]]:
    """Store (RSS, PSS) in bytes of ``n`` processes reading the same store at the same time."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_reader, args=(str(path), queue, barrier)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return [r for r, _ in results], [p for _, p in results]


def open_seconds(path: Path) -> float:
    """Open time in a fresh interpreter (imports excluded): manifest and every split mapped."""
    code = (
        "import time; from mmlearn.data.store import open_store; t = time.perf_counter(); "
        f"s = open_store({str(path)!r}); [s.split(n) for n in ('train', 'val', 'test')]; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


def bench_layout(layout: str, scale: float, workdir: Path) -> list[str]:
    out = workdir / layout
    started = time.perf_counter()
    prepare_store("synthetic", {"scale": scale, "layout": layout, "seed": 0}, out)
    prepare_s = time.perf_counter() - started
    size = sum(f.stat().st_size for f in out.iterdir())
    opened = open_seconds(out)
    first, second = epochs(open_store(out), 2)  # the store is closed again before the readers
    rss, pss = readers_memory(out)
    gib = 2**30
    return [
        f"| {layout} | {open_store(out).manifest['splits']['train']['rows']} | {prepare_s:.1f} s "
        f"| {size / gib:.2f} GiB | {opened * 1000:.0f} ms | {first:,.0f} | {second:,.0f} "
        f"| {max(rss) / gib:.2f} GiB | {sum(pss) / gib:.2f} GiB |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--layouts", default="aligned,unaligned,vector")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mmlearn-bench-"))
    try:
        rows = []
        for layout in args.layouts.split(","):
            print(f"benchmarking layout {layout} at scale {args.scale} ...", flush=True)
            rows += bench_layout(layout, args.scale, workdir)
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    body = "\n".join(
        [
            f"Synthetic MOSEI-shaped store at scale {args.scale} (train/val/test "
            f"{round(16326 * args.scale)}/{round(1871 * args.scale)}/"
            f"{round(4659 * args.scale)}), text 50x768, audio 74-d, vision 35-d; masks "
            f"per_epoch with rates {RATES}; batches of 256, shuffled. The first epoch of a "
            "process also maps the file's pages into it; later epochs read mapped pages. "
            "Memory: 4 processes each read two epochs of the same store at once; the columns "
            "count only the store's mappings: RSS counts shared pages in full in every process, "
            "PSS splits them between the processes, so the PSS sum is the real footprint "
            "(one copy = the size of train.arrow, the split the readers touch).",
            "",
            machine_summary(),
            "",
            "| layout | train samples | prepare | size on disk | open (3 splits) "
            "| 1st epoch samples/s | 2nd epoch samples/s | store RSS per reader "
            "| store PSS sum of 4 readers |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(body)
    if not args.no_write:
        replace_section(Path("docs/benchmarks.md"), "store", body)


if __name__ == "__main__":
    main()
