import subprocess
import sys


def mmlearn(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmlearn", *args], capture_output=True, text=True, cwd=cwd
    )


def test_prepare_then_info(tmp_path):
    out = tmp_path / "mfeat"
    done = mmlearn(
        "data", "prepare", "mfeat", "--views", "pix,zer,mor", "--seed", "3", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    info = mmlearn("data", "info", str(out))
    assert info.returncode == 0, info.stderr
    assert "pix        vector   240" in info.stdout
    assert "split train: 1400 rows" in info.stdout
    assert '"seed": 3' in info.stdout


def one_line_error(done: subprocess.CompletedProcess, text: str) -> None:
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmlearn: error: "), done.stderr
    assert text in lines[0]


def test_user_errors_are_one_line_exit_2(tmp_path):
    one_line_error(
        mmlearn("data", "prepare", "mfeat", "--views", "fac,nope", "--out", str(tmp_path / "x")),
        "views must be >= 2 distinct names",
    )
    one_line_error(mmlearn("data", "info", str(tmp_path)), "not a feature store")
    store = tmp_path / "s"
    assert mmlearn("data", "prepare", "mfeat", "--out", str(store)).returncode == 0
    one_line_error(
        mmlearn("data", "prepare", "mfeat", "--out", str(store)), "pass --force to replace it"
    )
    (store / "test.arrow").write_bytes(b"garbage")
    one_line_error(mmlearn("data", "info", str(store)), "test.arrow")
