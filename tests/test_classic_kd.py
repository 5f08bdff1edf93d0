"""Tests of classic_pm.kd_nnf (PCA kd-tree NNF) and classic_pm.sampled_exact_energy."""

import numpy as np
import pytest
from skimage import data, transform

import classic_pm
from classic_pm import _kernels, core, kd, kd_nnf, sampled_exact_energy


def _u8(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _energy(a, b, nnf, p=7):
    return classic_pm.energy(a, b, nnf, patch_size=p)


@pytest.fixture(scope="module")
def natural_pair():
    """8-bit crop of astronaut (A) and the scene shifted by (5, -4) px and rotated by 3 degrees."""
    img = data.astronaut()[100:260, 150:310]
    tf = (transform.EuclideanTransform(translation=(-80, -80))
          + transform.EuclideanTransform(rotation=np.deg2rad(3))
          + transform.EuclideanTransform(translation=(76, 85)))
    warped = transform.warp(img, tf.inverse, order=1, mode="edge", preserve_range=True)
    warped = np.rint(warped).astype(np.uint8)
    return np.ascontiguousarray(img[40:104, 40:120]), np.ascontiguousarray(warped[36:100, 44:124])


# ----------------------------------------------------------------------- against brute force

@pytest.mark.parametrize("passes", [0, 2])
@pytest.mark.parametrize("p, shape_b", [(3, (6, 5, 3)), (5, (5, 6, 3)), (3, (4, 8, 1))])
def test_one_leaf_and_full_rerank_is_exhaustive(p, shape_b, passes):
    """B small enough for one leaf, every patch of B re-ranked: the exact NNF, exact costs."""
    a = _u8((9, 11, shape_b[2]), 1)
    b = _u8(shape_b, 2)
    nb = shape_b[0] * shape_b[1]
    got = kd_nnf(a, b, patch_size=p, leaf_size=32, rerank=nb, dims=4, passes=passes)
    ref = classic_pm.exact_nnf(a, b, patch_size=p, device="cpu")  # float64, exact here
    np.testing.assert_array_equal(classic_pm.patch_cost(a, b, got, patch_size=p),
                                  classic_pm.patch_cost(a, b, ref, patch_size=p))
    np.testing.assert_array_equal(got, ref)  # no tied minima in these random images


def test_float_input_one_leaf_is_exhaustive_too():
    """Float input that is not 8-bit (float32 storage): the same exhaustive result, costs equal
    to the exact NNF's up to float32 rounding."""
    rng = np.random.default_rng(7)
    a = rng.random((8, 9, 3), dtype=np.float32)
    b = rng.random((5, 6, 3), dtype=np.float32)
    assert not core._stored_pair(a, b, 3).exact
    got = kd_nnf(a, b, patch_size=3, leaf_size=30, rerank=30, dims=5, passes=0)
    ref = classic_pm.exact_nnf(a, b, patch_size=3, device="cpu")
    np.testing.assert_allclose(classic_pm.patch_cost(a, b, got, patch_size=3),
                               classic_pm.patch_cost(a, b, ref, patch_size=3), rtol=1e-5)


def test_identical_images_match_themselves_in_the_query_stage():
    """A == B with distinct patches: each patch's own projection leads to its own leaf, so the
    query stage alone (no polish) finds the zero-cost match, itself."""
    a = _u8((30, 36, 3), 3)
    stages = []
    nnf = kd_nnf(a, a, patch_size=5, leaf_size=8, passes=0,
                 callback=lambda s, f: stages.append(s))
    ys, xs = np.mgrid[0:30, 0:36]
    np.testing.assert_array_equal(nnf, np.stack([ys, xs], -1))
    assert stages == [1]


def test_near_exact_on_a_natural_pair(natural_pair):
    a, b = natural_pair
    energies = []
    nnf = kd_nnf(a, b, callback=lambda s, f: energies.append(_energy(a, b, f)))
    assert len(energies) == 3
    assert all(e1 <= e0 for e0, e1 in zip(energies, energies[1:])), energies  # polish never worsens
    assert energies[-1] == _energy(a, b, nnf)
    limit = _energy(a, b, classic_pm.exact_nnf(a, b, device="cpu"))
    pm = _energy(a, b, classic_pm.patchmatch(a, b, iterations=5))
    assert energies[-1] <= 1.05 * limit, (energies[-1], limit)
    assert energies[-1] < pm, (energies[-1], pm)


@pytest.mark.parametrize("n, leaf_size", [(1000, 10), (10_000, 12)])
def test_tree_invariants(n, leaf_size):
    """Leaves partition the points and hold at most leaf_size each, the leaf blocks hold the
    points' coordinates, and every internal node has <= split_val on its left, >= on its right
    (10 000 points: sampled top levels, then exact subtrees)."""
    rng = np.random.default_rng(4)
    points = rng.normal(size=(n, 5)).astype(np.float32)
    points[:, 3] = np.round(points[:, 3])  # many ties in one coordinate
    leaf_pts, leaf_idx, split_dim, split_val, depth, leaf_of = kd._kd_tree(points, leaf_size, True)
    assert (n > _kernels.SUBTREE) == (depth > int(np.ceil(np.log2(_kernels.SUBTREE / leaf_size))))
    valid = leaf_idx >= 0
    sizes = valid.sum(1)
    assert sizes.max() <= leaf_size and sizes.min() >= 1 and leaf_pts.shape[2] % 8 == 0
    assert (valid[:, :-1] | ~valid[:, 1:]).all()  # used slots first
    assert sorted(leaf_idx[valid]) == list(range(n))
    for leaf in range(2 ** depth):
        idx = leaf_idx[leaf, :sizes[leaf]]
        assert (leaf_of[idx] == leaf).all()
        np.testing.assert_array_equal(leaf_pts[leaf, :, :sizes[leaf]], points[idx].T)
        assert (leaf_pts[leaf, :, sizes[leaf]:] == _kernels.LEAF_PAD).all()
    for node in range(2 ** depth - 1):
        level = int(np.log2(node + 1))
        j = node - (2 ** level - 1)
        span = 2 ** (depth - level)  # leaves under the node
        left = leaf_idx[j * span:j * span + span // 2]
        right = leaf_idx[j * span + span // 2:(j + 1) * span]
        k, v = split_dim[node], split_val[node]
        assert (points[left[left >= 0], k] <= v).all() and (points[right[right >= 0], k] >= v).all()


@pytest.mark.parametrize("n", [1, 2, 7, 60])
def test_symmetric_eigh_matches_numpy(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(2 * n + 3, n)) * np.linspace(3, 0.2, n)
    a = x.T @ x
    values, vectors = _kernels.symmetric_eigh(a)
    ref = np.linalg.eigh(a)[0][::-1]
    np.testing.assert_allclose(values, ref, rtol=1e-10, atol=1e-12 * ref[0])
    assert (np.diff(values) <= 0).all()
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(a @ vectors, vectors * values, atol=1e-10 * ref[0])
    # repeated eigenvalues and a zero matrix
    d = np.diag([2.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(_kernels.symmetric_eigh(d)[0], [2.0, 2.0, 1.0, 0.0])
    assert (_kernels.symmetric_eigh(np.zeros((3, 3)))[0] == 0).all()


def test_pca_basis_is_orthonormal_and_ordered():
    a = data.astronaut()[100:130, 200:240]
    st = core._stored_pair(a, a, 5)
    basis, offset = kd._pca_basis(st, 10)
    assert basis.shape == (3, 10, 5, 8) and offset.shape == (10,)
    assert (basis[..., 5:] == 0).all()
    flat = basis[..., :5].transpose(1, 0, 2, 3).reshape(10, 75).astype(np.float64)  # (c, dy, dx)
    np.testing.assert_allclose(flat @ flat.T, np.eye(10), atol=1e-5)
    # components in decreasing order of variance over the patches PCA was fitted on (stride 4)
    pad = np.pad(a.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="edge")
    patches = np.array([[pad[y:y + 5, x:x + 5].transpose(2, 0, 1).ravel() for x in range(40)]
                        for y in range(30)])
    variances = (patches[::4, ::4].reshape(-1, 75) @ flat.T).var(axis=0)
    assert (np.diff(variances) <= 1e-6 * variances[0]).all() and variances[-1] > 0
    patches = patches.reshape(-1, 75)
    # the projection kernel equals a plain dot product with the flattened patch
    q = np.empty((30, 40, 10), np.float32)
    _kernels.project_serial(kd._planar(st.A2, st.a_shape, 5, 8), basis, offset, q)
    np.testing.assert_allclose(q.reshape(-1, 10), patches @ flat.T - offset, rtol=1e-5, atol=1e-2)


# --------------------------------------------------------------- determinism, stages, errors

@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_threads_same_nnf(natural_pair, threads):
    a, b = natural_pair
    first = kd_nnf(a, b, seed=3, threads=threads)
    np.testing.assert_array_equal(first, kd_nnf(a, b, seed=3, threads=threads))
    assert first.dtype == np.int32 and first.shape == a.shape[:2] + (2,)


def test_callback_stages(natural_pair):
    a, b = natural_pair
    seen = []
    nnf = kd_nnf(a, b, passes=3, threads=2, callback=lambda s, f: seen.append((s, f)))
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    np.testing.assert_array_equal(seen[-1][1], nnf)
    assert seen[-1][1] is not nnf


_A = np.zeros((10, 12, 3), np.float32)


@pytest.mark.parametrize("call, message", [
    (lambda: kd_nnf(_A, _A, patch_size=4), "patch_size must be a positive odd integer, got 4"),
    (lambda: kd_nnf(_A, _A[..., :2]), "a and b must have the same number of channels, got 3 and 2"),
    (lambda: kd_nnf(_A, _A, dims=0), "dims must be >= 1, got 0"),
    (lambda: kd_nnf(_A, _A, patch_size=3, dims=28),
     "dims must be <= patch_size \\* patch_size \\* channels = 27, got 28"),
    (lambda: kd_nnf(_A, _A, dims=2.0), "dims must be an integer"),
    (lambda: kd_nnf(_A, _A, leaf_size=0), "leaf_size must be >= 1, got 0"),
    (lambda: kd_nnf(_A, _A, rerank=0), "rerank must be >= 1, got 0"),
    (lambda: kd_nnf(_A, _A, passes=-1), "passes must be >= 0, got -1"),
    (lambda: kd_nnf(_A, _A, threads=0), "threads must be >= 1, got 0"),
    (lambda: kd_nnf(_A, _A, seed="1"), "seed must be an integer"),
    (lambda: kd_nnf(_A, _A, callback=3), "callback must be callable"),
    (lambda: kd_nnf(_A, _A[:5]), r"patch_size 7 is larger than image b \(5 x 12\)"),
    (lambda: sampled_exact_energy(_A, _A, np.zeros((10, 12, 2)), samples=1),
     "samples must be >= 2, got 1"),
    (lambda: sampled_exact_energy(_A, _A, np.zeros((10, 12, 2)), seed=-1), "seed must be >= 0, got -1"),
    (lambda: sampled_exact_energy(_A, _A, np.zeros((9, 12, 2))), r"nnf must have shape \(10, 12, 2\)"),
    (lambda: sampled_exact_energy(_A[:9, :9], _A, np.zeros((9, 9, 2)), patch_size=9),
     r"a has only 1 interior pixel\(s\) for patch_size 9, need at least 2"),
    (lambda: sampled_exact_energy(_A, _A, np.zeros((10, 12, 2)), patch_size=11),
     r"patch_size 11 is larger than image a \(10 x 12\)"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------- sampled exact energy

def test_sampled_exact_energy_covering_every_interior_pixel_is_the_exact_gap(natural_pair):
    a, b = natural_pair
    a, b = a[:30, :34], b[:28, :40]
    nnf = classic_pm.patchmatch(a, b, iterations=2, seed=1)
    exact = classic_pm.exact_nnf(a, b, device="cpu")
    res = sampled_exact_energy(a, b, nnf, samples=10_000)
    assert res.samples == 24 * 28  # every interior pixel
    ys, xs = np.mgrid[3:27, 3:31]
    np.testing.assert_array_equal(res.pixels, np.stack([ys.ravel(), xs.ravel()], 1))
    cost = classic_pm.core._patch_cost(core._stored_pair(a, b, 7), nnf)[3:27, 3:31].ravel()
    exact_cost = classic_pm.core._patch_cost(core._stored_pair(a, b, 7), exact)[3:27, 3:31].ravel()
    np.testing.assert_array_equal(res.cost, cost)
    np.testing.assert_array_equal(res.cost_exact, exact_cost)  # exact integers / 255^2
    e_nnf = classic_pm.energy(a, b, nnf, interior=True)
    e_exact = classic_pm.energy(a, b, exact, interior=True)
    assert res.energy == pytest.approx(e_nnf, rel=1e-12)
    assert res.energy_exact == pytest.approx(e_exact, rel=1e-12)
    assert res.gap == pytest.approx(e_nnf / e_exact - 1, rel=1e-10) and res.gap > 0
    # delta-method standard error of the ratio of paired means, by hand
    d = cost - (1 + res.gap) * exact_cost
    assert res.gap_se == pytest.approx(d.std(ddof=1) / np.sqrt(d.size) / exact_cost.mean(), rel=1e-10)
    assert res.gap_ci95 == pytest.approx((res.gap - 1.96 * res.gap_se, res.gap + 1.96 * res.gap_se))
    assert res.exact_fraction == pytest.approx(np.mean(cost == exact_cost))
    # the reported exact matches attain the minimum
    st = core._stored_pair(a, b, 7)
    full = np.zeros(a.shape[:2] + (2,), np.int32)
    full[res.pixels[:, 0], res.pixels[:, 1]] = res.matches_exact
    np.testing.assert_array_equal(core._patch_cost(st, full)[res.pixels[:, 0], res.pixels[:, 1]],
                                  exact_cost)


def test_sampled_exact_energy_of_the_exact_nnf_is_zero_gap(natural_pair):
    a, b = natural_pair
    exact = classic_pm.exact_nnf(a, b, device="cpu")
    res = sampled_exact_energy(a, b, exact, samples=50, seed=4, threads=2)
    assert res.samples == 50 and res.gap == 0.0 and res.gap_se == 0.0 and res.exact_fraction == 1.0
    np.testing.assert_array_equal(res.matches, exact[res.pixels[:, 0], res.pixels[:, 1]])


def test_sampled_exact_energy_float_input():
    rng = np.random.default_rng(9)
    a = rng.random((11, 12, 3), dtype=np.float32)
    b = rng.random((9, 10, 3), dtype=np.float32)
    nnf = classic_pm.patchmatch(a, b, patch_size=3, iterations=1)
    exact = classic_pm.exact_nnf(a, b, patch_size=3, device="cpu")
    res = sampled_exact_energy(a, b, nnf, patch_size=3, samples=1000)
    assert res.samples == 9 * 10
    cost = classic_pm.patch_cost(a, b, exact, patch_size=3)[1:10, 1:11].ravel()
    np.testing.assert_allclose(res.cost_exact, cost, rtol=1e-5)


def test_sampled_exact_energy_sample_is_seeded(natural_pair):
    a, b = natural_pair
    nnf = classic_pm.patchmatch(a, b, iterations=1)
    r1 = sampled_exact_energy(a, b, nnf, samples=40, seed=1)
    r2 = sampled_exact_energy(a, b, nnf, samples=40, seed=1, threads=2)
    r3 = sampled_exact_energy(a, b, nnf, samples=40, seed=2)
    np.testing.assert_array_equal(r1.pixels, r2.pixels)
    np.testing.assert_array_equal(r1.cost_exact, r2.cost_exact)
    assert not np.array_equal(r1.pixels, r3.pixels)
    r = 3
    assert (r1.pixels >= r).all() and (r1.pixels[:, 0] < a.shape[0] - r).all()
    assert (r1.pixels[:, 1] < a.shape[1] - r).all() and len(np.unique(r1.pixels, axis=0)) == 40
    assert (r1.cost_exact <= r1.cost).all() and r1.gap > 0
