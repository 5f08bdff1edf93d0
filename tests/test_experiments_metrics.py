"""Metrics: known answers (identity pair, shifts), the shared energy, timing of method runs."""
from __future__ import annotations

import math

import numpy as np
import pytest

import classic_pm
from experiments import methods
from experiments.report import metrics
from experiments.data import Pair, make_warped_pair


def _identity_nnf(h: int, w: int) -> np.ndarray:
    return np.stack(np.mgrid[0:h, 0:w], axis=-1).astype(np.int32)


@pytest.fixture(scope="module")
def image():
    from experiments.data import builtin_pair

    return builtin_pair("chelsea", max_size=40).a


def test_identity_pair_zero_error(image):
    """A == B with the identity NNF: no reconstruction error, zero energy, zero EPE."""
    h, w = image.shape[:2]
    nnf = _identity_nnf(h, w)
    recon = classic_pm.vote(image, nnf, patch_size=7)
    m = metrics.image_metrics(image, recon)
    assert m["l1"] < 1e-6 and m["mse"] < 1e-12
    assert m["psnr"] > 100 and m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert metrics.energy(image, image, nnf, patch_size=7) == 0.0
    valid = np.ones((h, w), bool)
    assert metrics.epe(nnf, nnf.astype(np.float32), valid) == 0.0
    assert metrics.within_1px(nnf, nnf.astype(np.float32), valid) == 1.0


def test_identity_pair_exact_and_pm(image):
    """The exact NNF (and PatchMatch, nearly) of A against itself rebuilds A exactly."""
    pair = Pair("same", image, image.copy())
    run = methods.run_exact(pair, patch_size=7, device="cpu")
    assert metrics.energy(image, image, run.nnfs[0], patch_size=7) == pytest.approx(0, abs=1e-9)
    assert metrics.l1(image, run.reconstruct(run.nnfs[0])) < 1e-6
    pm = methods.run_pm(pair, iterations=5, patch_size=7, seed=0, threads=1)
    assert metrics.energy(image, image, pm.nnfs[-1], patch_size=7) < 1e-4


def test_psnr_ssim_values():
    a = np.full((16, 16, 3), 0.5, np.float32)
    b = a + 0.1
    assert metrics.mse(a, b) == pytest.approx(0.01, rel=1e-5)
    assert metrics.l1(a, b) == pytest.approx(0.1, rel=1e-5)
    assert metrics.psnr(a, b) == pytest.approx(20.0, rel=1e-4)
    assert metrics.psnr(a, a) == math.inf
    with pytest.raises(ValueError, match=r"image shapes differ: A \(16, 16, 3\) vs "
                                         r"reconstruction \(8, 16, 3\)"):
        metrics.l1(a, b[:8])


def test_energy_shared_function_rounds_and_clips(image):
    b = image[::-1].copy()
    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    nnf = np.stack([rng.integers(0, h, (h, w)), rng.integers(0, w, (h, w))], -1).astype(np.int32)
    e_int = metrics.energy(image, b, nnf, patch_size=5)
    assert e_int == pytest.approx(classic_pm.energy(image, b, nnf, patch_size=5), rel=1e-6)
    e_float = metrics.energy(image, b, nnf + 0.3, patch_size=5)
    assert e_float == pytest.approx(e_int, rel=1e-9)
    out = nnf.astype(np.float64)
    out[0, 0] = (-5.0, 1e6)  # outside B: clipped into the frame
    assert np.isfinite(metrics.energy(image, b, out, patch_size=5))


def test_epe_and_within_1px():
    gt = np.zeros((4, 4, 2), np.float32)
    nnf = np.zeros((4, 4, 2), np.float32)
    nnf[0, :, 1] = 3.0  # 4 pixels 3 px off
    nnf[1, :, 0] = 0.5  # 4 pixels 0.5 px off
    valid = np.ones((4, 4), bool)
    valid[3] = False
    assert metrics.epe(nnf, gt, valid) == pytest.approx((4 * 3 + 4 * 0.5) / 12)
    assert metrics.within_1px(nnf, gt, valid) == pytest.approx(8 / 12)
    assert math.isnan(metrics.epe(nnf, None, None))
    assert math.isnan(metrics.within_1px(nnf, gt, np.zeros((4, 4), bool)))


def test_method_runs_report_every_iteration(image):
    pair = make_warped_pair(image, rng=0)
    pm = methods.run_pm(pair, iterations=3, patch_size=7, seed=0, threads=1)
    assert pm.iterations == [1, 2, 3] and len(pm.nnfs) == 3
    assert all(t > 0 for t in pm.times)
    e = [metrics.energy(pair.a, pair.b, n, patch_size=7) for n in pm.nnfs]
    assert e[-1] <= e[0]
    import diff_pm

    dpm = methods.run_dpm(diff_pm.DifferentiablePatchMatch(iterations=4, patch_size=7), pair,
                          device="cpu", seed=0)
    assert dpm.iterations == [1, 2, 3, 4] and all(t > 0 for t in dpm.times)
    assert dpm.nnfs[0].shape == pair.a.shape[:2] + (2,)
    recon = dpm.reconstruct(dpm.nnfs[-1])
    assert recon.shape == pair.a.shape and np.isfinite(recon).all()


def test_strip_iterations():
    from experiments.report.artifacts import strip_iterations

    from experiments.report.figures import strip_columns

    assert strip_iterations(5) == [1, 2, 3, 4, 5]  # round(c / 6 * 5) for c = 1..6: 1, 2, 2, 3, 4, 5
    assert strip_iterations(21) == [4, 7, 10, 14, 18, 21]  # 3.5 -> 4 (round half to even), 7, 10.5 -> 10 ...
    assert strip_iterations(1) == [1]
    # the figure's columns: c/6 of each method's iterations, each kept reconstruction once
    assert strip_columns([4, 7, 10, 14, 18, 21], 21) == {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5}
    assert strip_columns([1, 2, 3, 4, 5], 5) == {1: 0, 2: 1, 4: 2, 5: 3, 6: 4}  # 2/6 and 3/6 of 5: it 2
    assert strip_columns([0], 0) == {6: 0}  # one value (the exact NNF, a baseline): the last column


def test_iteration_metrics_are_the_columns_of_a_row(image):
    """The one per-iteration metric function: every quality column, with recon clipped first."""
    pair = make_warped_pair(image, rng=1)
    run = methods.run_pm(pair, iterations=2, patch_size=5, seed=0, threads=1)
    nnf = run.nnfs[-1]
    recon = run.reconstruct(nnf) + 0.5  # partly out of range: clipped like every row
    row = metrics.iteration_metrics(pair, nnf, recon, patch_size=5)
    assert list(row) == ["psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px", "within_3px",
                         "within_5px", *metrics.DATASET_COLUMNS]
    for t in (1, 3, 5):  # the fraction within t px, as within_px computes it
        assert row[f"within_{t}px"] == metrics.within_px(nnf, pair.gt, pair.valid, threshold_px=t)
    assert all(np.isnan(row[c]) for c in metrics.DATASET_COLUMNS)  # a warped pair is from no dataset
    clipped = np.clip(recon, 0, 1)
    assert row["psnr"] == metrics.psnr(pair.a, clipped) and row["l1"] == metrics.l1(pair.a, clipped)
    assert row["energy"] == metrics.energy(pair.a, pair.b, nnf, patch_size=5)
    assert row["energy"] != metrics.energy(pair.a, pair.b, nnf, patch_size=7)  # patch size passed
    assert row["epe"] == metrics.epe(nnf, pair.gt, pair.valid)


# --------------------------------------------------------------------------- report tables
def _summary():
    """A hand-made summary: two KITTI flow pairs, pm with seeds 0 and 1, zero without a seed, and
    one Middlebury pair."""
    import pandas as pd

    rows = []
    for pair, pm_epe, zero_epe in (("kitti-flow/000000", (2.0, 4.0), 10.0), ("kitti-flow/000001", (6.0, 8.0), 20.0)):
        for seed, e in zip((0, 1), pm_epe):
            rows.append(dict(dataset="kitti-flow", pair=pair, method="pm", seed=seed, epe=e, fl=10.0 * seed))
        rows.append(dict(dataset="kitti-flow", pair=pair, method="zero", seed=None, epe=zero_epe, fl=90.0))
    rows.append(dict(dataset="middlebury", pair="middlebury/Motorcycle", method="pm", seed=0, epe=1.0,
                     bad_2_0=5.0))
    df = pd.DataFrame(rows)
    for c in ("psnr", "ssim", "l1", "mse", "energy", "within_1px", "within_3px", "within_5px", "bad_2_0",
              "fl", "d1", "epe_noc", "epe_occ", "cum_time_s"):
        if c not in df:
            df[c] = float("nan")
    return df


def test_dataset_tables_and_paired_differences_worked_by_hand():
    from experiments.report.compare import console_table
    from experiments.report.tables import dataset_table, markdown_table, paired_difference, view

    s = _summary()
    t = dataset_table(s, "kitti-flow").set_index("method")
    # pm: seed 0 mean over pairs (2 + 6) / 2 = 4, seed 1 (4 + 8) / 2 = 6 -> mean 5, sd sqrt(2)
    assert t.loc["pm", "epe"] == 5.0 and t.loc["pm", "epe_sd"] == pytest.approx(math.sqrt(2))
    assert t.loc["zero", "epe"] == 15.0 and math.isnan(t.loc["zero", "epe_sd"]) and t.loc["zero", "seeds"] == 1
    # pm - zero per seed: (2 - 10 + 6 - 20) / 2 = -11 and (4 - 10 + 8 - 20) / 2 = -9: mean -10, se 1
    d = paired_difference(s, "kitti-flow", "pm", "zero", "epe")
    assert d == dict(mean=-10.0, se=pytest.approx(1.0), seeds=2, pairs=2)
    title, cols = view("kitti-flow")
    assert title == "KITTI 2015 flow" and cols[:2] == [("epe", "EPE px"), ("fl", "Fl-all %")]
    assert view("middlebury:MiddEval3")[0] == "Middlebury stereo (middlebury:MiddEval3)"
    table = markdown_table(dataset_table(s, "kitti-flow"), [("method", "method"), *cols[:2]], spread=True)
    assert "| pm | 5.00 ± 1.41 | 5.0 ± 7.1 |" in table and "| zero | 15.00 | 90.0 |" in table
    lines = console_table(s).splitlines()  # one line per dataset and method, never mixed
    assert [ln.split()[:2] for ln in lines] == [["kitti-flow", "pm"], ["kitti-flow", "zero"], ["middlebury", "pm"]]
    assert "bad-2.0 % 5.0" in lines[2] and "Fl-all" not in lines[2]
