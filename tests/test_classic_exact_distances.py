"""Exact, CPU-independent distances of classic_pm on 8-bit data.

8-bit inputs (uint8, or float exactly k / 255) are compared on the 0-255 scale: every SSD is an
integer below 2^24, exact in float32 in any summation order. These tests check the integers
against numpy's int64 arithmetic, the detection of 8-bit float input, and that neither the
summation order (reassociation off) nor the batching of the far search candidates changes the
NNF.
"""

import numba
import numpy as np
import pytest

import classic_pm
from classic_pm import _kernels, core


def _u8_pair(seed, shape_a=(21, 26, 3), shape_b=(19, 23, 3)):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, shape_a, dtype=np.uint8),
            rng.integers(0, 256, shape_b, dtype=np.uint8))


def _int_ssd(a, b, nnf, p):
    """Plain numpy int64 SSD of every patch of A against its match (edge replication)."""
    r = p // 2
    pa = np.pad(a.astype(np.int64), ((r, r), (r, r), (0, 0)), mode="edge")
    pb = np.pad(b.astype(np.int64), ((r, r), (r, r), (0, 0)), mode="edge")
    out = np.zeros(a.shape[:2], np.int64)
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            my, mx = nnf[y, x]
            out[y, x] = ((pa[y:y + p, x:x + p] - pb[my:my + p, mx:mx + p]) ** 2).sum()
    return out


@pytest.mark.parametrize("p, channels", [(7, 3), (3, 1), (5, 4)])
def test_distances_are_exact_integers_for_uint8(p, channels):
    a, b = _u8_pair(1, (12, 14, channels), (11, 13, channels))
    rng = np.random.default_rng(2)
    nnf = np.stack([rng.integers(0, 11, (12, 14)), rng.integers(0, 13, (12, 14))], -1)
    st = core._stored_pair(a, b, p)
    assert st.exact and st.A2.dtype == np.uint8
    raw = np.empty((12, 14), np.float32)
    st.kernels.patch_costs(st.A2, st.B2, st.mask, np.ascontiguousarray(nnf, np.int32), p, channels, raw)
    ref = _int_ssd(a, b, nnf, p)
    assert ref.max() > 2 ** 17  # large sums, where float32 [0, 1] arithmetic would round
    np.testing.assert_array_equal(raw.astype(np.int64), ref)
    assert (raw == raw.astype(np.int64)).all()
    # public API: the [0, 1] scale, converted by one exact division
    np.testing.assert_array_equal(classic_pm.patch_cost(a, b, nnf, patch_size=p),
                                  (ref / 255.0 ** 2).astype(np.float32))
    assert classic_pm.energy(a, b, nnf, patch_size=p) == pytest.approx(
        ref.sum() / 255.0 ** 2 / (ref.size * p * p * channels), rel=1e-14)


def test_float_multiples_of_1_255_are_stored_as_uint8():
    a, b = _u8_pair(3)
    for scaled in (a.astype(np.float32) / 255, a / 255.0):  # float32 and float64 division
        st = core._stored_pair(scaled, b.astype(np.float32) / 255, 7)
        assert st.exact and st.scale == 255.0
        np.testing.assert_array_equal(st.A2, core._stored_pair(a, b, 7).A2)
    nnf = classic_pm.patchmatch(a, b, iterations=2, seed=5)
    np.testing.assert_array_equal(
        classic_pm.patchmatch(a.astype(np.float32) / 255, b / 255.0, iterations=2, seed=5), nnf)
    # one value off the grid (by one float32 ulp) sends the pair to the float32 storage
    off = a.astype(np.float32) / 255
    off[3, 4, 1] = np.nextafter(off[3, 4, 1], np.float32(1))
    st = core._stored_pair(off, b, 7)
    assert not st.exact and st.A2.dtype == np.float32 and st.scale == 1.0
    # values outside [0, 1] or a patch too large for exact float32 sums: float32 storage too
    assert not core._stored_pair(a.astype(np.float32) / 255 * 2, b, 7).exact
    assert not core._stored_pair(a, b, 11).exact  # 11 * 11 * 3 * 255^2 > 2^24


def test_quantize_255_checks_every_value_exactly():
    k = np.arange(256, dtype=np.float32)
    x = (k / np.float32(255)).reshape(16, 16, 1)
    out = np.empty(x.shape, np.uint8)
    assert _kernels.quantize_255(x, out)
    np.testing.assert_array_equal(out.ravel(), np.arange(256))
    for bad in (np.float32(0.5), np.float32(-1 / 255), np.float32(256 / 255)):
        y = x.copy()
        y[7, 9, 0] = bad
        assert not _kernels.quantize_255(y, out)


def test_nnf_does_not_depend_on_summation_order(monkeypatch):
    """Kernels built without fastmath (no reassociation: program-order float32 sums) give the
    identical NNF and costs on 8-bit data, for the faithful and the default search."""
    a, b = _u8_pair(4, (40, 44, 3), (38, 47, 3))
    fast = {rr: classic_pm.patchmatch(a, b, iterations=4, seed=7, refine_radius=rr) for rr in (0, 8)}
    strict = _kernels.strict_builds()
    monkeypatch.setattr(_kernels, "U8", strict)
    slow = {rr: classic_pm.patchmatch(a, b, iterations=4, seed=7, refine_radius=rr) for rr in (0, 8)}
    slow_cost = classic_pm.patch_cost(a, b, slow[8])
    monkeypatch.undo()

    def ir(kernel):
        return "\n".join(kernel.inspect_llvm().values())

    # the two runs differ in summation order: reassociation allowed in one build only (a fresh
    # default build of the same band kernel: cached code cannot be inspected)
    default = numba.njit(fastmath=_kernels._FASTMATH)(_kernels.U8._sweep_band.py_func)
    default.compile(strict._sweep_band.signatures[0])
    assert "fadd reassoc" in ir(default)
    assert "fadd" in ir(strict._sweep_band) and "reassoc" not in ir(strict._sweep_band)
    assert "reassoc" not in ir(strict.init_serial) + ir(strict.patch_costs)
    for rr in (0, 8):
        np.testing.assert_array_equal(slow[rr], fast[rr])
    assert not np.array_equal(fast[0], fast[8])  # two different searches, both order-free
    np.testing.assert_array_equal(slow_cost, classic_pm.patch_cost(a, b, fast[8]))


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_far_candidates_give_the_plain_loop_nnf(monkeypatch, threads):
    """The far random-search candidates evaluated as one batch decide exactly as the one-by-one
    loop (no batch: count_far -> 0)."""
    a, b = _u8_pair(5, (48, 40, 3), (45, 52, 3))
    radii = _kernels.search_radii(52, 0)
    assert _kernels.count_far(radii) == 3  # radii 52, 26, 13 are batched
    batched = classic_pm.patchmatch(a, b, iterations=3, seed=2, threads=threads, refine_radius=0)
    monkeypatch.setattr(_kernels, "count_far", lambda radii: 0)
    plain = classic_pm.patchmatch(a, b, iterations=3, seed=2, threads=threads, refine_radius=0)
    np.testing.assert_array_equal(batched, plain)


def test_search_radii_and_far_count():
    assert list(_kernels.search_radii(741, 0)) == [741, 370, 185, 92, 46, 23, 11, 5, 2, 1]
    assert list(_kernels.search_radii(20, 8)) == [20, 10, 5, 5, 2, 2, 1]
    assert list(_kernels.search_radii(4, 0)) == [4, 2, 1]
    assert _kernels.count_far(_kernels.search_radii(741, 8)) == 7
    assert _kernels.count_far(_kernels.search_radii(10, 8)) == 0


@pytest.mark.parametrize("p, channels, dtype, lanes", [
    (3, 1, np.uint8, 8), (3, 3, np.uint8, 16), (5, 3, np.uint8, 16), (7, 3, np.uint8, 32),
    (7, 5, np.uint8, 64), (3, 1, np.float32, 32), (7, 3, np.float32, 32), (11, 3, np.float32, 64)])
def test_lane_layout(p, channels, dtype, lanes):
    mask = core._lane_mask(p, channels, dtype)
    assert mask.shape == (lanes,) and mask.sum() == p * channels and mask[:p * channels].all()
    img = (np.arange(5 * 6 * channels) % 251).astype(dtype).reshape(5, 6, channels)
    rows = core._padded_rows(img, p)
    assert rows.dtype == dtype
    assert rows.shape == (5 + p - 1, (6 + p - 1) * channels + lanes - p * channels)
    r = p // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    np.testing.assert_array_equal(rows[:, :(6 + p - 1) * channels], padded.reshape(5 + p - 1, -1))
    assert (rows[:, (6 + p - 1) * channels:] == 0).all()
