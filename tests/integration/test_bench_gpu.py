"""``make bench-gpu`` in its smoke mode: every part runs, on this CPU, and writes its section."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_mode_writes_the_gpu_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    run = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.gpu", "--smoke", "--doc", str(doc)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    section = doc.read_text().split("<!-- bench:gpu -->")[1]
    assert "Device: CPU (smoke run)" in section
    for table in ("RedCore, official MOSEI settings", "method (defaults, fp32)", "ZeRO"):
        assert f"| {table}" in section
    assert re.search(r"\| 2 \| off \| [\d,]+ \| [\d,]+ \| n/a \| n/a \|", section)  # 2 packed
    assert "MPS: not tried (a CPU run)." in section
    assert "(agree to 0.001)" in section
    # Without DeepSpeed's bf16 wrapper and CPU dropout draws a step waits at most once.
    assert "| early_fusion | " in section and re.search(
        r"\| early_fusion \| [\d,]+ \| 1 \|", section
    )
    assert re.search(r"\| LSTM encoders \| fp32 \| 0 \| [\d,]+ \| 1 \|", section)


def test_it_imports_nothing_that_needs_ray_aim_or_optuna() -> None:
    code = (
        "import sys, tests.benchmarks.gpu\n"
        "print(sorted(m for m in ('ray', 'aim', 'optuna') if m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip().splitlines()[-1] == "[]"
