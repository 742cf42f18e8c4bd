"""What ``mmlearn study run`` checks before Ray starts, so that a broken input is one line in a few
seconds instead of a Ray cluster whose every trial fails.

- Data: every store of the study (each fold's) opens; its manifest has the study's modalities
  and task; every split's Arrow file is whole: its footer and schema read, the schema holds
  the columns the manifest promises, the row count is the manifest's, and its first and last
  record batch pass Arrow's full validation.
- Models: every cell's model builds from its fixed hyperparameters on the data, and the epochs
  of its search trials and final runs cover the method's stages.
- Storage: ``STORAGE/NAME`` can be created and written, and its file system has room for the
  checkpoints the study keeps (an estimate; a warning when it has less than twice that).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pyarrow as pa

from mmlearn.data.source import SPLITS
from mmlearn.data.spec import DatasetSpec
from mmlearn.data.store import FeatureStore
from mmlearn.errors import ConfigError, DataError
from mmlearn.models.registry import build
from mmlearn.study.cells import Cell
from mmlearn.study.disk import SpaceNeed, check_room
from mmlearn.study.spec import StudySpec
from mmlearn.train.schedule import stage_spans

_FIX = "prepare the store again with `mmlearn data prepare`"
CHECKPOINT_COPIES = 4
"""fp32 copies of the parameters in one checkpoint: DeepSpeed's module state, Adam's two
moments (optimizer state) and ``best.pt`` (``mmlearn.train.checkpoint``)."""
CHECKPOINT_OVERHEAD = 256 * 1024
"""Bytes of a checkpoint beside the parameters: ``progress.json``, RNG states, Tune's files."""


def preflight(spec: StudySpec, progress: Callable[[str], None]) -> SpaceNeed:
    """Check the study's data, models and storage without Ray (see the module's docstring).

    Args:
        spec: the validated study.
        progress: where a warning goes (storage with less than twice the room needed).

    Returns:
        The room the study's checkpoints take, which ``StorageWatch`` keeps free while it runs.

    Raises:
        DataError: a store is missing, inconsistent or has a broken file, named in one line.
        ConfigError: a cell's model cannot be built or trained for its epochs, or the storage
            cannot be written or has no room for the study's checkpoints.
    """
    stores = [spec.data.open(fold) for fold in spec.data.fold_ids()]
    for store in stores:
        store.spec(spec.data.task, spec.data.names)  # the study's modalities and task
        for split in SPLITS:
            check_split_file(store, split)
    need = _space_need(spec, stores[0])
    check_room((spec.storage / spec.name).resolve(), need, progress)
    return need


def check_split_file(store: FeatureStore, split: str) -> None:
    """Check that ``split``'s Arrow file is whole and holds what the manifest says.

    Reads the footer and schema, the row count and the first and last record batch (memory
    mapped: no copy of the data is made).

    Raises:
        DataError: naming the file and what is wrong with it.
    """
    file = store.path / f"{split}.arrow"
    expected = _expected_schema(store)
    try:
        with pa.memory_map(str(file)) as source:
            reader = pa.ipc.open_file(source)
            found = {f.name: f.type for f in reader.schema}
            missing = [f"{f.name} ({f.type})" for f in expected if found.get(f.name) != f.type]
            if missing:
                raise DataError(f"{file}: lacks column(s) {', '.join(missing)}; {_FIX}")
            rows = reader.count_rows()
            for i in {0, reader.num_record_batches - 1} if reader.num_record_batches else ():
                reader.get_batch(i).validate(full=True)
    except (OSError, pa.ArrowException) as e:
        problem = " ".join(str(e).split())
        raise DataError(f"{file}: not a whole Arrow file ({problem}); {_FIX}") from e
    expected_rows = store.manifest["splits"].get(split, {}).get("rows")
    if rows != expected_rows:
        raise DataError(f"{file}: has {rows} rows but the manifest says {expected_rows}; {_FIX}")


def _expected_schema(store: FeatureStore) -> list[pa.Field]:
    """The columns ``write_store`` gives a split of ``store`` (``mmlearn.data.store``)."""
    fields = []
    for m in store.modalities:
        width = 1
        for n in m.shape:
            width *= n
        fields.append(pa.field(f"feature.{m.name}", pa.list_(pa.float32(), width)))
        if m.variable_length:
            fields.append(pa.field(f"length.{m.name}", pa.int32()))
    for t in store.targets:
        kind = pa.int64() if t.kind == "classification" else pa.float32()
        fields.append(pa.field(f"target.{t.name}", kind))
    return fields


def _space_need(spec: StudySpec, store: FeatureStore) -> SpaceNeed:
    """Build each cell's model: it must build and train for its epochs; what its checkpoints take.

    The parameters are counted with the cell's fixed hyperparameters over the method's
    defaults; a searched size can make a trial's model larger, hence the warning's margin.

    Raises:
        ConfigError: a model that cannot be built, or fewer epochs than its stages.
    """
    data = store.spec(spec.data.task, spec.data.names)
    sizes: dict[tuple[str, str], int] = {}
    checkpoints = total = 0
    for cell in spec.cells():
        key = (cell.method, repr(sorted(cell.hyperparameters.items())))
        if key not in sizes:
            sizes[key] = _checkpoint_bytes(spec, cell, data)
        runs = cell.trials + spec.final.seeds  # Tune keeps each one's last checkpoint
        checkpoints += runs
        total += runs * sizes[key]
    # a running trial holds a second checkpoint while it replaces its last
    concurrent, largest = spec.resources.max_concurrent_trials, max(sizes.values())
    return SpaceNeed(checkpoints + concurrent, total + concurrent * largest, largest, concurrent)


def _checkpoint_bytes(spec: StudySpec, cell: Cell, data: DatasetSpec) -> int:
    """The bytes of one checkpoint of the cell's model.

    Raises:
        ConfigError: the model cannot be built, or has more stages than a run has epochs.
    """
    with warnings.catch_warnings():  # an experimental method says so when its trials build it
        warnings.simplefilter("ignore")
        model = build(cell.method, dict(cell.hyperparameters), data)
    for epochs in {spec.max_epochs, cell.train.epochs}:
        try:
            stage_spans(model.stages(), epochs)
        except ConfigError as e:
            raise ConfigError(f"{cell.id}: {e}") from e
    parameters = sum(p.numel() for p in model.parameters())
    return CHECKPOINT_COPIES * 4 * parameters + CHECKPOINT_OVERHEAD
