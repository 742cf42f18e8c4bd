"""Benchmark of ``mmlearn data prepare mmsa`` on a full-size MOSEI-shaped ``aligned_50.pkl``.

Writes the synthetic source's MOSEI-shaped data (aligned layout: text 50x768, audio 50x74 with
COVAREP-like ``-inf``, vision 50x35; 16326 / 1871 / 4659 segments at scale 1) as a pickle in
MMSA's exact layout, then measures the prepare (unpickle, checks, store write), the size of the
pickle and of the store, and the samples per second of two masked training epochs read from
the prepared store. Results replace the ``prepare`` section of docs/benchmarks.md.

Run: ``make bench`` (or ``python -m tests.benchmarks.prepare_mmsa --scale 0.01 --no-write``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from mmlearn.data.prepare import prepare_store
from mmlearn.data.sources.synthetic import SyntheticOptions, build_synthetic, split_size
from mmlearn.data.store import open_store
from tests.benchmarks.report import machine_summary, replace_section
from tests.benchmarks.store import RATES, epochs
from tests.formats import mmsa_layout, write_pickle

GIB = 2**30


def write_aligned_50(scale: float, file: Path) -> float:
    """Write MMSA's aligned_50.pkl of synthetic MOSEI at ``scale``; returns the seconds taken."""
    started = time.perf_counter()
    data = build_synthetic(
        SyntheticOptions(scale=scale, layout="aligned", seed=0, audio_neg_inf=0.001)
    )
    write_pickle(mmsa_layout(data), file)
    return time.perf_counter() - started


def bench(scale: float, workdir: Path) -> str:
    """One table row: sizes, write, prepare and epoch throughput at ``scale``."""
    pickle_file = workdir / "MOSEI" / "Processed" / "aligned_50.pkl"
    written = write_aligned_50(scale, pickle_file)
    out = workdir / "mosei"
    started = time.perf_counter()
    prepare_store("mmsa", {"path": str(pickle_file), "trust_pickle": True}, out)
    prepared = time.perf_counter() - started
    store = open_store(out)
    first, second = epochs(store, 2)
    size = sum(f.stat().st_size for f in out.iterdir())
    rows = "/".join(str(store.manifest["splits"][s]["rows"]) for s in ("train", "val", "test"))
    return (
        f"| {scale:g} | {rows} | {pickle_file.stat().st_size / GIB:.2f} GiB | {written:.1f} s "
        f"| {prepared:.1f} s | {size / GIB:.2f} GiB | {first:,.0f} | {second:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="share of MOSEI's size")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mmlearn-bench-mmsa-"))
    try:
        print(f"benchmarking mmsa prepare at scale {args.scale} ...", flush=True)
        row = bench(args.scale, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sizes = "/".join(str(split_size(s, args.scale)) for s in ("train", "val", "test"))
    body = "\n".join(
        [
            f"`mmlearn data prepare mmsa aligned_50.pkl --trust-pickle` on a MOSEI-shaped pickle "
            f"in MMSA's layout at scale {args.scale} ({sizes} segments; text 50x768, audio "
            "50x74 with 0.1% -inf, vision 50x35, text_bert ids, labels), written from the "
            "synthetic source. Prepare = unpickle, check and write the store. Epochs: the "
            f"prepared store's train split, batches of 256, per_epoch masks with rates {RATES}, "
            "shuffled; the first epoch also maps the file's pages.",
            "",
            machine_summary(),
            "",
            "| scale | train/val/test | pickle size | pickle write | prepare | store size "
            "| 1st epoch samples/s | 2nd epoch samples/s |",
            "|---|---|---|---|---|---|---|---|",
            row,
        ]
    )
    print(body)
    if not args.no_write:
        replace_section(Path("docs/benchmarks.md"), "prepare", body)


if __name__ == "__main__":
    main()
