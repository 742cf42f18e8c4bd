"""The ``mmlearn`` command line. Argument parsing only; the work lives in the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from mmlearn import __version__
from mmlearn.errors import MmlearnError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a user error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # here, where a reader that left is caught, not at exit
        return code
    except MmlearnError as e:
        print(f"mmlearn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmlearn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _output_closed()


def _output_closed() -> int:
    """Exit quietly when the reader of stdout left (``mmlearn data info STORE | head``).

    Python would report the pipe again when it flushes stdout at exit, so stdout becomes
    /dev/null first (Python's documentation, "Note on SIGPIPE" in the signal module); the exit
    status is the shell's for a process ended by SIGPIPE, 128 + 13, as Unix tools end.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlearn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mmlearn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.set_defaults(run=lambda _: parser.print_help())
    commands = parser.add_subparsers(title="commands")

    data = commands.add_parser("data", help="prepare and inspect feature stores")
    data.set_defaults(run=lambda _: data.print_help())
    data_commands = data.add_subparsers(title="data commands")
    prepare = data_commands.add_parser("prepare", help="write a feature store from a source")
    prepare.set_defaults(run=lambda _: prepare.print_help())
    sources = prepare.add_subparsers(title="sources", metavar="SOURCE")
    from mmlearn.data.source import list_sources

    for source in list_sources():
        _add_source_parser(sources, source)
    info = data_commands.add_parser("info", help="print a store's manifest and split statistics")
    info.add_argument("path", metavar="DIR")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_data_info)
    _add_train_parser(commands)
    _add_study_parser(commands)
    _add_cluster_parser(commands)
    _add_report_parser(commands)
    return parser


def _add_train_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train one method without Ray and print per-pattern validation and test scores",
    )
    train.add_argument("--method", required=True, help="a registered method (redcore, ...)")
    train.add_argument(
        "--data", required=True, help="a store directory, or a source name (mfeat, synthetic)"
    )
    train.add_argument(
        "--rates",
        type=_rates,
        default={},
        metavar="M=R,...",
        help="training missing rates per modality, e.g. fac=0.8,fou=0.2,mor=0.5",
    )
    train.add_argument(
        "--protocol",
        help="missing mode (default: per_epoch with --rates, else the method's own protocol)",
    )
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    train.add_argument("--zero-stage", type=int, default=0)
    train.add_argument("--workers", type=int, default=1, help="processes (gloo on CPU)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--task", help="target to train on (default: the store's)")
    train.add_argument(
        "--set",
        dest="hyperparameters",
        type=_assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a method hyperparameter (VALUE is YAML: 0.1, true, [64, 64])",
    )
    train.add_argument("--json", metavar="FILE", help="also write the full result as JSON")
    train.set_defaults(run=_train)


def _add_study_parser(commands: Any) -> None:
    study = commands.add_parser("study", help="check and run hyperparameter study files")
    study.set_defaults(run=lambda _: study.print_help())
    study_commands = study.add_subparsers(title="study commands")
    check = study_commands.add_parser(
        "check", help="validate study files without starting Ray or reading data"
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="study files (studies/*.yaml)")
    check.set_defaults(run=_study_check)
    run = study_commands.add_parser(
        "run",
        help="run a study on Ray (resumes when rerun): search every cell, then the final seeds",
    )
    run.add_argument("file", metavar="FILE", help="a study file (studies/NAME.yaml)")
    run.set_defaults(run=_study_run)
    estimate = study_commands.add_parser(
        "estimate",
        help="predict a study's trials, epochs, samples, wall time and GPU-hours per phase",
    )
    estimate.add_argument("file", metavar="FILE", help="a study file (studies/NAME.yaml)")
    estimate.add_argument(
        "--cluster", metavar="FILE", help="the cluster file it will run on (default: here)"
    )
    estimate.add_argument(
        "--throughput",
        metavar="FILE",
        help="samples/s per method from `make bench-gpu` (docs/benchmarks.md) instead of "
        "calibrating on this machine",
    )
    estimate.set_defaults(run=_study_estimate)


def _add_cluster_parser(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster", help="check Ray cluster files; run a Ray cluster of several nodes here"
    )
    cluster.set_defaults(run=lambda _: cluster.print_help())
    cluster_commands = cluster.add_subparsers(title="cluster commands")
    check = cluster_commands.add_parser(
        "check",
        help="validate cluster files offline: Ray's schema, token auth, shared storage, and "
        "that the studies' workers fit",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="cluster files (cluster/*.yaml)")
    check.add_argument(
        "--study",
        dest="studies",
        action="append",
        metavar="FILE",
        help="a study whose workers must fit (repeatable; default: every studies/*.yaml)",
    )
    check.set_defaults(run=_cluster_check)
    local = cluster_commands.add_parser(
        "local",
        help="start a Ray cluster of several nodes on this machine, run COMMAND as its driver "
        "(RAY_ADDRESS set), then stop every node",
    )
    local.add_argument("--nodes", type=int, default=2, help="nodes, the head included")
    local.add_argument("--cpus", type=int, default=2, help="CPUs of each node")
    local.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    local.set_defaults(run=_cluster_local)


def _add_report_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="write a study's report: tables with 95 %% CIs, Holm-corrected comparisons, ranks, "
        "robustness curves, plots, tidy results",
    )
    report.add_argument(
        "study", metavar="STUDY", help="a study file, a study folder, or NAME (runs/NAME)"
    )
    report.add_argument(
        "--from-aim",
        action="store_true",
        help="build the tables from the study's Aim runs instead, into STORAGE/NAME/report-aim",
    )
    report.add_argument(
        "--aim-repo",
        metavar="REPO",
        help="the Aim repository to read with --from-aim (default: the study's tracking.aim)",
    )
    report.add_argument(
        "--reference",
        metavar="METHOD",
        default="redcore",
        help="the method every other is compared with (default: redcore)",
    )
    report.set_defaults(run=_report)


def _add_source_parser(sources: Any, source: Any) -> None:
    sub = sources.add_parser(source.name, help=source.summary, description=source.summary)
    sub.add_argument("--out", required=True, metavar="DIR", help="store directory to write")
    sub.add_argument("--force", action="store_true", help="replace an existing store at --out")
    hints = typing.get_type_hints(source.options)
    for f in dataclasses.fields(source.options):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if f.metadata.get("positional"):
            sub.add_argument(
                f.name, type=_optional_base(kind), metavar=f.name.upper(), help=f.metadata["help"]
            )
            continue
        help_text = f"{f.metadata.get('help', '')} (default: {_show(f.default)})"
        if kind is bool:
            sub.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif typing.get_origin(kind) is tuple:
            sub.add_argument(
                flag,
                dest=f.name,
                type=_comma_list,
                default=argparse.SUPPRESS,
                metavar="A,B,...",
                help=help_text,
            )
        else:
            base = _optional_base(kind)
            sub.add_argument(
                flag,
                dest=f.name,
                type=base,
                default=argparse.SUPPRESS,
                metavar=base.__name__.upper(),
                help=help_text,
            )
    sub.set_defaults(
        run=_data_prepare,
        source=source.name,
        option_names=[f.name for f in dataclasses.fields(source.options)],
    )


def _optional_base(kind: Any) -> Any:
    """``str | None`` -> ``str``; other types unchanged."""
    if isinstance(kind, types.UnionType):
        return next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _rates(text: str) -> dict[str, float]:
    rates = {}
    for part in _comma_list(text):
        name, sep, value = part.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"expected MODALITY=RATE, got {part!r}")
    return rates


def _assignment(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _data_prepare(args: argparse.Namespace) -> int:
    from mmlearn.data.prepare import prepare_store

    options = {k: getattr(args, k) for k in args.option_names if hasattr(args, k)}
    path = prepare_store(args.source, options, args.out, force=args.force)
    print(f"wrote {args.source} store to {path}")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    from mmlearn.data.store import open_store

    store = open_store(args.path)
    stats = store.describe()
    if args.json:
        print(json.dumps({"manifest": store.manifest, "splits": stats}, indent=2))
        return 0
    m = store.manifest
    print(f"store      {store.path}")
    print(f"source     {m['source']}  ({m['created_by']})")
    print(f"options    {json.dumps(m['options'])}")
    print(f"task       {m['task']}")
    print("modalities")
    for mod in store.modalities:
        shape = "x".join(map(str, mod.shape))
        kind = "sequence" if mod.is_sequence else "vector"
        lengths = ", own lengths" if mod.variable_length else ""
        print(f"  {mod.name:<10} {kind:<8} {shape}{lengths}")
    print("targets")
    for t in store.targets:
        classes = f" {list(t.class_names)}" if t.class_names else ""
        print(f"  {t.name:<10} {t.kind}{classes}")
    for note, value in m.get("notes", {}).items():
        print(f"note       {note}: {json.dumps(value)}")
    for split, s in stats.items():
        size = m["splits"][split]["bytes"] / 2**20
        print(f"split {split}: {s['rows']} rows, {size:.1f} MiB")
        for name, t in s["targets"].items():
            print(f"  target {name}: {json.dumps(t)}")
        for name, mod in s["modalities"].items():
            extra = ""
            if "length" in mod:
                ln = mod["length"]
                extra = f"  length min {ln['min']} mean {ln['mean']:.1f} max {ln['max']}"
            print(f"  {name:<10} mean {mod['mean']:+.4f} std {mod['std']:.4f}{extra}")
    return 0


def _study_check(args: argparse.Namespace) -> int:
    from mmlearn.study import check_studies

    print(check_studies(args.files))
    return 0


def _study_run(args: argparse.Namespace) -> int:
    import functools

    from mmlearn.study.runner import run_study

    outcome = run_study(args.file, progress=functools.partial(print, flush=True))
    print(outcome.summary())
    return 0


def _study_estimate(args: argparse.Namespace) -> int:
    from mmlearn.cluster.check import check_cluster
    from mmlearn.study import load_study
    from mmlearn.study.estimate import estimate, read_throughput

    spec = load_study(args.file)
    cluster = None if args.cluster is None else check_cluster(args.cluster)
    precision = spec.cells()[0].train.precision
    rates = args.throughput and read_throughput(args.throughput, precision)
    print(estimate(spec, cluster, rates or None).table())
    return 0


def _cluster_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmlearn.cluster.check import check_clusters

    studies = args.studies or sorted(Path("studies").glob("*.yaml"))
    print(check_clusters(args.files, studies))
    return 0


def _cluster_local(args: argparse.Namespace) -> int:
    from mmlearn.cluster.local import LocalCluster
    from mmlearn.errors import ConfigError

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("mmlearn cluster local: give the command to run after --")
    with LocalCluster(nodes=args.nodes, cpus=args.cpus) as cluster:
        print(
            f"local Ray cluster of {args.nodes} nodes at {cluster.address} "
            f"(dashboard {cluster.dashboard})",
            flush=True,
        )
        code = cluster.run(command)
    print(f"stopped the {args.nodes} nodes; {' '.join(command)} exited with {code}")
    return code


def _report(args: argparse.Namespace) -> int:
    import functools

    from mmlearn.report import ReportError, locate, write_aim_report, write_report

    folder, spec = locate(args.study)
    if not args.from_aim:
        write_report(
            folder,
            progress=functools.partial(print, flush=True),
            spec=spec,
            reference=args.reference,
        )
        return 0
    repo = args.aim_repo or spec.tracking.aim
    if repo is None:
        raise ReportError(
            f"study {spec.name!r} has tracking.aim: null, so it wrote no Aim runs; pass the "
            "repository with --aim-repo"
        )
    write_aim_report(
        folder, spec, repo, progress=functools.partial(print, flush=True), reference=args.reference
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from mmlearn.train.config import TrainConfig
    from mmlearn.train.run import TrainRequest, train_model

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        precision=args.precision,
        zero_stage=args.zero_stage,
        seed=args.seed,
    )
    request = TrainRequest(
        method=args.method,
        data=args.data,
        config=config,
        rates=args.rates,
        protocol=args.protocol,
        hyperparameters=dict(args.hyperparameters),
        task=args.task,
        workers=args.workers,
    )
    result = train_model(request, on_epoch=print_epoch)
    print(
        f"best epoch {result['best_epoch']} of {args.epochs} "
        f"({result['selection_metric']} over patterns {result['best_score']:.4f}); "
        f"protocol {result['protocol']['mode']} {result['protocol']['rates']}"
    )
    print(pattern_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=str)
    return 0


def print_epoch(report: dict[str, Any]) -> None:
    """Progress line of one epoch, printed by rank 0 only."""
    from mmlearn.train.distributed import current_world
    from mmlearn.train.engine import best_so_far

    if current_world().rank != 0:
        return
    print(
        f"epoch {report['epoch']:>3}/{report['epochs']} {report['stage']:<11} "
        f"loss {report['train']['loss']:.4f}  val {report['score']:.4f} "
        f"({best_so_far(report)})  {report['seconds']:.1f} s",
        flush=True,
    )


def pattern_table(result: dict[str, Any]) -> str:
    """Validation and test scores per pattern, and their mean over patterns, as a text table."""
    classification = "accuracy" in result["test"]["mean"]
    metrics = ("accuracy", "macro_f1") if classification else ("mae", "acc2_nonzero")
    head = f"{'pattern':<24}" + "".join(
        f"{f'{s} {m}':>18}" for s in ("val", "test") for m in metrics
    )
    lines = [head, "-" * len(head)]
    names = list(result["test"]["patterns"]) + ["mean"]
    for name in names:
        cells = []
        for split in ("val", "test"):
            row = result[split]["mean"] if name == "mean" else result[split]["patterns"][name]
            cells += [f"{row.get(m, float('nan')):>18.4f}" for m in metrics]
        lines.append(f"{name:<24}" + "".join(cells))
    return "\n".join(lines)
