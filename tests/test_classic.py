"""Tests of classic_pm: references on tiny inputs, known answers, determinism, input errors."""

import numba
import numpy as np
import pytest
from skimage import data, filters, transform

import classic_pm
from classic_pm import exact_nnf, patch_cost, patchmatch, vote

try:
    import torch

    _CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a project dependency
    _CUDA = False
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu,
                                              pytest.mark.skipif(not _CUDA, reason="needs CUDA")])]


# ------------------------------------------------------------------------------ helpers

def _textured(shape, seed, sigma=1.0):
    """Smoothed uniform noise in [0, 1], float32 (H, W, C): every patch is unique."""
    rng = np.random.default_rng(seed)
    x = filters.gaussian(rng.random(shape), sigma=sigma, channel_axis=-1)
    x = (x - x.min()) / (x.max() - x.min())
    return x.astype(np.float32)


def _np_patches(img, p):
    """Plain numpy: edge-padded p x p patches of every pixel, float64 (H, W, p * p * C)."""
    r = p // 2
    pad = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="edge")
    H, W = img.shape[:2]
    return np.array([[pad[y:y + p, x:x + p].ravel() for x in range(W)] for y in range(H)])


def _np_vote(b, nnf, p):
    """Plain numpy voting loop (edge replication)."""
    r = p // 2
    Ha, Wa = nnf.shape[:2]
    Hb, Wb = b.shape[:2]
    out = np.zeros((Ha, Wa, b.shape[2]))
    for y in range(Ha):
        for x in range(Wa):
            vals = []
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    qy, qx = y + dy, x + dx
                    if 0 <= qy < Ha and 0 <= qx < Wa:
                        my, mx = nnf[qy, qx]
                        vals.append(b[min(max(my - dy, 0), Hb - 1), min(max(mx - dx, 0), Wb - 1)])
            out[y, x] = np.mean(vals, axis=0)
    return out


def _energy(a, b, nnf, p=7):
    return float(patch_cost(a, b, nnf, patch_size=p).mean(dtype=np.float64) / (p * p * a.shape[2]))


@pytest.fixture(scope="module")
def natural_pair():
    """Crop of astronaut (A) and the same scene shifted by (5, -4) px and rotated by 3 degrees (B)."""
    img = data.astronaut()[100:260, 150:310].astype(np.float32) / 255
    centre = np.array([80.0, 80.0])
    rot = transform.EuclideanTransform(rotation=np.deg2rad(3))
    shift = transform.EuclideanTransform(translation=(-4, 5))  # (x, y)
    to_centre = transform.EuclideanTransform(translation=-centre)
    tf = to_centre + rot + transform.EuclideanTransform(translation=centre) + shift
    warped = transform.warp(img, tf.inverse, order=1, mode="edge").astype(np.float32)
    return np.ascontiguousarray(img[40:104, 40:120]), np.ascontiguousarray(warped[36:100, 44:124])


# ------------------------------------------------------------------------- references

@pytest.mark.parametrize("p, channels", [(3, 3), (5, 1)])
def test_patch_cost_matches_numpy(p, channels):
    rng = np.random.default_rng(1)
    a = rng.random((9, 10, channels), dtype=np.float32)
    b = rng.random((8, 12, channels), dtype=np.float32)
    nnf = np.stack([rng.integers(0, 8, (9, 10)), rng.integers(0, 12, (9, 10))], -1)
    pa, pb = _np_patches(a, p), _np_patches(b, p)
    ref = ((pa - pb[nnf[..., 0], nnf[..., 1]]) ** 2).sum(-1)
    got = patch_cost(a, b, nnf, patch_size=p)
    assert got.dtype == np.float32 and got.shape == (9, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p, channels", [(3, 3), (5, 2)])
def test_exact_nnf_matches_numpy_brute_force(p, channels, device):
    rng = np.random.default_rng(2)
    a = rng.random((9, 10, channels), dtype=np.float32)
    b = rng.random((11, 8, channels), dtype=np.float32)
    pa, pb = _np_patches(a, p), _np_patches(b, p).reshape(-1, p * p * channels)
    d = ((pa[:, :, None, :] - pb[None, None]) ** 2).sum(-1)
    idx = d.argmin(-1)
    ref = np.stack([idx // 8, idx % 8], -1)
    got = exact_nnf(a, b, patch_size=p, device=device)
    assert got.dtype == np.int32 and got.shape == (9, 10, 2)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("cache_bytes", [0, 2 ** 30])
def test_exact_nnf_chunking_does_not_change_the_result(monkeypatch, cache_bytes):
    rng = np.random.default_rng(12)
    a = rng.random((13, 11, 3), dtype=np.float32)
    b = np.concatenate([a[:6], rng.random((9, 11, 3), dtype=np.float32), a[:6]])  # exact twins
    whole = exact_nnf(a, b, patch_size=3, device="cpu")
    monkeypatch.setattr(classic_pm.exact, "_EXACT_BLOCK_BYTES", 8 * 256)  # 1-row B, 2-row A chunks
    monkeypatch.setattr(classic_pm.exact, "_EXACT_CACHE_BYTES", cache_bytes)
    np.testing.assert_array_equal(exact_nnf(a, b, patch_size=3, device="cpu"), whole)
    assert (whole[1:5, 1:10, 0] < 6).all()  # twins in B's first and last rows: the first wins


def test_exact_nnf_ties_go_to_lowest_index():
    b = np.zeros((6, 7, 1), np.float32)  # every patch of B is identical
    a = np.zeros((5, 5, 1), np.float32)
    np.testing.assert_array_equal(exact_nnf(a, b, patch_size=3, device="cpu"), 0)


def test_energy_where_selects_pixels():
    rng = np.random.default_rng(5)
    a = rng.random((12, 14, 3), dtype=np.float32)
    b = rng.random((10, 11, 3), dtype=np.float32)
    nnf = patchmatch(a, b, patch_size=3, iterations=1)
    cost = patch_cost(a, b, nnf, patch_size=3).astype(np.float64)
    where = np.zeros((12, 14), bool)
    where[::2, 1::3] = True
    assert classic_pm.energy(a, b, nnf, patch_size=3, where=where) == pytest.approx(
        cost[where].mean() / 27, rel=1e-12)
    inner = where.copy()
    inner[[0, -1]] = False
    inner[:, [0, -1]] = False
    assert classic_pm.energy(a, b, nnf, patch_size=3, interior=True, where=where) == pytest.approx(
        cost[inner].mean() / 27, rel=1e-12)
    assert classic_pm.energy(a, b, nnf, patch_size=3, where=np.ones((12, 14), bool)) == \
        classic_pm.energy(a, b, nnf, patch_size=3)
    with pytest.raises(ValueError, match=r"where must be a bool array of shape \(12, 14\)"):
        classic_pm.energy(a, b, nnf, patch_size=3, where=where[:3])


@pytest.mark.parametrize("p", [3, 5])
def test_vote_matches_numpy_loop(p):
    rng = np.random.default_rng(3)
    b = rng.random((8, 9, 3), dtype=np.float32)
    nnf = np.stack([rng.integers(0, 8, (7, 6)), rng.integers(0, 9, (7, 6))], -1)
    got = vote(b, nnf, patch_size=p)
    assert got.dtype == np.float32 and got.shape == (7, 6, 3)
    np.testing.assert_allclose(got, _np_vote(b, nnf, p), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------- known answers

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("refine_radius", [8, 0])  # 0: one search candidate per radius (Barnes)
def test_energy_never_increases_and_nears_exact(natural_pair, threads, refine_radius):
    a, b = natural_pair
    energies = [_energy(a, b, patchmatch(a, b, iterations=0, seed=4, threads=threads))]
    nnf = patchmatch(a, b, iterations=5, seed=4, threads=threads, refine_radius=refine_radius,
                     callback=lambda i, f: energies.append(_energy(a, b, f)))
    assert len(energies) == 6
    assert all(e1 <= e0 for e0, e1 in zip(energies, energies[1:])), energies
    assert energies[-1] == _energy(a, b, nnf)
    limit = _energy(a, b, exact_nnf(a, b))
    assert limit > 0
    assert energies[-1] <= 1.15 * limit, (energies[-1], limit)


@pytest.mark.parametrize("threads", [1, 2])
def test_pure_translation_is_recovered(threads):
    img = _textured((90, 100, 3), seed=5)
    sy, sx = 7, -5
    a = img[10:70, 12:82]
    b = img[10 + sy:70 + sy, 12 + sx:82 + sx]
    nnf = patchmatch(a, b, seed=1, threads=threads)
    r = 3
    ys, xs = np.mgrid[0:60, 0:70]
    truth = np.stack([ys - sy, xs - sx], -1)
    inside = ((truth[..., 0] >= r) & (truth[..., 0] < 60 - r) & (truth[..., 1] >= r)
              & (truth[..., 1] < 70 - r) & (ys >= r) & (ys < 60 - r) & (xs >= r) & (xs < 70 - r))
    correct = (nnf == truth).all(-1)[inside].mean()
    assert correct >= 0.99, correct


def test_identical_pair_gives_zero_energy_and_exact_vote():
    a = data.astronaut()[200:260, 180:250]  # uint8, textured
    nnf = patchmatch(a, a, iterations=5, seed=0)
    assert classic_pm.energy(a, a, nnf) == 0.0
    np.testing.assert_allclose(vote(a, nnf), a.astype(np.float32) / 255, atol=1e-6)


def test_gray_and_uint8_inputs():
    a = data.camera()[100:140, 100:150]
    nnf = patchmatch(a, a, patch_size=5, iterations=3)
    assert nnf.shape == (40, 50, 2) and nnf.dtype == np.int32
    assert vote(a, nnf, patch_size=5).shape == (40, 50, 1)
    np.testing.assert_allclose(patch_cost(a, a / 255.0, nnf, patch_size=5),
                               patch_cost(a, a, nnf, patch_size=5))


def test_sizes_differ_and_nnf_stays_in_b():
    a = _textured((23, 31, 3), seed=6)
    b = _textured((17, 40, 3), seed=7)
    for threads in (1, 2):
        nnf = patchmatch(a, b, patch_size=5, threads=threads)
        assert nnf.shape == (23, 31, 2)
        assert nnf[..., 0].min() >= 0 and nnf[..., 0].max() < 17
        assert nnf[..., 1].min() >= 0 and nnf[..., 1].max() < 40


# ---------------------------------------------------------------- determinism, callback, threads

@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_same_nnf(threads):
    a = _textured((40, 50, 3), seed=8)
    b = _textured((45, 40, 3), seed=9)
    first = patchmatch(a, b, seed=3, threads=threads)
    np.testing.assert_array_equal(first, patchmatch(a, b, seed=3, threads=threads))


def test_different_seeds_give_different_inits_and_results():
    a = _textured((40, 50, 3), seed=8)
    b = _textured((45, 40, 3), seed=9)
    init0 = patchmatch(a, b, iterations=0, seed=0)
    init1 = patchmatch(a, b, iterations=0, seed=1)
    assert (init0 != init1).any(-1).mean() > 0.9
    assert (patchmatch(a, b, seed=0) != patchmatch(a, b, seed=1)).any()


def test_callback_gets_each_iteration_and_threads_are_restored():
    a = _textured((30, 30, 3), seed=10)
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # not what threads=2 sets (unless numba has one thread only)
    try:
        seen = []
        nnf = patchmatch(a, a, iterations=3, threads=2, callback=lambda i, f: seen.append((i, f)))
        assert [i for i, _ in seen] == [1, 2, 3]
        np.testing.assert_array_equal(seen[-1][1], nnf)
        assert seen[0][1] is not nnf
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_threads_1_is_a_serial_build_of_the_same_function():
    from classic_pm import _kernels

    for kernels in (_kernels.U8, _kernels.F32):  # one set per storage, same functions
        for serial, parallel in ((kernels.sweep_serial, kernels.sweep_parallel),
                                 (kernels.init_serial, kernels.init_parallel)):
            assert serial.targetoptions["parallel"] is False
            assert parallel.targetoptions["parallel"] is True
            assert serial.py_func.__code__ is parallel.py_func.__code__
    assert _kernels.U8.sweep_serial.py_func.__code__ is _kernels.F32.sweep_serial.py_func.__code__
    assert _kernels.U8._sweep_band.py_func.__globals__["_row"].py_func.__code__ is \
        _kernels._row_u8.__code__
    assert _kernels.F32._sweep_band.py_func.__globals__["_row"].py_func.__code__ is \
        _kernels._row_f32.__code__


def test_refine_radius_zero_is_a_different_search(natural_pair):
    a, b = natural_pair
    faithful = patchmatch(a, b, iterations=2, seed=4, refine_radius=0)
    refined = patchmatch(a, b, iterations=2, seed=4)
    assert not np.array_equal(faithful, refined)


# ----------------------------------------------------------------------------------- errors

_A = np.zeros((10, 12, 3), np.float32)


@pytest.mark.parametrize("call, message", [
    (lambda: patchmatch(np.zeros((10, 12, 3, 1)), _A), r"a must have shape \(H, W\) or \(H, W, C\)"),
    (lambda: patchmatch(_A, np.zeros(5)), r"b must have shape \(H, W\) or \(H, W, C\)"),
    (lambda: patchmatch(_A, _A[..., :2]), "a and b must have the same number of channels, got 3 and 2"),
    (lambda: patchmatch(_A, _A, patch_size=4), "patch_size must be a positive odd integer, got 4"),
    (lambda: patchmatch(_A, _A, refine_radius=-1), "refine_radius must be >= 0, got -1"),
    (lambda: patchmatch(_A, _A, patch_size=0), "patch_size must be a positive odd integer, got 0"),
    (lambda: patchmatch(_A, _A, patch_size=-3), "patch_size must be a positive odd integer"),
    (lambda: patchmatch(_A, _A, patch_size=3.0), "patch_size must be a positive odd integer"),
    (lambda: patchmatch(_A, _A[:5], patch_size=7), r"patch_size 7 is larger than image b \(5 x 12\)"),
    (lambda: patchmatch(_A[:, :6], _A, patch_size=7), r"patch_size 7 is larger than image a \(10 x 6\)"),
    (lambda: patchmatch(np.full((10, 12), np.nan), _A[..., 0]), "a contains non-finite values"),
    (lambda: patchmatch(_A, np.full((10, 12, 3), np.inf)), "b contains non-finite values"),
    (lambda: patchmatch(_A, _A, iterations=-1), "iterations must be >= 0, got -1"),
    (lambda: patchmatch(_A, _A, iterations=2.5), "iterations must be an integer"),
    (lambda: patchmatch(_A, _A, threads=0), "threads must be >= 1, got 0"),
    (lambda: patchmatch(_A, _A, threads="2"), "threads must be an integer"),
    (lambda: patchmatch(_A, _A, callback=3), "callback must be callable"),
    (lambda: patchmatch(_A.astype(np.int64), _A), "a must be float .* or uint8"),
    (lambda: patch_cost(_A, _A, np.zeros((10, 12, 3), np.int32)), r"nnf must have shape \(10, 12, 2\)"),
    (lambda: patch_cost(_A, _A[:8], np.full((10, 12, 2), 9)), "nnf holds centres outside b"),
    (lambda: vote(_A, np.full((4, 4, 2), -1)), "nnf holds centres outside b"),
    (lambda: vote(_A, np.zeros((4, 4))), r"nnf must have shape \(Ha, Wa, 2\)"),
    (lambda: vote(_A, np.zeros((4, 4, 2)), patch_size=2), "patch_size must be a positive odd integer"),
    (lambda: exact_nnf(_A, _A[..., :1]), "a and b must have the same number of channels"),
    (lambda: exact_nnf(_A, _A, patch_size=13), "patch_size 13 is larger than image a"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
