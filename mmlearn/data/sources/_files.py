"""Opening users' feature files (pickles, HDF5, ``.npy``), every failure a one-line DataError.

Shared by the loaders of published benchmark layouts (``mmsa``, ``mult_pkl``, ``sdk_csd``,
``mmin_h5``). A pickle is opened only when the user said they trust it: unpickling runs
whatever code the file names.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmlearn.data.source import option
from mmlearn.data.sources._arrays import pickle_splits
from mmlearn.errors import DataError


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; a DataError naming ``what`` it should be when it is not a file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{file} does not exist or is not a file; expected {what}.")
    return file


def existing_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path; a DataError naming ``what`` it should be when it is not a folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist or is not a folder; expected {what}.")
    return folder


def load_pickle(path: str | Path, trusted: bool, what: str) -> Any:
    """Unpickle ``path``, only if the user trusts it.

    Args:
        path: the pickle.
        trusted: the user passed ``--trust-pickle`` (``trust_pickle: true``).
        what: the layout expected, for messages (e.g. "an MMSA aligned_50.pkl").

    Raises:
        DataError: not trusted, missing, truncated or not a pickle.
    """
    file = existing_file(path, what)
    if not trusted:
        raise DataError(
            f"{file} is a pickle, and loading a pickle runs any code it names; pass "
            "--trust-pickle (trust_pickle: true in a study) only if you trust where the file "
            "came from."
        )
    try:
        with open(file, "rb") as f:
            return pickle.load(f)  # noqa: S301  (the user vouched for this file)
    except Exception as e:  # a damaged pickle can raise almost anything
        raise DataError(
            f"{file} cannot be unpickled ({type(e).__name__}: {e}); the file is truncated or "
            f"not {what}."
        ) from e


def trust_pickle_option() -> Any:
    """The ``--trust-pickle`` option of a source that reads a pickle."""
    return option(
        False, "allow unpickling the file (a pickle can run code; only for files you trust)"
    )


def pickled_splits(
    path: str, trusted: bool, what: str
) -> tuple[Path, dict[str, Mapping[str, Any]]]:
    """The file and its splits, of a trusted ``{"train"|"valid"|"test": {key: array}}`` pickle.

    Args:
        path: the pickle.
        trusted: the user passed ``--trust-pickle``.
        what: the layout expected, for messages.

    Raises:
        DataError: untrusted, unreadable, or not such a mapping.
    """
    file = Path(path).expanduser()
    return file, pickle_splits(load_pickle(file, trusted, what), file)


@contextlib.contextmanager
def open_h5(path: str | Path, what: str) -> Iterator[h5py.File]:
    """``path`` opened read-only as HDF5; reading errors inside the block name the file.

    Raises:
        DataError: missing, truncated or not HDF5, or unreadable while in use.
    """
    file = existing_file(path, what)
    try:
        handle = h5py.File(file, "r")
    except OSError as e:
        raise DataError(
            f"{file} is not a readable HDF5 file ({e}); it is truncated or not {what}."
        ) from e
    with handle:
        try:
            yield handle
        except (OSError, RuntimeError) as e:  # HDF5 reports damaged datasets on read
            raise DataError(f"{file} cannot be read ({e}); the file is damaged.") from e


def load_npy(path: Path) -> np.ndarray:
    """A plain ``.npy`` array; object arrays (which need unpickling) are refused.

    Raises:
        DataError: missing, truncated, or holding Python objects.
    """
    file = existing_file(path, "a NumPy .npy array")
    try:
        return np.load(file, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(
                f"{file} holds Python objects, which only unpickling can read; save it again "
                "as a plain array (numbers, or fixed-width strings)."
            ) from e
        raise DataError(f"{file} is not a readable .npy array ({e}).") from e
    except (OSError, EOFError) as e:
        raise DataError(f"{file} is not a readable .npy array ({e}); it is truncated.") from e
