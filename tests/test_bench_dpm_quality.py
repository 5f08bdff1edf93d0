"""The pair transformations of ``benchmarks.dpm_quality --study shapes`` keep the ground truth exact."""
from __future__ import annotations

import numpy as np

from benchmarks.dpm_quality import b_scaled, transposed
from experiments.data import Pair


def _ramp_identity(h: int, w: int) -> Pair:
    """A = B = an affine ramp per channel; ground truth = identity (every pixel matches itself)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.01 * x + 0.002 * y, 0.003 * y, 0.5 + 0.001 * x], axis=-1).astype(np.float32)
    gt = np.stack([y, x], axis=-1)
    return Pair("ramp", img, img.copy(), gt, np.ones((h, w), bool))


def _bilinear(img: np.ndarray, yx: np.ndarray) -> np.ndarray:
    y, x = yx[..., 0], yx[..., 1]
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    g = lambda yy, xx: img[np.clip(yy, 0, img.shape[0] - 1), np.clip(xx, 0, img.shape[1] - 1)]  # noqa: E731
    return ((1 - fy) * ((1 - fx) * g(y0, x0) + fx * g(y0, x0 + 1))
            + fy * ((1 - fx) * g(y0 + 1, x0) + fx * g(y0 + 1, x0 + 1)))


def test_transposed_pair_is_taller_and_its_ground_truth_points_at_the_same_pixels():
    p = _ramp_identity(5, 9)
    p.gt[..., 1] += 1.0  # a translation: A(y, x) matches B(y, x + 1)
    p.b = p.b[:, ::-1] + 0.25  # B unlike A, so taking B from A (or A from B) shows
    p.valid[:, -1] = False  # the last column's match leaves B
    p.valid[2, 4] = False
    t = transposed(p)
    assert t.a.shape == (9, 5, 3) and t.b.shape == (9, 5, 3) and t.valid.shape == (9, 5)
    assert t.valid.sum() == p.valid.sum() == 5 * 8 - 1
    for y, x in [(0, 0), (2, 7), (4, 3), (2, 4), (1, 8)]:
        assert np.array_equal(t.a[x, y], p.a[y, x])
        assert np.array_equal(t.b[x, y], p.b[y, x])
        assert t.valid[x, y] == p.valid[y, x]
        assert tuple(t.gt[x, y]) == (p.gt[y, x, 1], p.gt[y, x, 0])  # (y_B', x_B') = (x_B, y_B)
    assert not t.valid[4, 2] and not t.valid[8].any()


def test_b_scaled_ground_truth_samples_the_same_colour():
    """Bilinear resizing reproduces an affine ramp exactly away from the border, so B' sampled at the
    mapped ground truth equals A there (identity pair)."""
    p = _ramp_identity(16, 20)
    s = b_scaled(p, 1.25)
    assert s.b.shape == (20, 25, 3) and s.a.shape == p.a.shape
    got = _bilinear(s.b, s.gt)
    inner = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(got[inner], p.a[inner], atol=1e-5)
    # pixel centres map to pixel centres: A's (0, 0) -> B' (0.125, 0.125); A's last -> B' last - 0.125
    np.testing.assert_allclose(s.gt[0, 0], [0.125, 0.125])
    np.testing.assert_allclose(s.gt[-1, -1], [20 - 1 - 0.125, 25 - 1 - 0.125])


def test_paired_table_worked_by_hand():
    """Per-seed differences against the reference, relative to the reference's mean: seeds 0 and 1
    give L1 differences +0.01 and +0.03 on a mean of 0.2 -> +5% and +15%: mean +10%, SE 5%."""
    from benchmarks.dpm_quality import PAIRS, paired_table

    rows = []
    for seed, (l1_ref, l1_def) in enumerate([(0.1, 0.11), (0.3, 0.33)]):
        for config, l1 in (("reference", l1_ref), ("default", l1_def)):
            rows.append(dict(size="320", pair=PAIRS[0], config=config, seed=seed, l1=l1, mse=1.0, epe=2.0 * l1))
    table = paired_table(rows)
    line = next(x for x in table.splitlines() if x.startswith("| `default`"))
    assert line.split(" | ")[1] == "+10.00 ± 5.00% / +0.00 ± 0.00% / +10.00 ± 5.00%"
    assert "over 2 seeds" in table
    assert paired_table([r for r in rows if r["seed"] == 0]) == ""          # one seed: no spread
    assert paired_table([r for r in rows if r["config"] == "default"]) == ""  # no reference
