"""``compare --data KIND:PATH`` end to end on a generated Sintel-like folder: names, columns, resume."""
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import kill_and_resume, row_keys, run_cli

H, W = 30, 40
FLOW = (2.0, -1.0)  # (u, v): frame_{i+1}(y + v, x + u) = frame_i(y, x)
SCENES = {"alley_1": 3, "bamboo_1": 3}


def _frame(seed: int) -> np.ndarray:
    """A smooth textured RGB uint8 frame larger than the images, so shifted crops stay inside."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((H + 20, W + 20, 3)).astype(np.float32), (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sintel(tmp_path_factory, write_image) -> Path:
    """``training/{clean,flow,occlusions}/SCENE``: 3 frames per scene, each the previous one moved
    by FLOW; the occlusion mask marks the first two columns."""
    root = tmp_path_factory.mktemp("sintel") / "MPI-Sintel"
    t = root / "training"
    u, v = int(FLOW[0]), int(FLOW[1])
    for s, (scene, n) in enumerate(SCENES.items()):
        big = _frame(s)
        for i in range(1, n + 1):
            y0, x0 = 10 - (i - 1) * v, 10 - (i - 1) * u  # frame i+1 at (y+v, x+u) shows frame i at (y, x)
            write_image(t / "clean" / scene / f"frame_{i:04d}.png", big[y0:y0 + H, x0:x0 + W])
            if i < n:
                (t / "flow" / scene).mkdir(parents=True, exist_ok=True)
                flow = np.empty((H, W, 2), np.float32)
                flow[..., 0], flow[..., 1] = FLOW
                assert cv2.writeOpticalFlow(str(t / "flow" / scene / f"frame_{i:04d}.flo"), flow)
                occ = np.zeros((H, W), np.uint8)
                occ[:, :2] = 255
                write_image(t / "occlusions" / scene / f"frame_{i:04d}.png", occ)
    return root


ARGS = ("--max-size", "40", "--pm-iterations", "2", "--dpm-iterations", "10", "--threads", "1",
        "--methods", "pm,dpm")
NAMES = ["sintel-clean/alley_1/0001", "sintel-clean/alley_1/0002", "sintel-clean/bamboo_1/0001",
         "sintel-clean/bamboo_1/0002"]


def test_compare_on_a_sintel_folder_resumes_after_a_kill(sintel, tmp_path):
    out = tmp_path / "out"
    args = ["compare", "--data", f"sintel:{sintel}", "--out", str(out), *ARGS]
    df = kill_and_resume(args, out, len(NAMES) * (2 + 10))
    assert row_keys(df) == sorted((p, m, i) for p in NAMES for m, n in (("pm", 2), ("dpm", 10))
                               for i in range(1, n + 1))
    # ground truth from the .flo files and the occlusion masks: EPE split, no KITTI/Middlebury metric
    assert df["epe"].notna().all() and df["epe_noc"].notna().all() and df["epe_occ"].notna().all()
    assert df[["bad_2_0", "fl", "d1"]].isna().all().all()
    last_pm = df[(df["method"] == "pm") & (df["iteration"] == 2)]
    assert (last_pm["epe_noc"] < 1.0).all()  # a pure translation: classic PatchMatch finds it
    # the dataset's own table, as its community reads it
    report = (out / "REPORT.md").read_text()
    assert "### MPI-Sintel clean" in report and "| method | pairs | EPE all | EPE noc | EPE occ |" in report
    # file names: the pair names' "/" become "--"
    for name in NAMES:
        stem = name.replace("/", "--")
        assert (out / "artifacts" / f"{stem}__pm.npz").exists()
        assert (out / f"iterations_{stem}.png").exists() and (out / f"nnf_{stem}.png").exists()
        assert f"(iterations_{stem}.png)" in (out / "REPORT.md").read_text()
    info = json.loads((out / "config.json").read_text())["pairs_info"]
    assert info[NAMES[0]]["info"]["dataset"] == "sintel"


def test_limit_select_and_detection_through_the_cli(sintel, tmp_path):
    out = tmp_path / "sel"
    res = run_cli("compare", "--data", str(sintel), "motorcycle", "--select", "*/bamboo_*", "--limit", "1",
                  "--out", str(out), *ARGS, "--dpm-iterations", "2", "--pm-iterations", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(out / "metrics.csv")
    assert list(dict.fromkeys(df["pair"])) == ["sintel-clean/bamboo_1/0001", "motorcycle"]  # built-ins kept
    res = run_cli("compare", "--data", str(tmp_path), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "no known dataset layout; looked for" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run_cli("compare", "--data", f"kitti:{sintel}", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "unknown dataset kind 'kitti'" in res.stderr
    res = run_cli("compare", "--data", f"sintel:{sintel}", "--limit", "0", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "--limit: expected an integer >= 1" in res.stderr
    # --select / --limit with built-in pairs only would silently do nothing: refused, before any work
    res = run_cli("compare", "--data", "motorcycle", "--select", "moto*", "--out", str(tmp_path / "y"))
    assert res.returncode == 2 and "--select picks pairs of a dataset or folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "y").exists()
