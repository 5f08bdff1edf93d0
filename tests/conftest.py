"""Shared fixtures: tiny image folders in the DeepPruner layout and a CLI runner."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, array: np.ndarray) -> None:
    """Write an image with OpenCV (RGB(A) arrays given in RGB order)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(array))
    assert ok, path
    buf.tofile(str(path))


@pytest.fixture(scope="session")
def write_image():
    return _write


def _tiny_rgb(seed: int, h: int, w: int) -> np.ndarray:
    """A small textured uint8 RGB image (a crop of a scikit-image photo)."""
    import skimage.data
    from skimage.transform import resize

    img = skimage.data.astronaut()[100:100 + 4 * h, 150:150 + 4 * w]
    img = resize(img, (h, w), anti_aliasing=True)
    rng = np.random.default_rng(seed)
    img = np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)
    return (img * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def seed_folder(tmp_path_factory) -> Path:
    """``BASE/image_1``, ``BASE/image_2`` with three pairs of mixed formats and sizes.

    * ``a_shift``: 8-bit RGB PNG, B = A shifted by 3 px (same size).
    * ``b_gray16``: 16-bit gray PNG for A, 8-bit RGB JPEG of another size for B.
    * ``c_same``: RGBA PNG, B identical to A (the identity pair).
    """
    base = tmp_path_factory.mktemp("seed") / "demo"
    a = _tiny_rgb(0, 32, 40)
    _write(base / "image_1" / "a_shift.png", a)
    _write(base / "image_2" / "a_shift.png", np.roll(a, 3, axis=1))
    g = (a.mean(axis=2) * 257).astype(np.uint16)
    _write(base / "image_1" / "b_gray16.png", g)
    _write(base / "image_2" / "b_gray16.jpg", _tiny_rgb(1, 36, 44))
    rgba = np.dstack([a, np.full(a.shape[:2], 200, np.uint8)])
    _write(base / "image_1" / "c_same.png", rgba)
    _write(base / "image_2" / "c_same.png", rgba)
    return base


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m experiments *args`` in the repository root; text output captured."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "experiments", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def cli():
    return run_cli


def kill_when_rows(args, csv: Path, rows: int = 3, timeout: float = 180) -> tuple[bool, int]:
    """Start ``python -m experiments *args``, SIGKILL it once ``csv`` holds ``rows`` data rows.

    Returns ``(finished_early, rows_at_kill)``: whether the run ended before the kill, and how many
    data rows the table held when it was killed.
    """
    proc = subprocess.Popen([sys.executable, "-m", "experiments", *map(str, args)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if csv.exists() and csv.read_text().count("\n") >= rows + 1:  # header + rows
            break
        time.sleep(0.05)
    finished_early = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return finished_early, (csv.read_text().count("\n") - 1 if csv.exists() else 0)


def row_keys(df) -> list[tuple[str, str, int]]:
    """The sorted ``(pair, method, iteration)`` keys of a metrics table."""
    return sorted(zip(df["pair"], df["method"], df["iteration"].astype(int)))


def finished_unit_rows(out: Path):
    """Rows of ``out/metrics.csv`` (whole lines only) of the units that a resumed run must keep.

    A unit (pair, method) is finished once its artifact exists: the runner saves it after the
    unit's last row (:meth:`experiments.run.local.Runner.run_unit`).
    """
    import io

    import pandas as pd

    from experiments.report.artifacts import load_artifact

    text = (out / "metrics.csv").read_text()
    df = pd.read_csv(io.StringIO(text[: text.rfind("\n") + 1]))  # drop a torn last line
    done = [load_artifact(out, p, m) is not None for p, m in zip(df["pair"], df["method"])]
    return df[done].reset_index(drop=True)


def kill_and_resume(args, out: Path, total_rows: int):
    """Kill ``compare *args`` once rows exist, rerun it; return the final ``metrics.csv`` table.

    Asserts what a resume must show: the run was really interrupted (fewer than ``total_rows`` rows),
    the rerun says it resumes, and the rows of the units finished at the kill keep their timings
    (they were not recomputed). When the run ended before the kill, the resume is not exercised: a
    warning says so and the finished table is returned, so the caller's checks of it still run.
    """
    import warnings

    import pandas as pd

    finished_early, rows_at_kill = kill_when_rows(args, out / "metrics.csv")
    if finished_early:
        warnings.warn("the run finished before it could be killed: resume not exercised", stacklevel=2)
        return pd.read_csv(out / "metrics.csv")
    assert rows_at_kill < total_rows  # really interrupted mid-run
    kept = finished_unit_rows(out)
    assert len(kept) > 0  # 3 rows at the kill: at least the first pair's pm unit had finished
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming the unfinished run in {out}" in res.stdout
    df = pd.read_csv(out / "metrics.csv")
    after = df.set_index(["pair", "method", "iteration"])["time_s"]
    for p, m, i, t in zip(kept["pair"], kept["method"], kept["iteration"], kept["time_s"]):
        assert after[(p, m, i)] == t, (p, m, i)  # finished units were not recomputed
    return df


# Small but complete compare run shared by the CLI tests (about 20 s on 2 cores).
TINY_ARGS = ("--max-size", "48", "--pm-iterations", "2", "--dpm-iterations", "3", "--dpm-reference",
             "--threads", "1")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, seed_folder):
    """One finished ``compare`` run on the seed folder and a built-in pair; returns its folder."""
    out = tmp_path_factory.mktemp("run") / "out"
    res = run_cli("compare", "--data", "chelsea", str(seed_folder), "--out", str(out), *TINY_ARGS)
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(out=out, args=("compare", "--data", "chelsea", str(seed_folder), *TINY_ARGS),
                tiny_args=TINY_ARGS, result=res)
