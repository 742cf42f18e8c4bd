"""Study files: every shipped study validates; every malformed one fails in one line per problem."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmlearn.data.store import write_store
from mmlearn.errors import ConfigError, DataError
from mmlearn.study import StudySpec, load_study
from tests.sample_data import sequence_data

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted((ROOT / "studies").rglob("*.yaml"))
INVALID = ROOT / "tests" / "assets" / "invalid"

BASE: dict[str, Any] = {
    "name": "tiny",
    "data": {"source": "mfeat", "options": {"views": ["fac", "fou", "mor"]}},
    "train": {"epochs": 4},
    "conditions": [{"name": "fac80", "rates": {"fac": 0.8, "fou": 0.2}}],
    "methods": [{"name": "redcore"}, "early_fusion"],
}


def write(tmp_path: Path, study: dict[str, Any] | str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(study if isinstance(study, str) else yaml.safe_dump(study, sort_keys=False))
    return path


def edited(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    study = copy.deepcopy(BASE)
    edit(study)
    return study


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_study(path)
    return str(e.value).splitlines()


# ---------------------------------------------------------------------------------------------
# Shipped studies


def test_studies_are_found() -> None:
    assert {p.stem for p in STUDIES} >= {
        "quickstart",
        "digits_imbalance",
        "mosei_imbalance",
        "worst_case_digits",
    }


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_validates(path: Path) -> None:
    spec = load_study(path)
    cells = spec.cells()
    assert spec.name == path.stem
    assert cells and len({c.id for c in cells}) == len(cells)
    assert spec.summary().count("\n") == 6


def test_quickstart_is_small() -> None:
    spec = load_study(ROOT / "studies" / "quickstart.yaml")
    methods = {c.method for c in spec.cells()}
    assert {"redcore", "dmrnet", "ume_mma", "mmin", "early_fusion", "late_fusion"} <= methods
    assert len(spec.conditions) == 1 and spec.scheduler.type == "asha"
    assert spec.resources.workers == 1 and spec.final.seeds == 3
    assert spec.search.trials_per_cell * len(spec.cells()) <= 30 and spec.train.epochs <= 5


def test_digits_imbalance_covers_every_order_of_redcores_iemocap_triples() -> None:
    spec = load_study(ROOT / "studies" / "digits_imbalance.yaml")
    triples = [(0.5, 0.5, 0.5), (0.2, 0.5, 0.8), (0.5, 0.8, 0.2)]
    expected = {p for t in triples for p in itertools.permutations(t)}
    got = {tuple(c.rates[m] for m in ("fac", "fou", "mor")) for c in spec.conditions}
    assert got == expected and len(spec.conditions) == 7
    assert {c.method for c in spec.cells()} == set(spec_methods())
    assert spec.resources.workers == 2 and spec.search.trials_per_cell == 20
    assert spec.final.seeds == 5


def spec_methods() -> list[str]:
    from mmlearn.models import names

    return names()


def test_mosei_imbalance_checks_without_data_and_says_what_is_missing() -> None:
    spec = load_study(ROOT / "studies" / "mosei_imbalance.yaml")
    rates = {tuple(c.rates[m] for m in ("audio", "vision", "text")) for c in spec.conditions}
    assert rates == {
        (0.8, 0.5, 0.5), (0.5, 0.8, 0.5), (0.5, 0.5, 0.8), (0.2, 0.5, 0.8), (0.5, 0.2, 0.8),
        (0.8, 0.5, 0.2), (0.3, 0.5, 0.7), (0.5, 0.7, 0.3), (0.3, 0.7, 0.5), (0.7, 0.3, 0.5),
        (0.7, 0.5, 0.3),
    }  # fmt: skip
    assert spec.resources.gpus_per_worker >= 1
    if not (spec.data.path / "manifest.json").exists():
        with pytest.raises(DataError, match=r"lacks manifest\.json, train\.arrow, val\.arrow"):
            spec.data.open()


def test_data_path_expands_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMLEARN_DATA", str(tmp_path / "elsewhere"))
    spec = load_study(ROOT / "studies" / "mosei_imbalance.yaml")
    assert spec.data.path == tmp_path / "elsewhere" / "mosei"
    monkeypatch.setenv("MMLEARN_DATA", "")
    assert load_study(ROOT / "studies" / "mosei_imbalance.yaml").data.path == Path("data/mosei")


def test_aim_repo_comes_from_the_file_or_mmlearn_aim_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MMLEARN_AIM_REPO", raising=False)
    tracked = load_study(write(tmp_path, edited(lambda s: s.update(tracking={"aim": "x/aim"}))))
    off = load_study(
        write(tmp_path, edited(lambda s: s.update(tracking={"aim": None})), "off.yaml")
    )
    assert load_study(write(tmp_path, BASE, "default.yaml")).tracking.repo == "runs/aim"
    assert (tracked.tracking.repo, off.tracking.repo) == ("x/aim", None)
    monkeypatch.setenv("MMLEARN_AIM_REPO", "aim://head:53800")
    assert (tracked.tracking.repo, off.tracking.repo) == ("aim://head:53800", None)
    monkeypatch.setenv("MMLEARN_AIM_REPO", "aim://head")
    with pytest.raises(ConfigError, match=r"^MMLEARN_AIM_REPO: .*aim://HOST:PORT, but got"):
        _ = tracked.tracking.repo


def test_worst_case_study_has_one_cell_per_method_and_minimises() -> None:
    spec = load_study(ROOT / "studies" / "worst_case_digits.yaml")
    assert spec.mode == "worst_case" and spec.search_mode == "min"
    assert all(c.id.endswith("@worst_case") and not c.space for c in spec.cells())


# ---------------------------------------------------------------------------------------------
# Derived cells


def test_cells_merge_default_space_study_space_and_fixed(tmp_path: Path) -> None:
    study = edited(
        lambda s: s["methods"].__setitem__(
            0,
            {
                "name": "redcore",
                "fixed": {"eta": 0.1, "train.batch_size": 32},
                "space": {
                    "kl_weight": {"loguniform": [1e-3, 1e-1]},
                    "hidden": 64,
                    "train.lr": {"loguniform": [1e-4, 1e-3]},
                },
            },
        )
    )
    redcore, fusion = load_study(write(tmp_path, study)).cells()
    assert redcore.id == "redcore@fac80" and redcore.mode == "per_epoch"
    assert redcore.space["kl_weight"].values == (1e-3, 1e-1)
    assert "eta" not in redcore.space and "hidden" not in redcore.space
    assert "inner_lr" in redcore.space  # a default the study did not touch
    assert redcore.hyperparameters == {"eta": 0.1, "hidden": 64}
    assert redcore.train.batch_size == 32 and redcore.train.selection_metric == "macro_f1"
    hparams, train = redcore.configure({"kl_weight": 0.01, "train.lr": 5e-4})
    assert hparams == {"eta": 0.1, "hidden": 64, "kl_weight": 0.01}
    assert train.lr == 5e-4 and train.batch_size == 32 and train.epochs == 4
    assert fusion.train.batch_size == 128 and set(fusion.space) == {"hidden", "cls_dropout"}
    protocol = redcore.missing_protocol(seed=3)
    assert protocol.rates == {"fac": 0.8, "fou": 0.2} and protocol.seed == 3


def test_a_condition_without_rates_trains_each_method_with_its_own_protocol(
    tmp_path: Path,
) -> None:
    study = edited(lambda s: s.__setitem__("conditions", [{"name": "own"}]))
    modes = {c.method: c.mode for c in load_study(write(tmp_path, study)).cells()}
    assert modes == {"redcore": "per_epoch", "early_fusion": "complete"}


def test_store_modalities_come_from_its_manifest_when_it_exists(tmp_path: Path) -> None:
    store = write_store(sequence_data(), tmp_path / "store", source="test", options={})
    data = {"path": str(store), "modalities": ["text", "audio"]}
    study = edited(
        lambda s: s.update(data=data, conditions=[{"name": "t", "rates": {"text": 0.5}}])
    )
    spec = load_study(write(tmp_path, study))
    assert spec.data.names == ("text", "audio") and spec.data.target.name == "label"
    study["data"] = {"path": str(store), "modalities": ["text", "vision"]}
    study["objective"] = {"metric": "mae"}
    assert [line.split(": ", 1)[1] for line in problems(write(tmp_path, study))] == [
        "data.modalities[1]: unknown modality 'vision' (the data have audio, text, pose)"
    ]
    study["data"]["modalities"] = ["text", "audio"]
    assert (
        "objective.metric: target 'label' (classification) has no 'mae'"
        in (problems(write(tmp_path, study))[0])
    )


# ---------------------------------------------------------------------------------------------
# Malformed studies: one line per problem, naming the file and the key path


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets (or appends at) the dotted ``path``, list indices as numbers."""

    def edit(study: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = study
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        if isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value

    return edit


MALFORMED = [
    # (edit, the key path, what the line says)
    (_set("trackng", {"aim": None}), "trackng", "unknown key; did you mean 'tracking'? (allowed:"),
    (_set("search.trails_per_cell", 3), "search.trails_per_cell", "did you mean 'trials_per_cell'"),
    (_set("train.lrr", 0.1), "train.lrr", "unknown key; did you mean 'lr'?"),
    (_set("search.trials_per_cell", "many"), "search.trials_per_cell", "must be a valid integer"),
    (_set("search.trials_per_cell", True), "search.trials_per_cell", "but got True"),
    (_set("train.lr", "fast"), "train.lr", "must be a finite number > 0, but got 'fast'"),
    (_set("methods", ["redcor"]), "methods[0].name", "unknown method 'redcor'; did you mean"),
    (_set("conditions.0.rates.vision", 0.2), "conditions[0].rates.vision", "unknown modality"),
    (_set("conditions.0.rates.fac", 1.0), "conditions[0].rates.fac", "in [0, 1), but got 1.0"),
    (_set("conditions.0.rates.fac", -0.1), "conditions[0].rates.fac", "in [0, 1), but got -0.1"),
    (_set("methods", []), "methods", "must not be empty"),
    (
        _set("methods.0.space", {"kl_weight": {"logunifrom": [1e-4, 1e-2]}}),
        "methods[0].space.kl_weight",
        "unknown search kind 'logunifrom'; did you mean 'loguniform'?",
    ),
    (
        _set("methods.0.space", {"kl_weight": {"loguniform": [0.1, 0.01]}}),
        "methods[0].space.kl_weight",
        "loguniform needs low <= high, but got low=0.1, high=0.01",
    ),
    (
        _set("methods.0.space", {"kl_weight": {"loguniform": [0, 0.01]}}),
        "methods[0].space.kl_weight",
        "loguniform needs low > 0, but got low=0",
    ),
    (
        _set("methods.0.space", {"hidden": {"choice": [64, 8.5]}}),
        "methods[0].space.hidden",
        "choice value 8.5: must be an int, but got 8.5",
    ),
    (
        _set("methods.0.space", {"lr": {"loguniform": [1e-4, 1e-2]}}),
        "methods[0].space.lr",
        "'lr' is a training setting, not a hyperparameter; write 'train.lr'",
    ),
    (
        _set("methods.0.fixed", {"train.epochs": 9}),
        "methods[0].fixed.train.epochs",
        "cannot be set per method",
    ),
    (_set("methods.0.fixed", {"kl_wieght": 1}), "methods[0].fixed.kl_wieght", "did you mean"),
    (
        _set("methods.0", {"name": "redcore", "fixed": {"eta": 0.1}, "space": {"eta": 0.2}}),
        "methods[0].space.eta",
        "also in fixed",
    ),
    (_set("methods.1", "redcore"), "methods[1].name", "'redcore' is listed twice"),
    (
        _set("resources", {"workers": 2, "gpus_per_worker": 0.5}),
        "resources.gpus_per_worker",
        "must be a whole number when workers > 1",
    ),
    (
        _set("resources.cpus_per_worker", 1.5),
        "resources.cpus_per_worker",
        "Ray needs a whole number above 1, but got 1.5",
    ),
    (_set("objective.metric", "f1"), "objective.metric", "unknown metric 'f1'"),
    (_set("objective", {"metric": "mae", "mode": "max"}), "objective.mode", "mode must be 'min'"),
    (
        _set("search.sampler", "bayes"),
        "search.sampler",
        "must be 'tpe', 'random' or 'gp', but got 'bayes'",
    ),
    (
        _set("conditions.1", {"name": "fac80"}),
        "conditions[1].name",
        "duplicate condition name 'fac80' (also conditions[0])",
    ),
    (
        _set("conditions.0.protocol", "complete"),
        "conditions[0].protocol",
        "missing mode 'complete' takes no rates",
    ),
    (
        _set(
            "conditions.0",
            {"name": "c", "rates": {"fac": 0.9, "fou": 0.9, "mor": 0.9}, "allow_empty": False},
        ),
        "conditions[0].allow_empty",
        "false needs rates summing to <= 2",
    ),  # fmt: skip
    (_set("conditions", []), "conditions", "standard mode needs at least one condition"),
    (_set("name", "my study"), "name", "must start with a letter or digit"),
    (_set("scheduler.max_epochs", 10), "scheduler.max_epochs", "must be <= train.epochs (4)"),
    (_set("scheduler", {"type": "none", "grace_period": 2}), "scheduler.grace_period", "asha"),
    (_set("data.source", "mfaet"), "data.source", "unknown data source 'mfaet'; did you mean"),
    (_set("data.options.colour", 1), "data.options", "has no option(s) ['colour']"),
    (_set("data.options.views", ["fac", "nope"]), "data.options", "unknown mfeat view(s)"),
    (_set("data.path", "/data/x"), "data", "give exactly one of source"),
    (
        _set("data", {"path": "${MMLEARN_TEST_UNSET}/mosei"}),
        "data.path",
        "environment variable MMLEARN_TEST_UNSET is not set",
    ),
    (
        _set("data", {"path": "/nonexistent/mosei"}),
        "data.modalities",
        "required, because the store at /nonexistent/mosei does not exist yet",
    ),
    (_set("tracking.aim", "aim://host"), "tracking.aim", "aim://HOST:PORT"),
    (_set("worst_case", {"budget": 1.0}), "worst_case", "only applies with mode: worst_case"),
    (_set("train", "fast"), "train", "must be a mapping of training settings"),
    (_set("search", 3), "search", "must be a mapping, but got 3"),
    (_set("methods", "redcore"), "methods", "must be a list, but got 'redcore'"),
]


@pytest.mark.parametrize(("edit", "key", "text"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_study_gives_one_line_naming_file_and_key(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], key: str, text: str
) -> None:
    path = write(tmp_path, edited(edit))
    (line,) = problems(path)
    assert line.startswith(f"{path}: {key}: "), line
    assert text in line


def _worst_case(**section: Any) -> Callable[[dict[str, Any]], None]:
    def edit(study: dict[str, Any]) -> None:
        study.update(mode="worst_case", worst_case=section)
        del study["conditions"]

    return edit


WORST_CASE = [
    (_worst_case(), "worst_case", "give exactly one of rates (ranges) or budget"),
    (_worst_case(budget=1.0, rates={"fac": [0, 0.5]}), "worst_case", "give exactly one of"),
    (_worst_case(budget=3.0), "worst_case.budget", "must be < 3 (the number of modalities)"),
    (_worst_case(rates={"fac": [0.5, 0.2]}), "worst_case.rates.fac", "needs low <= high"),
    (_worst_case(rates={"fac": [0.5, 1.0]}), "worst_case.rates.fac", "in [0, 1), but got 1.0"),
    (_worst_case(rates={"text": [0, 0.5]}), "worst_case.rates.text", "unknown modality 'text'"),
    (_worst_case(rates={}), "worst_case.rates", "must not be empty"),
    (_worst_case(budget=1.0, methods=["mmin"]), "worst_case.methods[0]", "not among the study"),
]


@pytest.mark.parametrize(("edit", "key", "text"), WORST_CASE, ids=[w[2] for w in WORST_CASE])
def test_malformed_worst_case_section(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], key: str, text: str
) -> None:
    test_malformed_study_gives_one_line_naming_file_and_key(tmp_path, edit, key, text)


def test_worst_case_mode_needs_its_section_and_fixed_hyperparameters(tmp_path: Path) -> None:
    study = edited(lambda s: s.update(mode="worst_case", conditions=[]))
    study["methods"][0]["space"] = {"eta": {"uniform": [0.1, 0.2]}}
    assert [line.split(": ", 1)[1] for line in problems(write(tmp_path, study))] == [
        "methods[0].space: worst_case mode keeps hyperparameters fixed; move these keys to fixed",
        "worst_case: required by mode: worst_case",
    ]


def test_missing_required_key_says_what_it_is(tmp_path: Path) -> None:
    path = write(tmp_path, edited(lambda s: s.pop("name")))
    assert problems(path) == [f"{path}: name: required key is missing (the study's name; its "
                              "results go to storage/name)"]  # fmt: skip


def test_every_problem_of_a_file_is_reported_one_line_each() -> None:
    path = INVALID / "several_errors.yaml"
    lines = problems(path)
    assert [line.split(": ")[1] for line in lines] == [
        "train.epochs",
        "conditions[0].rates.fac",
        "methods[0].name",
        "search.sampler",
    ]
    assert all(line.startswith(f"{path}: ") for line in lines)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("yaml_syntax.yaml", "invalid YAML at line 4, column 8: did not find expected ',' or '}'"),
        ("not_a_mapping.yaml", "a study file is a mapping of sections (name, data, methods, ...)"),
        ("duplicate_key.yaml", "key 'methods' is given twice"),
    ],
)
def test_files_that_are_not_studies(name: str, text: str) -> None:
    path = INVALID / name
    (line,) = problems(path)
    assert line.startswith(f"{path}: ") and text in line


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems(path) == [f"{path}: cannot read the study file (No such file or directory)"]


def test_yaml_1_2_floats_are_numbers(tmp_path: Path) -> None:
    study = yaml.safe_dump(BASE, sort_keys=False) + "search: {seed: 1}\n"
    text = study.replace("epochs: 4", "epochs: 4\n  lr: 3e-4")
    assert load_study(write(tmp_path, text)).train.lr == 3e-4


def test_spec_is_frozen() -> None:
    spec = StudySpec.model_validate(BASE)
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Real-data studies and cross-validation folds


def test_mosei_imbalance_uses_redcores_mosei_settings_and_names_the_prepare_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMLEARN_DATA", str(tmp_path))
    spec = load_study(ROOT / "studies" / "mosei_imbalance.yaml")
    assert (spec.train.epochs, spec.train.batch_size, spec.train.lr) == (20, 256, 2e-4)
    assert spec.train.lr_schedule == "linear" and spec.objective.metric == "uar"
    redcore = next(c for c in spec.cells() if c.method == "redcore")
    assert redcore.hyperparameters == {"hidden": 96, "ae_layers": [160, 80, 32],
                                       "cls_layers": [96, 96]}  # fmt: skip
    assert spec.data.task == "sentiment3" and spec.resources.workers == 1
    with pytest.raises(DataError) as e:
        spec.data.open()
    assert str(e.value).startswith(f"data.path {tmp_path}/mosei lacks manifest.json")
    assert (
        "`mmlearn data prepare mmsa MOSEI/Processed/aligned_50.pkl --trust-pickle --out "
        f"{tmp_path}/mosei`" in str(e.value)
    )


def test_iemocap_imbalance_runs_every_cell_on_each_of_ten_folds() -> None:
    spec = load_study(ROOT / "studies" / "iemocap_imbalance.yaml")
    cells = spec.cells()
    assert len(cells) == 8 * 3 * 10 and spec.data.folds == tuple(range(1, 11))
    assert [c.id for c in cells[:2]] == [
        "redcore@audio50-vision50-text50#fold1",
        "redcore@audio50-vision50-text50#fold2",
    ]
    assert {c.fold for c in cells} == set(range(1, 11))
    assert cells[9].store == str((spec.data.path.parent / "fold10").resolve())
    assert spec.train.epochs == 60 and spec.objective.metric == "macro_f1"
    rates = {tuple(c.rates[m] for m in ("audio", "vision", "text")) for c in spec.conditions}
    assert rates == {(0.5, 0.5, 0.5), (0.2, 0.5, 0.8), (0.5, 0.8, 0.2)}
    assert "cells      240 = 8 methods x 3 conditions x 10 folds" in spec.summary()


def fold_study(tmp_path: Path, folds: list[int], **data: Any) -> dict[str, Any]:
    """A study over stores tmp_path/fold<k> (written for each of ``folds``)."""
    for fold in folds:
        write_store(sequence_data(seed=fold), tmp_path / f"fold{fold}", source="t", options={})
    section = {"path": str(tmp_path / "fold{fold}"), "folds": folds, **data}
    return edited(
        lambda s: s.update(data=section, conditions=[{"name": "t50", "rates": {"text": 0.5}}])
    )


def test_folds_multiply_cells_and_each_cell_opens_its_own_store(tmp_path: Path) -> None:
    spec = load_study(write(tmp_path, fold_study(tmp_path, [3, 1])))
    assert [c.id for c in spec.cells()] == [
        "redcore@t50#fold3", "redcore@t50#fold1",
        "early_fusion@t50#fold3", "early_fusion@t50#fold1",
    ]  # fmt: skip
    assert spec.data.names == ("audio", "text", "pose")  # read from the first fold's manifest
    cell = spec.cells()[1]
    assert cell.fold == 1 and cell.store == str((tmp_path / "fold1").resolve())
    assert spec.data.open().path == tmp_path / "fold3"
    assert len(spec.data.open(1).split("train")) == 6
    (tmp_path / "fold1" / "val.arrow").unlink()
    with pytest.raises(DataError, match=r"data.path .*fold1 lacks val\.arrow: prepare the store"):
        spec.data.open()
    spec.data.open(3)


def test_missing_fold_stores_are_named_with_the_prepare_command(tmp_path: Path) -> None:
    study = fold_study(
        tmp_path, [], modalities=["text", "audio"], prepare="prep --fold {fold} --out x{fold}"
    )
    study["data"]["folds"] = [2, 5]
    spec = load_study(write(tmp_path, study))
    with pytest.raises(DataError) as e:
        spec.data.open()
    assert str(e.value) == (
        f"data.path {tmp_path}/fold2 lacks manifest.json, train.arrow, val.arrow, test.arrow "
        "(the stores of folds 2, 5 are incomplete): prepare the store there with "
        "`prep --fold 2 --out x2` (mmlearn data prepare -h lists the sources), or point "
        "data.path at a prepared store"
    )


@pytest.mark.parametrize(
    ("data", "key", "text"),
    [
        ({"source": "mfeat", "folds": [1]}, "data.folds", "only applies to path; a source has"),
        ({"source": "mfeat", "prepare": "x"}, "data.prepare", "only applies to path; a source is"),
        ({"path": "/x/fold{fold}", "modalities": ["a", "b"]}, "data.path", "no folds are listed"),
        ({"path": "/x/s", "folds": [1], "modalities": ["a", "b"]}, "data.path", "must hold {fold}"),
        ({"path": "/x/{fold}", "folds": [1, 1], "modalities": ["a", "b"]}, "data.folds[1]",
         "fold 1 is listed twice"),
        ({"path": "/x/{fold}", "folds": [-1], "modalities": ["a", "b"]}, "data.folds[0]",
         "must be >= 0"),
        ({"path": "/x/{fold}", "folds": [], "modalities": ["a", "b"]}, "data.folds",
         "must not be empty"),
    ],
    ids=["source", "source-prepare", "no-folds", "no-placeholder", "twice", "negative", "empty"],
)  # fmt: skip
def test_malformed_folds(tmp_path: Path, data: dict[str, Any], key: str, text: str) -> None:
    study = edited(lambda s: s.update(data=data, conditions=[{"name": "c"}]))
    lines = problems(write(tmp_path, study))
    assert any(line.split(": ", 1)[1].startswith(f"{key}: ") and text in line for line in lines), (
        lines
    )


# ---------------------------------------------------------------------------------------------
# The command


def test_study_check_command(tmp_path: Path) -> None:
    bad = write(tmp_path, edited(_set("search.sampler", "bayes")), "bad.yaml")
    good = ROOT / "studies" / "quickstart.yaml"
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "mmlearn", "study", "check", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for path in (bad, good)
    ]
    (bad_out, bad_err), (good_out, good_err) = (run.communicate(timeout=60) for run in runs)
    assert runs[0].returncode == 2 and not bad_out
    assert bad_err.splitlines() == [
        f"mmlearn: error: {bad}: search.sampler: must be 'tpe', 'random' or 'gp', but got 'bayes'"
    ]
    assert runs[1].returncode == 0, good_err
    assert f"{good}: ok" in good_out and "cells      7 = 7 methods x 1 condition" in good_out
    assert "28 in all" in good_out and "21 runs = 7 cells x 3 seeds" in good_out
