"""Near-exact NNF from a kd-tree over PCA-reduced patches, polished by local PatchMatch.

Same conventions as :mod:`classic_pm.core` (images, NNF, edge-replicated borders, SSD, 8-bit
inputs compared exactly on the 0-255 scale). The method follows He and Sun, "Computing
nearest-neighbor fields via propagation-assisted kd-trees" (CVPR 2012), with PCA in place of
their Walsh-Hadamard projection; the exact SSD always decides between candidates.
"""

import numpy as np

from . import _kernels
from .core import (_band_starts, _check_callback, _check_int, _check_seed, _parallel_context,
                   _stored_pair, _sweeps)

__all__ = ["kd_nnf"]

# PCA is fitted on B's patches centred on a regular grid of stride >= PCA_STRIDE (both axes)
# holding at most PCA_SAMPLES patches.
PCA_STRIDE = 4
PCA_SAMPLES = 8192
# Radius of the polishing passes' random search (radii POLISH_RADIUS, POLISH_RADIUS // 2, ..., 1).
# Motorcycle, after the query (+10.6% over the exact energy), two passes: radius 1 +3.68% in
# 66 ms, radius 4 (radii 4, 2, 1) +3.42% in 121 ms; one pass at radius 4: +3.96% in 62 ms.
POLISH_RADIUS = 1


def kd_nnf(a, b, *, patch_size=7, dims=16, leaf_size=32, rerank=4, passes=2, seed=0, threads=1,
           callback=None):
    """Near-exact nearest-neighbour field: PCA kd-tree with propagation-assisted queries.

    Stages (``callback(stage, nnf)`` after each, ``stage`` 1-based like PatchMatch's iterations;
    ``nnf`` is a copy):

    0. *Setup* (no callback): PCA of B's patches (a regular grid sample of at most 8192
       patches; covariance and eigenvectors in numba), the ``dims`` leading components; every
       patch of A and of B projected onto them; a kd tree on B's projections, each node split at
       the median of its widest coordinate (the top levels on a sample, then each bucket exactly
       from all its points) to a common depth at which every leaf holds at most ``leaf_size``
       patches.
    1. *Query*: one scan of A in row order. The left neighbour's match shifted right by one
       pixel and the upper neighbour's shifted down by one are compared by exact SSD; the pixel
       descends to its own leaf (no backtracking), and that leaf and the leaves holding the two
       shifted matches are scanned: of their patches whose PCA distance (a lower bound of the
       SSD) is below the best SSD, the ``rerank`` nearest in PCA distance are compared by exact
       SSD, nearest first, while their bound stays below the best. The lowest SSD wins.
    2. .. ``passes + 1``. *Polish*: PatchMatch passes (alternating direction, backward first):
       propagation from the two neighbours, then one random candidate within radius 1 of the
       current match (:func:`patchmatch`'s sweep, radii ``POLISH_RADIUS`` down to 1).

    The exact SSD decides every match, and a patch is skipped only when its lower bound shows it
    cannot win, so on images where one leaf holds all of B (``Hb * Wb <= leaf_size``) and
    ``rerank >= Hb * Wb`` the query stage is an exhaustive search (up to float32 rounding of the
    bound, which ``_kernels.BOUND_SLACK`` covers).

    Parameters
    ----------
    a : ndarray, shape (Ha, Wa, C) or (Ha, Wa)
        Image A, float in [0, 1] or uint8.
    b : ndarray, shape (Hb, Wb, C) or (Hb, Wb)
        Image B, same channels as A.
    patch_size : int, keyword-only
        Odd patch side p in pixels (default 7).
    dims : int, keyword-only
        PCA dimensions, 1 <= dims <= p * p * C (default 16).
    leaf_size : int, keyword-only
        Most patches of B per leaf (default 32).
    rerank : int, keyword-only
        Candidates per pixel compared by exact SSD besides the two propagated ones (default 4).
    passes : int, keyword-only
        Polishing PatchMatch passes (default 2; 0: the query stage only).
    seed : int, keyword-only
        Seed of the polishing passes' random search.
    threads : int, keyword-only
        1: serial. > 1: the projections, the tree's exact subtrees, the query (A in
        ``threads`` bands of rows; a band's first row has no upper neighbour to propagate from)
        and the polishing passes run in parallel. The result depends on ``threads``, never on
        scheduling.
    callback : callable, keyword-only
        ``callback(stage, nnf)`` after the query (stage 1) and after each polishing pass.

    Returns
    -------
    nnf : ndarray, int32, shape (Ha, Wa, 2)
        Absolute (y, x) centre in B of the match of every pixel of A.

    Notes
    -----
    For a given machine the result is a function of the inputs, ``seed`` and ``threads``. Across
    machines the PCA and the projections (floating point, sums reassociated for speed) may differ
    in their last bits and so, rarely, propose other candidates; the distances that decide
    between candidates are exact for 8-bit inputs.
    """
    st = _stored_pair(a, b, patch_size)
    D_max = st.p * st.p * st.C
    dims = _check_int(dims, "dims", 1)
    if dims > D_max:
        raise ValueError(f"dims must be <= patch_size * patch_size * channels = {D_max}, got {dims}")
    leaf_size = _check_int(leaf_size, "leaf_size", 1)
    rerank = _check_int(rerank, "rerank", 1)
    passes = _check_int(passes, "passes", 0)
    threads = _check_int(threads, "threads", 1)
    seed_u64 = _check_seed(seed)
    _check_callback(callback)

    Ha, Wa = st.a_shape[:2]
    Hb, Wb = st.b_shape[:2]
    serial = threads == 1
    with _parallel_context(threads):
        basis, offset = _pca_basis(st, dims)
        project = _kernels.project_serial if serial else _kernels.project_parallel
        qa = np.empty((Ha, Wa, dims), np.float32)
        qb = np.empty((Hb, Wb, dims), np.float32)
        project(_planar(st.A2, st.a_shape, st.p, basis.shape[3]), basis, offset, qa)
        project(_planar(st.B2, st.b_shape, st.p, basis.shape[3]), basis, offset, qb)
        tree = _kd_tree(qb.reshape(Hb * Wb, dims), leaf_size, serial)

        nnf = np.empty((Ha, Wa, 2), np.int32)
        cost = np.empty((Ha, Wa), np.float32)
        query = st.kernels.kd_query_serial if serial else st.kernels.kd_query_parallel
        query(st.A2, st.B2, st.mask, st.p, st.C, Hb, Wb, qa, *tree, rerank, nnf, cost,
              _band_starts(Ha, threads))
        if callback is not None:
            callback(1, nnf.copy())
        radii = _kernels.search_radii(POLISH_RADIUS, 0)
        _sweeps(st, nnf, cost, seed_u64, range(2, passes + 2), threads, radii, callback,
                stage_offset=1)
    return nnf


def _pca_basis(st, dims):
    """Leading ``dims`` principal components of B's patches (a regular grid sample, see
    PCA_STRIDE and PCA_SAMPLES).

    Returns ``basis`` float32 (C, dims, p, taps) in the projection kernel's layout (component j,
    channel c, patch row dy, column dx; taps = p rounded up to a multiple of 8, zero past p) and
    ``offset`` float32 (dims,), the projection of the mean patch. Each component's sign is fixed
    (largest entry positive) so that the basis does not depend on the eigensolver's sign choice.
    The components are orthonormal, so PCA distances are lower bounds of SSDs (same scale).
    """
    p, C = st.p, st.C
    Hb, Wb = st.b_shape[:2]
    img = st.B2[:, :(Wb + p - 1) * C].reshape(Hb + p - 1, Wb + p - 1, C)
    windows = np.lib.stride_tricks.sliding_window_view(img, (p, p), axis=(0, 1))  # (Hb, Wb, C, p, p)
    stride = max(PCA_STRIDE, int(np.ceil(np.sqrt(Hb * Wb / PCA_SAMPLES))))
    sample = windows[::stride, ::stride]
    X = sample.reshape(-1, C * p * p).astype(np.float64)  # patch vectors in (c, dy, dx) order
    mean = X.mean(axis=0)
    XT = np.ascontiguousarray((X - mean).T)
    cov = np.empty((XT.shape[0], XT.shape[0]), np.float64)
    _kernels.gram_serial(XT, cov)  # a few ms: not worth a parallel region
    _, vectors = _kernels.symmetric_eigh(cov / max(1, XT.shape[1] - 1))  # descending
    vectors = vectors[:, :dims]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(dims)])
    vectors *= np.where(signs == 0, 1.0, signs)
    taps = -(-p // 8) * 8
    basis = np.zeros((C, dims, p, taps), np.float32)
    basis[..., :p] = vectors.T.reshape(dims, C, p, p).transpose(1, 0, 2, 3)
    offset = (mean @ vectors).astype(np.float32)
    return basis, offset


def _planar(rows, shape, p, taps):
    """Planar float32 (C, H + p - 1, W + p - 1 + taps) copy of padded image rows (kernel layout),
    zero in the extra columns (read by the projection's 8-tap blocks, weighted 0)."""
    H, W, C = shape
    img = rows[:, :(W + p - 1) * C].reshape(H + p - 1, W + p - 1, C)
    out = np.zeros((C, H + p - 1, W + p - 1 + taps), np.float32)
    out[:, :, :W + p - 1] = img.transpose(2, 0, 1)
    return out


def _kd_tree(points, leaf_size, serial):
    """kd tree on ``points`` (N, D) float32 (see ``_kernels``, kd-tree section).

    The top levels (while nodes would hold more than ``_kernels.SUBTREE`` points) split at
    medians of a regular sample of ``_kernels.TOP_SAMPLE`` points per node of the last sampled
    level; the points are then bucketed by descending those levels, and each bucket is split to
    the leaves at exact medians of all its points, to a common depth at which the largest
    bucket's leaves hold at most ``leaf_size`` points (so every leaf does).

    Returns the tree arguments of ``_kernels.kd_query_*`` in order: ``leaf_pts`` float32
    (n_leaves, D, cap), ``leaf_idx`` int64 (n_leaves, cap) with cap the largest leaf rounded up
    to a multiple of 32 (whole iterations of the scan's vector body; 8 for leaves of at most 16), ``split_dim`` int64 and ``split_val`` float32
    (2^depth - 1,), ``depth``, ``leaf_of`` int64 (N,): the leaf of every point.
    """
    n, D = points.shape
    points = np.ascontiguousarray(points, np.float32)
    top = 0
    while -(-n // (1 << top)) > _kernels.SUBTREE:
        top += 1
    n_top = 1 << top
    stride = max(1, n // (_kernels.TOP_SAMPLE * n_top))
    sample = np.ascontiguousarray(points[::stride])
    split_top_dim = np.zeros(max(1, n_top - 1), np.int64)
    split_top_val = np.zeros(max(1, n_top - 1), np.float32)
    level = _kernels.kd_level_serial  # levels of the sample: a few ms, not worth parallel regions
    perm = np.arange(sample.shape[0], dtype=np.int64)
    bounds = np.array([0, sample.shape[0]], np.int64)
    for d in range(top):
        level(sample, perm, bounds, d, split_top_dim, split_top_val)
        refined = np.empty(2 * bounds.shape[0] - 1, np.int64)
        refined[0::2] = bounds
        refined[1::2] = (bounds[:-1] + bounds[1:]) // 2
        bounds = refined
    node_of = np.empty(n, np.int64)
    (_kernels.assign_serial if serial else _kernels.assign_parallel)(
        points, split_top_dim, split_top_val, top, node_of)
    counts = np.bincount(node_of, minlength=n_top)
    starts = np.zeros(n_top + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    rows = np.empty_like(points)
    perm = np.empty(n, np.int64)
    _kernels.bucket(points, node_of, starts, rows, perm)
    order = np.arange(n, dtype=np.int64)

    sub_depth = 0
    while -(-int(counts.max()) // (1 << sub_depth)) > leaf_size:
        sub_depth += 1
    depth = top + sub_depth
    split_dim = np.zeros(max(1, (1 << depth) - 1), np.int64)
    split_val = np.zeros(max(1, (1 << depth) - 1), np.float32)
    split_dim[:n_top - 1] = split_top_dim[:n_top - 1]
    split_val[:n_top - 1] = split_top_val[:n_top - 1]
    leaf_start = np.empty((1 << depth) + 1, np.int64)
    (_kernels.subtrees_serial if serial else _kernels.subtrees_parallel)(
        rows, order, starts, top, sub_depth, split_dim, split_val, leaf_start)

    largest = int(np.diff(leaf_start).max())
    cap = -(-largest // 32) * 32 if largest > 16 else -(-largest // 8) * 8  # small leaves: less padding
    leaf_pts = np.empty((1 << depth, D, cap), np.float32)
    leaf_idx = np.empty((1 << depth, cap), np.int64)
    leaf_of = np.empty(n, np.int64)
    _kernels.fill_leaves(rows, perm, order, leaf_start, leaf_pts, leaf_idx, leaf_of)
    return leaf_pts, leaf_idx, split_dim, split_val, depth, leaf_of
