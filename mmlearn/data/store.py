"""The Arrow feature store: one IPC file per split plus a JSON manifest.

Layout of a store directory::

    manifest.json     source, options, modalities (dims, lengths), targets, rows per split
    train.arrow       one record batch; columns feature.<m>, length.<m>, target.<t>
    val.arrow
    test.arrow

Each feature column is a FixedSizeList<float32> of T*D (or D) values, so a split opens as a
memory map and every modality is a zero-copy, read-only numpy view of shape (N, T, D) or (N, D).
Processes that open the same store share one copy of it in the page cache.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmlearn import __version__
from mmlearn.data.source import SPLITS, SourceData, SplitArrays
from mmlearn.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from mmlearn.errors import DataError
from mmlearn.user_files import read_json_mapping

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_CHUNK_ROWS = 1024  # rows checked for non-finite values at a time (bounds temporary memory)
_MADV_POPULATE_READ = 22  # linux/mman.h; Python 3.11's mmap module does not name it


@dataclass
class StoreSplit:
    """One split of an opened store: read-only arrays backed by the memory-mapped file.

    Attributes:
        name: split name.
        features: modality -> (N, D) or (N, T, D) float32 view into the file.
        lengths: modality -> (N,) int32, for variable-length modalities.
        targets: target name -> (N,) int64 or float32.
    """

    name: str
    features: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.targets.values())))


class FeatureStore:
    """An opened store: its manifest and lazily opened, memory-mapped splits."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise DataError(
                f"{self.path} holds no {MANIFEST}, so it is not a feature store; "
                "create one with `mmlearn data prepare SOURCE --out DIR`."
            )
        fix = "prepare the store again with `mmlearn data prepare`."
        self.manifest: dict[str, Any] = read_json_mapping(
            manifest_path, "store manifest", DataError, fix
        )
        try:
            self.modalities = tuple(ModalitySpec(**m) for m in self.manifest["modalities"])
            self.targets = tuple(
                TargetSpec(t["name"], t["kind"], tuple(t["class_names"]))
                for t in self.manifest["targets"]
            )
            self.task: str = self.manifest["task"]
            self._rows: dict[str, int] = {
                s: int(v["rows"]) for s, v in self.manifest["splits"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{manifest_path} is malformed ({type(e).__name__}: {e}); {fix}") from e
        if self.manifest.get("format") != FORMAT_VERSION:
            raise DataError(
                f"{manifest_path} has store format {self.manifest.get('format')!r}, but this "
                f"mmlearn reads format {FORMAT_VERSION}; prepare the store again."
            )
        self._splits: dict[str, StoreSplit] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def spec(
        self, task: str | None = None, modalities: tuple[str, ...] | None = None
    ) -> DatasetSpec:
        """The DatasetSpec for ``task`` (default: the store's) over ``modalities`` (default: all).

        Raises:
            DataError: an unknown task or modality name.
        """
        task = task or self.task
        target = next((t for t in self.targets if t.name == task), None)
        if target is None:
            raise DataError(
                f"store {self.path} has no target {task!r}; "
                f"it has {[t.name for t in self.targets]}."
            )
        chosen = modalities or self.names
        unknown = [m for m in chosen if m not in self.names]
        if unknown:
            raise DataError(
                f"store {self.path} has no modality {unknown}; it has {list(self.names)}."
            )
        by_name = {m.name: m for m in self.modalities}
        return DatasetSpec(tuple(by_name[m] for m in chosen), target)

    def split(self, name: str) -> StoreSplit:
        """The split called ``name``, opened as a memory map on first use."""
        if name not in self._rows:
            raise DataError(f"store {self.path} has no split {name!r}; it has {list(self._rows)}.")
        if name not in self._splits:
            self._splits[name] = self._open_split(name)
        return self._splits[name]

    def _open_split(self, name: str) -> StoreSplit:
        file = self.path / f"{name}.arrow"
        try:
            table = pa.ipc.open_file(pa.BufferReader(_map_file(file))).read_all()
        except (OSError, ValueError, pa.ArrowInvalid) as e:
            raise DataError(
                f"cannot read {file}: {e}. The file is missing, truncated or corrupt; "
                "prepare the store again with `mmlearn data prepare`."
            ) from e
        if table.num_rows != self._rows[name]:
            raise DataError(
                f"{file} has {table.num_rows} rows but the manifest says {self._rows[name]}; "
                "the store is inconsistent: prepare it again."
            )
        n = table.num_rows

        def column(col: str) -> np.ndarray:
            if col not in table.column_names:
                raise DataError(f"{file} has no column {col!r}; prepare the store again.")
            chunks = table.column(col).chunks
            if len(chunks) != 1:
                raise DataError(f"{file} column {col!r} is split in {len(chunks)} chunks.")
            arr = chunks[0]
            if pa.types.is_fixed_size_list(arr.type):
                arr = arr.flatten()
            return arr.to_numpy(zero_copy_only=True)

        features = {
            m.name: column(f"feature.{m.name}").reshape(n, *m.shape) for m in self.modalities
        }
        lengths = {m.name: column(f"length.{m.name}") for m in self.modalities if m.variable_length}
        targets = {t.name: column(f"target.{t.name}") for t in self.targets}
        return StoreSplit(name, features, lengths, targets)

    def describe(self) -> dict[str, Any]:
        """Per-split statistics: rows, label counts or range, per-modality moments and lengths."""
        out: dict[str, Any] = {}
        for name in self._rows:
            split = self.split(name)
            stats: dict[str, Any] = {"rows": len(split), "targets": {}, "modalities": {}}
            for t in self.targets:
                y = split.targets[t.name]
                if t.kind == "classification":
                    counts = np.bincount(y, minlength=t.num_classes)
                    stats["targets"][t.name] = dict(
                        zip(t.class_names, counts.tolist(), strict=True)
                    )
                else:
                    stats["targets"][t.name] = {
                        "min": float(y.min()),
                        "mean": float(y.mean()),
                        "max": float(y.max()),
                    }
            for m in self.modalities:
                x = split.features[m.name]
                entry: dict[str, Any] = {
                    "mean": float(x.mean(dtype=np.float64)),
                    "std": float(x.std(dtype=np.float64)),
                }
                if m.variable_length:
                    lens = split.lengths[m.name]
                    entry["length"] = {
                        "min": int(lens.min()),
                        "mean": float(lens.mean()),
                        "max": int(lens.max()),
                    }
                stats["modalities"][m.name] = entry
            out[name] = stats
        return out


def _map_file(file: Path) -> pa.Buffer:
    """A read-only shared memory map of ``file`` as an Arrow buffer, its pages pre-faulted.

    Faulting 4 KiB pages one at a time during the first epoch costs more than the copy itself
    on virtual machines; MADV_POPULATE_READ maps every page at once (0.05-0.1 s per GiB that is
    in the page cache). Kernels older than 5.14 refuse it, and pages then fault in on use.
    """
    with open(file, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    with contextlib.suppress(OSError):
        mapped.madvise(_MADV_POPULATE_READ)
    return pa.py_buffer(mapped)


def open_store(path: str | Path) -> FeatureStore:
    """Open the store at ``path`` (manifest only; splits are mapped on first use)."""
    return FeatureStore(path)


def write_store(
    data: SourceData, out: str | Path, *, source: str, options: dict[str, Any], force: bool = False
) -> Path:
    """Write ``data`` as a store at ``out``, atomically: a failure leaves ``out`` untouched.

    Values are checked first: ``-inf`` is replaced by 0 (MMSA's treatment of COVAREP) and
    counted in the manifest; NaN or ``+inf`` is an error naming the split and modality.

    Raises:
        DataError: ``out`` exists and ``force`` is False, or the data are inconsistent.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise DataError(
            f"{out} already exists and is not empty; choose another --out or pass --force "
            "to replace it."
        )
    modalities = _modality_specs(data)
    notes = dict(data.notes)
    replaced = {
        f"{s}/{m}": n
        for s, split in data.splits.items()
        for m, n in _sanitise(s, split).items()
        if n
    }
    if replaced:
        notes["neg_inf_replaced_by_zero"] = replaced
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rows = {}
        for split_name, split in data.splits.items():
            file = tmp / f"{split_name}.arrow"
            _write_split(file, split, modalities, data.targets)
            rows[split_name] = {"rows": len(split), "bytes": file.stat().st_size}
        manifest = {
            "format": FORMAT_VERSION,
            "source": source,
            "options": options,
            "modalities": [vars(m) for m in modalities],
            "targets": [
                {"name": t.name, "kind": t.kind, "class_names": list(t.class_names)}
                for t in data.targets
            ],
            "task": data.task,
            "splits": rows,
            "notes": notes,
            "created_by": f"mmlearn {__version__}",
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _modality_specs(data: SourceData) -> tuple[ModalitySpec, ...]:
    """Modality specs derived from the arrays, checked to agree across splits."""
    missing = [s for s in SPLITS if s not in data.splits]
    if missing:
        raise DataError(f"the source produced no {missing} split(s); every store needs {SPLITS}.")
    if data.task not in {t.name for t in data.targets}:
        raise DataError(f"the default task {data.task!r} is not among the targets.")
    first = data.splits["train"]
    specs = []
    for name, x in first.features.items():
        if x.ndim not in (2, 3):
            raise DataError(f"modality {name!r} must be (N, D) or (N, T, D), got shape {x.shape}.")
        specs.append(
            ModalitySpec(
                name=name,
                dim=int(x.shape[-1]),
                max_len=int(x.shape[1]) if x.ndim == 3 else None,
                variable_length=name in first.lengths,
            )
        )
    for split_name, split in data.splits.items():
        if len(split) == 0:
            raise DataError(f"split {split_name!r} is empty; every split needs samples.")
        if list(split.features) != [m.name for m in specs]:
            raise DataError(
                f"split {split_name!r} has modalities {list(split.features)}, but train has "
                f"{[m.name for m in specs]}."
            )
        for m in specs:
            x = split.features[m.name]
            if x.shape[1:] != m.shape or len(x) != len(split):
                raise DataError(
                    f"split {split_name!r} modality {m.name!r} has shape {x.shape}, expected "
                    f"({len(split)}, {', '.join(map(str, m.shape))})."
                )
            if m.variable_length:
                lens = split.lengths.get(m.name)
                if lens is None or lens.shape != (len(split),):
                    raise DataError(f"split {split_name!r} lacks lengths for {m.name!r}.")
                if lens.min() < 1 or lens.max() > m.max_len:
                    raise DataError(
                        f"split {split_name!r} modality {m.name!r} has lengths outside "
                        f"[1, {m.max_len}]: min {lens.min()}, max {lens.max()}."
                    )
        for t in data.targets:
            y = split.targets.get(t.name)
            if y is None or y.shape != (len(split),):
                raise DataError(f"split {split_name!r} lacks a ({len(split)},) target {t.name!r}.")
    return tuple(specs)


def _sanitise(split_name: str, split: SplitArrays) -> dict[str, int]:
    """Replace -inf by 0 in place; raise on NaN or +inf. Returns the -inf count per modality."""
    counts = {}
    for name, x in split.features.items():
        if x.dtype != np.float32:
            raise DataError(
                f"split {split_name!r} modality {name!r} must be float32, got {x.dtype}."
            )
        n_neg_inf = 0
        for start in range(0, len(x), _CHUNK_ROWS):
            chunk = x[start : start + _CHUNK_ROWS]
            bad = ~np.isfinite(chunk)
            if bad.any():
                neg_inf = np.isneginf(chunk)
                others = int(bad.sum() - neg_inf.sum())
                if others:
                    first = start + int(np.argwhere(bad & ~neg_inf)[0, 0])
                    raise DataError(
                        f"split {split_name!r} modality {name!r} holds {others} NaN or +inf "
                        f"value(s) (first in sample {first}); "
                        "fix or drop those samples in the source files."
                    )
                chunk[neg_inf] = 0.0
                n_neg_inf += int(neg_inf.sum())
        counts[name] = n_neg_inf
    return counts


def _write_split(
    file: Path,
    split: SplitArrays,
    modalities: tuple[ModalitySpec, ...],
    targets: tuple[TargetSpec, ...],
) -> None:
    columns: dict[str, pa.Array] = {}
    for m in modalities:
        flat = np.ascontiguousarray(split.features[m.name]).reshape(-1)
        width = int(np.prod(m.shape))
        columns[f"feature.{m.name}"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), width)
        if m.variable_length:
            columns[f"length.{m.name}"] = pa.array(split.lengths[m.name].astype(np.int32))
    for t in targets:
        dtype = np.int64 if t.kind == "classification" else np.float32
        columns[f"target.{t.name}"] = pa.array(split.targets[t.name].astype(dtype))
    batch = pa.record_batch(list(columns.values()), names=list(columns))
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``; an existing ``out`` is removed only once ``new`` is in place."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)
