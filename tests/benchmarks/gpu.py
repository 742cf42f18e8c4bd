"""The GPU benchmark: throughput, memory, packing, parity and host waits of training on one GPU.

On one GPU, through the DeepSpeed engine (``mmlearn.train.fit``), on a synthetic MOSEI-shaped
aligned store (batches of 256, rates audio .2 / vision .5 / text .8):

- RedCore at the official MOSEI settings (``methods.OFFICIAL_MOSEI``), fp32 and bf16:
  samples/s, peak GPU memory, and the ratio to the CPU figures of the ``methods`` section;
- every other method at its defaults, fp32: samples/s;
- host waits per training step (CUDA's sync debug mode; ``tests.host_syncs``), per precision
  and ZeRO stage: DeepSpeed's bf16 wrapper at ZeRO 0 tests every gradient on the host;
- RedCore with LSTM encoders in bf16, and at ZeRO 1 (flat parameters, which may make cuDNN
  copy the LSTM weights at every call): samples/s;
- packing: 1, 2, 4, 8 and 16 concurrent RedCore trial processes on the GPU: aggregate samples/s,
  GPU memory per process and utilisation (NVML, from nvidia-ml-py); 4 and 16 again as clients
  of a CUDA MPS daemon where one starts;
- parity: the first 20 fp32 losses of a seeded RedCore run on the CPU and on the GPU, with its
  randomness off (dropout 0, VIB noise e^-15), agree to 1e-3 relative.

It imports nothing that needs Ray, Aim or Optuna, so it runs on a machine that has torch and
the wheels of ``make gpu-wheels`` only; it replaces the ``gpu`` section of docs/benchmarks.md.
``--smoke`` runs every part at a tiny size on the CPU (the test suite runs it, so that it
cannot rot) and writes to ``--doc``. Run: ``make bench-gpu``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmlearn.data.missing import MissingProtocol
from mmlearn.data.prepare import prepare_store
from mmlearn.data.store import open_store
from mmlearn.models.layers import SelfAttention, VIBHead
from mmlearn.models.registry import build, names
from mmlearn.train.config import TrainConfig
from mmlearn.train.engine import fit
from tests.benchmarks.methods import OFFICIAL_MOSEI, RATES
from tests.benchmarks.report import replace_section
from tests.host_syncs import StepSyncs

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
PARITY_STEPS = 20
PARITY_RTOL = 1e-3
MPS_PACKING = (4, 16)  # the packing rows repeated under CUDA MPS


@dataclass(frozen=True)
class Size:
    """How big the runs are: the full benchmark on a GPU, or the smoke run on a CPU."""

    batch: int
    steps: int  # training steps per epoch
    epochs: int  # the first warms up; the others are timed
    packing: tuple[int, ...]  # concurrent processes
    official: dict[str, Any]  # RedCore's hyperparameters
    others: tuple[str, ...] | None  # the other methods (None: every registered one)
    defaults: dict[str, Any]  # their hyperparameters
    parity_steps: int


FULL = Size(256, 20, 3, (1, 2, 4, 8, 16), OFFICIAL_MOSEI, None, {}, PARITY_STEPS)
TINY = {"hidden": 16, "transformer_heads": 2, "ae_layers": [16], "n_blocks": 1}
SMOKE = Size(16, 2, 2, (2,), OFFICIAL_MOSEI | TINY, ("early_fusion",), {"hidden": 16}, 2)


def cpu_figures(doc: Path) -> dict[str, float]:
    """RedCore's CPU samples/s per precision from the ``methods`` section of ``doc``."""
    text = doc.read_text() if doc.exists() else ""
    found = re.findall(r"\| RedCore, official MOSEI settings, (\w+) \| (\d+) \|", text)
    return {precision: float(rate) for precision, rate in found}


def quiet(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` without randomness: dropout 0 and VIB noise of std e^-15 (for parity)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        elif isinstance(module, SelfAttention):
            module.dropout = 0.0
        elif isinstance(module, VIBHead):
            module.init_logvar_(-30.0)
    return model


def train(
    store_dir: str,
    method: str,
    hparams: dict[str, Any],
    size: Size,
    device: str,
    precision: str = "fp32",
    zero: int = 0,
    epochs: int | None = None,
    deterministic: bool = False,
) -> dict[str, Any]:
    """One fit on ``device``: samples/s of the timed epochs, peak memory, waits, losses."""
    store = open_store(store_dir)
    spec = store.spec()
    protocol = MissingProtocol(spec.names, "per_epoch", RATES, seed=0)
    torch.manual_seed(0)
    model = build(method, hparams, spec)
    if deterministic:
        quiet(model)
    model.to(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses: list[torch.Tensor] = []
    loss_fn = model.loss

    def recorded(out: Any, batch: Any) -> Any:
        result = loss_fn(out, batch)
        if model.training:
            losses.append(result.total.detach())
        return result

    model.loss = recorded  # type: ignore[method-assign]
    seconds: list[float] = []
    config = TrainConfig(
        epochs=epochs or size.epochs, batch_size=size.batch, precision=precision, zero_stage=zero
    )
    counter = StepSyncs(model, torch.device(device))
    with counter.active():
        fit(model, store, protocol, config, on_epoch=lambda r: seconds.append(r["train_seconds"]))
    timed = seconds[1:] or seconds
    return {
        "samples_per_s": size.steps * size.batch * len(timed) / sum(timed),
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "waits_per_step": max(counter.per_step, default=0),
        "losses": [float(v) for v in torch.stack(losses).tolist()],
    }


def in_child(size: Size, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    """``train(size=size, **kw)`` in a fresh process (``--one``), with ``env`` if given."""
    one = {"smoke": size == SMOKE, **kw}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.gpu", "--one", json.dumps(one)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def result_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


class Utilisation:
    """GPU utilisation and per-process memory sampled by NVML while a block runs."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.samples: list[int] = []
        self.memory: dict[int, float] = {}
        self._stop = threading.Event()

    def __enter__(self) -> Utilisation:
        if self.enabled:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        nvml = self._nvml
        while not self._stop.wait(0.2):
            self.samples.append(nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            for p in nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                used = (p.usedGpuMemory or 0) / 2**20
                self.memory[p.pid] = max(self.memory.get(p.pid, 0.0), used)

    def __exit__(self, *_: object) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._nvml.nvmlShutdown()

    def summary(self) -> tuple[str, str]:
        """Mean utilisation (%) and mean per-process memory (MiB), or n/a."""
        if not self.samples:
            return "n/a", "n/a"
        busy = sorted(self.samples)[len(self.samples) // 4 :]  # leave out start-up
        memory = sum(self.memory.values()) / max(len(self.memory), 1)
        return f"{sum(busy) / len(busy):.0f}%", f"{memory:.0f}"


def packing(
    store_dir: str,
    size: Size,
    device: str,
    counts: tuple[int, ...],
    mps: dict[str, str] | None = None,
) -> list[str]:
    """Rows of the packing table: N concurrent RedCore trial processes on one device.

    With ``mps`` (the environment of a running MPS control daemon) the processes are its
    clients, whose kernels share the GPU at once instead of taking turns in time slices.
    """
    rows = []
    for n in counts:
        one = {"store_dir": store_dir, "method": "redcore", "hparams": size.official}
        with Utilisation(device == "cuda") as use:
            started = time.perf_counter()
            processes = [in_child(size, mps, device=device, **one) for _ in range(n)]
            results = [result_of(p) for p in processes]
            wall = time.perf_counter() - started
        total = sum(r["samples_per_s"] for r in results)
        utilisation, memory = use.summary()
        rows.append(
            f"| {n} | {'on' if mps else 'off'} | {total:,.0f} | {total / n:,.0f} | {memory} "
            f"| {utilisation} | {wall:.0f} |"
        )
        print(rows[-1], flush=True)
    return rows


@contextlib.contextmanager
def mps_daemon(folder: Path) -> Iterator[dict[str, str] | None]:
    """A CUDA MPS control daemon of this user for the block: its clients' environment.

    Yields None where the machine has no ``nvidia-cuda-mps-control`` or it does not start.
    The daemon changes no device setting (compute mode, MIG); ``quit`` stops it.
    """
    control = shutil.which("nvidia-cuda-mps-control")
    env = os.environ | {
        "CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"),
        "CUDA_MPS_LOG_DIRECTORY": str(folder / "log"),
    }
    if control is None:
        yield None
        return
    for name in ("pipe", "log"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    if subprocess.run([control, "-d"], env=env, check=False, timeout=30).returncode != 0:
        yield None
        return
    try:
        yield env
    finally:
        subprocess.run([control], input="quit\n", env=env, text=True, check=False, timeout=60)


def device_name(device: str) -> str:
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return "CPU (smoke run)"


def run(size: Size, device: str, doc: Path) -> str:
    """Every part; returns the section's text (also written into ``doc``)."""
    started = time.perf_counter()
    cpu = cpu_figures(DOC)
    with tempfile.TemporaryDirectory(prefix="mmlearn-bench-gpu-") as tmp:
        store_dir = str(Path(tmp) / "mosei")
        scale = size.steps * size.batch / 16326  # exactly ``steps`` training batches
        prepare_store("synthetic", {"scale": scale, "layout": "aligned"}, store_dir)
        one = {"store_dir": store_dir, "size": size, "device": device}

        anchor = []
        for precision in ("fp32", "bf16"):
            r = train(method="redcore", hparams=size.official, precision=precision, **one)
            known = precision in cpu and size == FULL
            ratio = f"{r['samples_per_s'] / cpu[precision]:.1f}x" if known else "n/a"
            peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
            anchor.append(
                f"| {precision} | {r['samples_per_s']:,.0f} | {peak} | {ratio} "
                f"| {r['waits_per_step']} |"
            )
            print(anchor[-1], flush=True)

        methods = []
        for method in size.others or [m for m in names() if m != "redcore"]:
            if method != "redcore":
                r = train(method=method, hparams=size.defaults, **one)
                methods.append(f"| {method} | {r['samples_per_s']:,.0f} | {r['waits_per_step']} |")
                print(methods[-1], flush=True)

        lstm = []
        official_lstm = size.official | {"sequence_encoder": "lstm"}
        for precision, zero in (("fp32", 0), ("bf16", 0), ("fp32", 1), ("bf16", 1)):
            try:
                r = train(
                    method="redcore", hparams=official_lstm, precision=precision, zero=zero, **one
                )
                cells = f"{r['samples_per_s']:,.0f} | {r['waits_per_step']}"
            except Exception as e:  # noqa: BLE001 — the row reports what failed
                cells = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]} | "
            lstm.append(f"| LSTM encoders | {precision} | {zero} | {cells} |")
            print(lstm[-1], flush=True)

        packed = packing(store_dir, size, device, size.packing)
        mps = "not tried (a CPU run)"
        if device == "cuda":
            with mps_daemon(Path(tmp) / "mps") as env:
                mps = "no MPS control daemon could start on this machine"
                if env is not None:
                    try:
                        packed += packing(store_dir, size, device, MPS_PACKING, env)
                        mps = "the 'on' rows ran as clients of a CUDA MPS daemon"
                    except RuntimeError as e:  # the table says what failed; the rest stands
                        mps = f"its clients failed: {str(e).splitlines()[-1][:120]}"

        # The CPU run in a process that sees no GPU, so that DeepSpeed takes the CPU accelerator.
        seeded = {"store_dir": store_dir, "method": "redcore", "hparams": size.official}
        seeded |= {"epochs": 1, "deterministic": True}
        runs = {
            "cpu": in_child(
                size, os.environ | {"CUDA_VISIBLE_DEVICES": ""}, device="cpu", **seeded
            ),
            device: in_child(size, device=device, **seeded),
        }
        parity = {w: result_of(p)["losses"][: size.parity_steps] for w, p in runs.items()}
        worst = max(
            abs(a - b) / max(abs(a), 1e-12)
            for a, b in zip(parity["cpu"], parity[device], strict=True)
        )
    verdict = "agree" if worst <= PARITY_RTOL else "DISAGREE"
    body = "\n".join(
        [
            f"Device: {device_name(device)}; torch {torch.__version__}, Python "
            f"{sys.version.split()[0]}; {time.perf_counter() - started:.0f} s in all. "
            f"Synthetic MOSEI-shaped aligned store, batches of {size.batch}, {size.steps} steps "
            f"per epoch, {size.epochs} epochs (the first warms up), DeepSpeed engine, ZeRO 0 "
            "unless said. Host waits = the most CUDA synchronisations in one training step "
            "(CUDA's sync debug mode; on a CPU, the operators that would wait on a GPU).",
            "",
            "| RedCore, official MOSEI settings | samples/s | peak GPU MiB | vs CPU | host waits "
            "per step |",
            "|---|---|---|---|---|",
            *anchor,
            "",
            "| method (defaults, fp32) | samples/s | host waits per step |",
            "|---|---|---|",
            *methods,
            "",
            "| RedCore, official settings | precision | ZeRO | samples/s | host waits per step |",
            "|---|---|---|---|---|",
            *lstm,
            "",
            "| concurrent RedCore trial processes | MPS | aggregate samples/s | per process | "
            "GPU MiB per process (NVML) | GPU utilisation (NVML) | wall s |",
            "|---|---|---|---|---|---|---|",
            *packed,
            "",
            f"MPS: {mps}.",
            "",
            f"Parity: the first {len(parity['cpu'])} fp32 training losses of a seeded RedCore "
            f"run without randomness on the CPU and on {device}: largest relative difference "
            f"{worst:.1e} ({verdict} to {PARITY_RTOL:g}).",
        ]
    )
    replace_section(doc, "gpu", body)
    if worst > PARITY_RTOL:
        raise SystemExit(f"parity: CPU and {device} losses differ by {worst:.1e} relative")
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, on the CPU")
    parser.add_argument("--doc", type=Path, default=DOC, help="the file whose section to write")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one = json.loads(args.one)
        size = SMOKE if one.pop("smoke") else FULL
        torch.set_num_threads(1)
        print(json.dumps(train(size=size, **one)))
        return
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke on a CPU (docs/benchmarks.md, gpu)")
    print(run(SMOKE if args.smoke else FULL, "cpu" if args.smoke else "cuda", args.doc))


if __name__ == "__main__":
    main()
