"""``python -m experiments`` end to end on tiny pairs: outputs, resume, bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import kill_and_resume, row_keys, run_cli
from experiments.errors import UserError
from experiments.run import COLUMNS

PAIRS = ["chelsea", "demo-a_shift", "demo-b_gray16", "demo-c_same"]
ITERS = {"pm": [1, 2], "pm-kd": [1, 2, 3], "dpm": [1, 2, 3], "dpm-reference": [1, 2, 3], "exact": [0],
         "zero": [0], "random": [0]}


def _expected_keys():
    return sorted((p, m, i) for p in PAIRS for m, its in ITERS.items() for i in its)


def _assert_one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# --------------------------------------------------------------------------- end to end
def test_compare_table(tiny_run):
    out = tiny_run["out"]
    df = pd.read_csv(out / "metrics.csv")
    assert list(df.columns) == COLUMNS
    assert row_keys(df) == _expected_keys()  # one row per (pair, method, iteration), no duplicate
    assert (df["time_s"] > 0).all()
    for _, g in df.groupby(["pair", "method"]):
        g = g.sort_values("iteration")
        assert np.all(np.diff(g["cum_time_s"]) > 0)
        np.testing.assert_allclose(g["cum_time_s"], np.cumsum(g["time_s"]), rtol=1e-6)
    finite = df[np.isfinite(df["psnr"])]
    assert (finite["psnr"] > 5).all()
    assert df["ssim"].between(-1, 1).all()
    assert df["l1"].between(0, 1).all() and df["mse"].between(0, 1).all()
    assert (df["energy"] >= 0).all()
    gt = df[df["pair"] == "chelsea"]
    assert gt["epe"].notna().all() and gt["within_1px"].between(0, 1).all()
    assert df[df["pair"] != "chelsea"]["epe"].isna().all()  # user pairs have no ground truth
    assert set(df["device"]) == {"cpu"} and set(df["threads"]) == {1}
    # the thread counts in force during each timed run, numba and torch alike
    assert set(df["torch_threads"]) == {1} and set(df["numba_threads"]) == {1}
    assert set(df["patch_size"]) == {7}
    unseeded = df["method"].isin(["exact", "zero"])  # methods that take no seed
    assert set(df.loc[~unseeded, "seed"]) == {0} and df.loc[unseeded, "seed"].isna().all()
    assert (df["height"] <= 48).all() and (df["width"] <= 48).all()
    b16 = df[df["pair"] == "demo-b_gray16"].iloc[0]
    assert (b16["height"], b16["width"], b16["height_b"], b16["width_b"]) == (32, 40, 36, 44)
    # the exact NNF is the lower bound of the shared energy
    for pair in PAIRS:
        e = df[df["pair"] == pair].groupby("method")["energy"].min()
        assert e["exact"] <= e["pm"] + 1e-9 and e["exact"] <= e["dpm"] + 1e-9


def test_identity_pair_through_cli(tiny_run):
    df = pd.read_csv(tiny_run["out"] / "metrics.csv")
    for method in ("exact", "zero"):  # the exhaustive search and no motion: A itself
        same = df[(df["pair"] == "demo-c_same") & (df["method"] == method)].iloc[0]
        assert same["l1"] < 1e-6 and same["mse"] < 1e-10 and same["energy"] < 1e-9
        assert same["psnr"] > 90 and same["ssim"] > 0.99999
    # random matches rebuild nothing of it
    rand = df[(df["pair"] == "demo-c_same") & (df["method"] == "random")].iloc[0]
    assert rand["energy"] > 100 * df[(df["pair"] == "demo-c_same") & (df["method"] == "pm")]["energy"].min()


def test_compare_outputs(tiny_run):
    out = tiny_run["out"]
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(PAIRS) * len(ITERS)
    last = summary.set_index(["pair", "method"])["iteration"]
    assert last[("chelsea", "dpm")] == 3 and last[("chelsea", "pm")] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["status"] == "complete"
    for key in ("pm_iterations", "dpm_iterations", "seeds", "threads", "device", "patch_size"):
        assert key in cfg["run"]
    prov = cfg["provenance"]
    assert prov["versions"]["numpy"] and prov["versions"]["torch"]
    assert len(prov["git"]["commit"]) >= 7 and prov["cpu"] and prov["device"]["torch_threads"] == 1
    report = (out / "REPORT.md").read_text()
    assert "grid.png" in report and "convergence.png" in report and "chelsea" in report
    stdout = tiny_run["result"].stdout
    assert "PSNR dB" in stdout and "demo-c_same" in stdout  # summary table printed


def test_compare_figures(tiny_run):
    import matplotlib.image as mpimg

    out = tiny_run["out"]
    names = ["grid.png", "convergence.png"] + [f"{k}_{p}.png" for p in PAIRS
                                               for k in ("iterations", "nnf")]
    for name in names:
        path = out / name
        assert path.exists(), name
        assert path.stat().st_size > 10_000, name
        img = mpimg.imread(path)
        assert img.shape[0] > 150 and img.shape[1] > 300, (name, img.shape)
        assert img[..., :3].std() > 0.05, name  # not blank


def test_seeds_give_means_spreads_and_paired_verdicts(tmp_path):
    """--seeds 0 1 2: every seeded method once per seed, the others once; the report gives the mean
    ± the seed-to-seed spread per dataset and says whether pm - dpm is beyond it; the console one
    line per dataset and method."""
    out = tmp_path / "out"
    res = run_cli("compare", "--data", "chelsea", "coffee", "--max-size", "40", "--pm-iterations", "2",
                  "--dpm-iterations", "3", "--threads", "1", "--seeds", "0", "1", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(out / "metrics.csv")
    runs = df.groupby(["pair", "method"])["seed"].apply(lambda s: sorted(s.dropna().unique()))
    assert all(runs[(p, m)] == [0, 1, 2] for p in ("chelsea", "coffee") for m in ("pm", "pm-kd", "dpm", "random"))
    assert all(runs[(p, m)] == [] for p in ("chelsea", "coffee") for m in ("exact", "zero"))
    assert len(pd.read_csv(out / "summary.csv")) == 2 * (4 * 3 + 2)
    # the seeds differ (or there would be no spread to state), and the report's mean is theirs
    last = df[(df["method"] == "pm") & (df["iteration"] == 2)]
    assert last.groupby("pair")["epe"].nunique().min() > 1
    report = (out / "REPORT.md").read_text()
    mean = last.groupby("seed")["epe"].mean()  # per seed, the mean over the dataset's pairs
    assert f"| pm | 2 | {mean.mean():.2f} ± {mean.std(ddof=1):.2f} |" in report
    assert "(standard error over 3 seeds)" in report and ("beyond the seed-to-seed spread" in report
                                                         or "inside the seed-to-seed spread" in report)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("built-in ")]
    assert [ln.split()[1] for ln in lines] == ["pm", "pm-kd", "dpm", "exact", "zero", "random"]
    by_method = {ln.split()[1]: ln for ln in lines}
    assert "(2 pairs, 3 seeds)" in by_method["pm"] and by_method["exact"].endswith("(2 pairs)")
    assert (out / "artifacts" / "chelsea__pm__seed1.npz").exists() and (out / "artifacts" / "chelsea__pm.npz").exists()
    res = run_cli("compare", "--data", "chelsea", "--seed", "1", "--seeds", "2", "--out", str(tmp_path / "x"))
    _assert_one_line_error(res, "not both")


# --------------------------------------------------------------------------- resume
def _as_unfinished(out: Path) -> None:
    """Mark a copied run as interrupted (what a killed run leaves in config.json)."""
    cfg = json.loads((out / "config.json").read_text())
    cfg["status"] = "running"
    (out / "config.json").write_text(json.dumps(cfg))


def test_resume_after_interruption(tiny_run, tmp_path):
    """Cut the table mid-unit (plus a torn line): the rerun completes exactly the missing
    units, with no duplicate or missing row, keeping finished rows."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    _as_unfinished(out)
    full = pd.read_csv(out / "metrics.csv")
    lines = (out / "metrics.csv").read_text().splitlines(keepends=True)
    # keep the header and the first 6 rows, then half a row as an interrupted write leaves it
    (out / "metrics.csv").write_text("".join(lines[:7]) + lines[7][: len(lines[7]) // 2])
    kept = pd.read_csv(out / "metrics.csv", nrows=6)
    done_units = {(p, m) for p, m in zip(kept["pair"], kept["method"])
                  if len(kept[(kept["pair"] == p) & (kept["method"] == m)])
                  == len(ITERS[m])}
    assert done_units  # at least one unit survived whole
    res = run_cli(*tiny_run["args"], "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stdout
    df = pd.read_csv(out / "metrics.csv")
    assert row_keys(df) == _expected_keys()
    assert len(df) == len(full)
    for p, m in done_units:  # finished units were not recomputed (same timings)
        old = full[(full["pair"] == p) & (full["method"] == m)].sort_values("iteration")
        new = df[(df["pair"] == p) & (df["method"] == m)].sort_values("iteration")
        np.testing.assert_array_equal(old["time_s"].to_numpy(), new["time_s"].to_numpy())


def test_resume_after_kill(tmp_path, seed_folder):
    """Kill a real run once rows exist, rerun the same command: it resumes, keeps the finished
    units' rows (same timings) and completes the table."""
    out = tmp_path / "out"
    args = ["compare", "--data", str(seed_folder), "--out", str(out), "--max-size", "48",
            "--pm-iterations", "2", "--dpm-iterations", "12", "--threads", "1",
            "--exact-max-pixels", "0", "--methods", "pm,dpm,exact"]
    df = kill_and_resume(args, out, 3 * (2 + 12))
    pairs = ["demo-a_shift", "demo-b_gray16", "demo-c_same"]
    expected = sorted((p, m, i) for p in pairs for m, n in (("pm", 2), ("dpm", 12))
                      for i in range(1, n + 1))
    assert row_keys(df) == expected
    assert not (out / "artifacts" / "demo-a_shift__exact.npz").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert "exact NNF disabled" in json.dumps(cfg)
    # where the exhaustive NNF is skipped: each matcher's distance to it, on a sample of pixels
    gaps = cfg["sampled_exact"]["demo-a_shift"]
    assert set(gaps) == {"pm", "dpm"} and gaps["pm"]["gap"] >= 0 and gaps["dpm"]["gap"] > gaps["pm"]["gap"]
    assert "Distance to the optimum where the exact NNF was skipped" in (out / "REPORT.md").read_text()


# --------------------------------------------------------------------------- bad input
def _bad_folder(tmp_path: Path, write_image, problem: str) -> Path:
    base = tmp_path / problem
    img = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    if problem == "missing":
        return base
    write_image(base / "image_1" / "a.png", img)
    (base / "image_2").mkdir(parents=True, exist_ok=True)
    if problem == "empty":
        return base
    write_image(base / "image_2" / "a.png", img)
    if problem == "unequal":
        write_image(base / "image_1" / "b.png", img)
    elif problem == "not_an_image":
        (base / "image_1" / "b.png").write_bytes(b"this is text, not a PNG")
        write_image(base / "image_2" / "b.png", img)
    elif problem == "text_file":
        (base / "image_2" / "readme.txt").write_text("hello")
    elif problem == "too_small":
        write_image(base / "image_1" / "b.png", img[:5, :5])
        write_image(base / "image_2" / "b.png", img)
    return base


@pytest.mark.parametrize("problem, needle", [
    ("missing", "neither a built-in pair"), ("empty", "is empty"),
    ("unequal", "has 2 images but image_2/ has 1"), ("not_an_image", "not a readable image"),
    ("text_file", "not an image file"), ("too_small", "smaller than the 7x7 patch"),
])
def test_bad_folder_one_line_error_keeps_rows(tiny_run, tmp_path, write_image, problem, needle):
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    before = (out / "metrics.csv").read_bytes()
    base = _bad_folder(tmp_path, write_image, problem)
    res = run_cli("compare", "--data", "chelsea", str(base), "--out", str(out),
                  *tiny_run["tiny_args"])
    _assert_one_line_error(res, needle)
    assert (out / "metrics.csv").read_bytes() == before


@pytest.mark.parametrize("options, needle", [
    (["--pm-iterations", "0"], "--pm-iterations: expected an integer >= 1, got 0"),
    (["--dpm-iterations", "many"], "--dpm-iterations: expected an integer >= 1, got 'many'"),
    (["--threads", "-2"], "--threads: expected an integer >= 1, got -2"),
    (["--patch-size", "4"], "--patch-size: expected an integer >= 1 (odd), got 4"),
    (["--max-size", "3"], "--max-size: expected an integer >= 8, got 3"),
    (["--methods", "pm,sift"], "--methods: expected method names from pm, pm-kd, dpm"),
    (["--methods", "dpm-learned"], "dpm-learned needs --checkpoint"),
    (["--device", "tpu"], "invalid choice"),
    (["--data", "no_such_pair"], "neither a built-in pair"),
    (["--frobnicate"], "unrecognized arguments"),
    (["--checkpoint", "/no/such/file.pt"], "does not exist"),
])
def test_nonsense_options(options, needle, tmp_path):
    res = run_cli("compare", "--out", str(tmp_path / "o"), *options)
    _assert_one_line_error(res, needle)
    assert not (tmp_path / "o" / "metrics.csv").exists()


def test_other_settings_in_unfinished_out_folder(tiny_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    _as_unfinished(out)
    before = (out / "metrics.csv").read_bytes()
    args = list(tiny_run["args"])
    args[args.index("--pm-iterations") + 1] = "4"
    res = run_cli(*args, "--out", str(out))
    _assert_one_line_error(res, "other settings", "--fresh")
    assert (out / "metrics.csv").read_bytes() == before


def test_finished_run_is_replaced(tiny_run, tmp_path):
    """Running again into a folder with a finished run starts a new run (fresh numbers)."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    args = [a for a in tiny_run["args"]]
    args[args.index("--data") + 1: args.index("--data") + 3] = ["chelsea"]
    args[args.index("--dpm-iterations") + 1] = "2"
    res = run_cli(*args, "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(out / "metrics.csv")
    assert set(df["pair"]) == {"chelsea"} and df[df["method"] == "dpm"]["iteration"].max() == 2
    assert not (out / "nnf_demo-a_shift.png").exists()
    assert not (out / "artifacts" / "demo-a_shift__pm.npz").exists()


def test_cuda_requested_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    res = run_cli("compare", "--data", "chelsea", "--max-size", "32", "--device", "cuda",
                  "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "--device cuda")


def test_no_subcommand():
    res = run_cli()
    _assert_one_line_error(res)


# --------------------------------------------------------------------------- other commands
def test_reconstruct_demo_interface(seed_folder, tmp_path):
    import cv2

    for method in ("pm", "dpm"):
        save = tmp_path / method
        res = run_cli("reconstruct", "--base_dir", str(seed_folder), "--save_dir", str(save),
                      "--method", method, "--iterations", "2", "--threads", "1")
        assert res.returncode == 0, res.stderr[-3000:]
        names = sorted(p.name for p in save.iterdir())
        assert names == sorted(p.name for p in (seed_folder / "image_1").iterdir())
        for name in names:
            a = cv2.imread(str(seed_folder / "image_1" / name), cv2.IMREAD_UNCHANGED)
            r = cv2.imread(str(save / name), cv2.IMREAD_UNCHANGED)
            assert r.shape[:2] == a.shape[:2] and r.ndim == 3 and r.shape[2] == 3


def test_reconstruct_bad_folder(tmp_path):
    res = run_cli("reconstruct", "--base_dir", str(tmp_path / "nope"), "--save_dir",
                  str(tmp_path / "s"))
    _assert_one_line_error(res, "does not exist")


def test_reconstruct_checks_every_pair_before_writing(seed_folder, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(seed_folder, base)
    last = sorted((base / "image_1").iterdir())[-1]
    last.write_bytes(b"not an image")  # the last pair is broken: nothing may be written
    save = tmp_path / "s"
    res = run_cli("reconstruct", "--base_dir", str(base), "--save_dir", str(save),
                  "--method", "pm", "--iterations", "1", "--threads", "1")
    _assert_one_line_error(res, last.name, "not a readable image")
    assert not save.exists() or not any(save.iterdir())


def test_train_subcommand_routed():
    res = run_cli("train", "--help")
    assert res.returncode == 0 and "usage" in res.stdout.lower(), res.stderr[-2000:]
    for option in ("--steps", "--eval-iterations", "--epe-weight", "--no-final-eval"):
        assert option in res.stdout


def test_help_lists_commands():
    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("compare", "reconstruct", "train"):
        assert cmd in res.stdout


def test_compare_with_checkpoint(tmp_path):
    """--checkpoint adds dpm-learned (same iterations as dpm) to the table and the figures."""
    import torch

    from learning.checkpoint import save_checkpoint
    from learning.features import LearnedFeatures, build_model

    feats = LearnedFeatures(channels=4, hidden=0, generator=torch.Generator().manual_seed(0))
    model = build_model(feats, iterations=21)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, {"model": {"iterations": 21}}, seed=0,
                           step=0)
    out = tmp_path / "out"
    res = run_cli("compare", "--data", "chelsea", "--max-size", "40", "--pm-iterations", "2",
                  "--dpm-iterations", "3", "--threads", "1", "--exact-max-pixels", "0",
                  "--checkpoint", str(ckpt), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(out / "metrics.csv")
    assert sorted(df[df["method"] == "dpm-learned"]["iteration"]) == [1, 2, 3]
    assert "dpm-learned" in (out / "REPORT.md").read_text()
    assert (out / "grid.png").stat().st_size > 10_000


def test_bad_checkpoint_one_line(tiny_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    before = (out / "metrics.csv").read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = run_cli(*tiny_run["args"], "--checkpoint", str(bad), "--out", str(out))
    _assert_one_line_error(res, "could not be loaded")
    assert (out / "metrics.csv").read_bytes() == before


# --------------------------------------------------------------------------- outputs, scale, diff
def test_write_outputs_read_back_and_native_scoring(tmp_path):
    """--write-outputs: .flo files that OpenCV reads back to the final matches' displacements;
    --score-at native: rows scored on the native pair with the matches scaled back up."""
    import cv2

    from experiments.data import builtin_pair
    from experiments.data.writers import flow_of, upscale_matches
    from experiments.report.artifacts import load_artifact
    from experiments.report.metrics import epe

    out = tmp_path / "out"
    res = run_cli("compare", "--data", "chelsea", "--max-size", "40", "--methods", "pm,zero",
                  "--pm-iterations", "2", "--threads", "1", "--write-outputs", "--score-at", "native",
                  "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    small, native = builtin_pair("chelsea", max_size=40), builtin_pair("chelsea")
    for method in ("pm", "zero"):
        matches = load_artifact(out, "chelsea", method)["nnf"]  # as the method ran: at 40 px
        assert matches.shape[:2] == small.a.shape[:2]
        scored = upscale_matches(matches, small.a.shape, small.b.shape, native.a.shape, native.b.shape)
        flow = cv2.readOpticalFlow(str(out / "outputs" / f"chelsea__{method}.flo"))  # written at native size
        np.testing.assert_allclose(flow, flow_of(scored), atol=1e-4)
    df = pd.read_csv(out / "metrics.csv")
    # the zero baseline's native EPE: its small-size identity matches scaled up, scored on native GT
    zero = upscale_matches(np.stack(np.mgrid[0:small.a.shape[0], 0:small.a.shape[1]], -1).astype(np.float32),
                           small.a.shape, small.b.shape, native.a.shape, native.b.shape)
    assert df.loc[df["method"] == "zero", "epe"].iloc[0] == pytest.approx(epe(zero, native.gt, native.valid), rel=1e-6)
    assert json.loads((out / "config.json").read_text())["run"]["score_at"] == "native"


def test_kitti_flow_png_written_reads_back_within_a_64th(tmp_path):
    """The KITTI PNG writer's file, read as 16-bit by OpenCV and by the dataset reader: the same
    displacements within 1/64 px; out of KITTI's range: refused."""
    import cv2

    from experiments.data import read_kitti_flow
    from experiments.data.writers import flow_of, write_kitti_flow

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:6, 0:9].astype(np.float32)
    matches = np.stack([ys + rng.uniform(-20, 20, ys.shape), xs + rng.uniform(-300, 300, xs.shape)], -1)
    path = write_kitti_flow(tmp_path / "f.png", matches.astype(np.float32))
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (6, 9, 3) and (raw[..., 0] == 1).all()
    flow, valid = read_kitti_flow(path)
    assert valid.all() and np.abs(flow - flow_of(matches)).max() <= 1 / 128 + 1e-6
    with pytest.raises(UserError, match="exceeds KITTI's"):
        write_kitti_flow(tmp_path / "g.png", matches + np.float32([0, 600]))


def test_diff_of_a_run_against_itself_and_a_regression(tiny_run, tmp_path):
    out = tiny_run["out"]
    res = run_cli("diff", str(out), str(out), "--fail-above", "0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "psnr +0 " in res.stdout and "regression" not in res.stdout and "settings that differ" not in res.stdout
    worse = tmp_path / "worse"
    shutil.copytree(out, worse)
    df = pd.read_csv(worse / "metrics.csv")
    df.loc[df["method"] == "pm", "psnr"] -= 1.0  # every pm row 1 dB lower
    df.to_csv(worse / "metrics.csv", index=False)
    res = run_cli("diff", str(out), str(worse), "--fail-above", "1")
    assert res.returncode == 1 and "regression(s) beyond 1%" in res.stdout
    pm = [ln.split() for ln in res.stdout.splitlines() if ln.split()[1:3] == ["pm", "psnr"]]
    last = pd.read_csv(out / "summary.csv")
    finite = last[(last["method"] == "pm") & np.isfinite(last["psnr"])]["pair"]  # not the identity pair
    assert sorted(words[0] for words in pm) == sorted(finite) and all(words[3] == "-1" for words in pm)
    _assert_one_line_error(run_cli("diff", str(out), str(tmp_path / "nothing")), "holds no metrics.csv")
