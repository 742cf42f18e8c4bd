"""The multibench_mimic source: MultiBench's im.pk of MIMIC-III, on a file written here."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from mmlearn.data.prepare import prepare_store
from mmlearn.data.sources.multibench_mimic import multibench_split
from mmlearn.data.store import open_store
from mmlearn.errors import DataError
from tests.formats import mimic_layout, write_pickle


def prepare(layout: object, tmp_path: Path, **options: object):
    file = write_pickle(layout, tmp_path / "im.pk")
    opts = {"path": str(file), "trust_pickle": True, **options}
    return open_store(prepare_store("multibench_mimic", opts, tmp_path / "s"))


def test_split_is_multibenchs_shuffle_with_seed_10():
    samples = [f"admission {i}" for i in range(47)]
    random.seed(10)
    random.shuffle(samples)  # MultiBench get_data.py: shuffle, valid [0:n//10], test [n//10:n//5]
    index = multibench_split(47, 10)
    taken = {s: [f"admission {i}" for i in idx] for s, idx in index.items()}
    assert taken == {"train": samples[9:], "val": samples[:4], "test": samples[4:9]}


def test_store_has_both_modalities_and_every_target(tmp_path: Path) -> None:
    layout = mimic_layout(50)
    store = prepare(layout, tmp_path, standardize=False)
    assert [(m.name, m.shape, m.variable_length) for m in store.modalities] == [
        ("timeseries", (24, 12), False),
        ("static", (5,), False),
    ]
    assert store.task == "mortality"
    assert [t.name for t in store.targets] == ["mortality", *(f"icd9_{k}" for k in range(20))]
    assert all(t.class_names == ("survived", "died") for t in store.targets)
    index = multibench_split(50, 10)
    series = np.nan_to_num(layout["ep_tdata"], nan=0.0, posinf=0.0)
    for split, idx in index.items():
        opened = store.split(split)
        assert np.allclose(opened.features["timeseries"], series[idx])
        assert np.allclose(opened.features["static"], layout["adm_features_all"][idx])
        assert opened.targets["mortality"].tolist() == (idx % 5 == 0).astype(int).tolist()
        assert np.array_equal(opened.targets["icd9_7"], layout["y_icd9"][idx, 7])
    assert store.manifest["notes"]["non_finite_replaced_by_zero"] == {"timeseries": 2}


def test_standardisation_uses_the_train_split(tmp_path: Path) -> None:
    store = prepare(mimic_layout(50), tmp_path)
    train = store.split("train").features["timeseries"].reshape(-1, 12)
    assert np.allclose(train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(train.std(axis=0), 1, atol=1e-4)
    static = store.split("train").features["static"]
    assert np.allclose(static.mean(axis=0), 0, atol=1e-5)


def test_untrusted_pickle_is_refused(tmp_path: Path) -> None:
    file = write_pickle(mimic_layout(20), tmp_path / "im.pk")
    with pytest.raises(DataError, match="pass --trust-pickle"):
        prepare_store("multibench_mimic", {"path": str(file)}, tmp_path / "s")


def _without(key: str) -> dict:
    layout = mimic_layout(20)
    del layout[key]
    return layout


def _reshaped(key: str, shape: tuple[int, ...]) -> dict:
    layout = mimic_layout(20)
    layout[key] = np.zeros(shape)
    return layout


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ([1, 2], "holds a list, expected MultiBench's MIMIC-III im.pk: a dict with keys"),
        (_without("y_icd9"), "has no key 'y_icd9' of MultiBench's MIMIC-III im.pk; it has"),
        (_reshaped("ep_tdata", (20, 288)), r"key 'ep_tdata' has shape \(20, 288\), expected 3"),
        (_reshaped("adm_labels_all", (19, 6)), "key 'adm_labels_all' has 19 rows but 'ep_tdata'"),
        ({**mimic_layout(20), "adm_features_all": np.array([["a"] * 5] * 20)}, "key 'adm_fea"),
        (mimic_layout(5), "holds 5 admissions; the 10 % splits need at least 10"),
    ],
)
def test_malformed_file_names_the_wrong_key(tmp_path: Path, layout: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        prepare(layout, tmp_path)
    assert not (tmp_path / "s").exists()


def test_prepare_command_ends_in_one_line(tmp_path: Path, capsys) -> None:
    from mmlearn.cli import main

    file = write_pickle(_without("ep_tdata"), tmp_path / "im.pk")
    code = main(
        [
            "data",
            "prepare",
            "multibench_mimic",
            str(file),
            "--trust-pickle",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "has no key 'ep_tdata'" in err
