"""Public classic PatchMatch API: input checks, conversions, and hand-off to the numba kernels.

Conventions (used by every function here)
-----------------------------------------
* Images are float32 ``(H, W, C)`` in [0, 1]; uint8 is accepted (read as k / 255), a gray
  ``(H, W)`` image is treated as one channel. A and B may differ in size, not in channels.
* NNF: int32 ``(Ha, Wa, 2)``; ``nnf[y, x] = (yb, xb)`` is the absolute centre, in B's pixels and
  (y, x) order, of the patch of B matched to the patch of A centred at (y, x).
* Every pixel of A and of B is a valid patch centre. **Border convention: edge replication.**
  Each image is padded once by ``r = patch_size // 2`` pixels with its border values repeated, and
  the patch centred at (y, x) is ``padded[y:y + p, x:x + p]``.
* Patch distance: the sum of squared differences over the p x p patch and all channels (SSD).
  The energy of an NNF is the mean SSD divided by ``p * p * C`` (see :func:`energy`). Costs and
  energies are always reported on the [0, 1] scale.
* **Exact distances for 8-bit data.** When both images are 8-bit (uint8, or float whose every
  value is exactly ``float32(k) / 255`` for an integer k, e.g. ``u8.astype(np.float32) / 255``;
  checked exactly, see ``_kernels.quantize_255``) and ``p * p * C * 255**2 < 2**24`` (7 x 7 and
  9 x 9 RGB, up to 15 x 15 gray), the kernels store them as uint8 and compute SSDs on the 0-255
  scale: integer sums below 2^24, exact in float32 in any summation order, so an NNF for a given
  seed and thread count is the same on every CPU. Costs are converted to the [0, 1] scale by one
  correctly rounded division by 255^2 in float64 (:func:`energy` averages these float64 values;
  :func:`patch_cost` rounds them once to float32). Any other
  float input is stored as float32 on [0, 1]; its sums are reassociated for speed (fastmath), so
  distances may differ in the last bits between CPUs, and rarely a match with them.
"""

import contextlib
import numbers

import numba
import numpy as np

from . import _kernels

__all__ = ["patchmatch", "vote", "patch_cost", "energy"]


# --------------------------------------------------------------------------- checks, conversions

def _check_image(x, name):
    """Validate an image; return it as C-contiguous (H, W, C), uint8 as is, float as float32."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be float (values in [0, 1]) or uint8, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return x


def _to_float(x):
    """float32 on [0, 1] from a checked image (uint8 divided by 255)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x


def _as_image(x, name):
    """Validate an image and return it as C-contiguous float32 (H, W, C) on [0, 1]."""
    return _to_float(_check_image(x, name))


def _quantized(x):
    """uint8 version of a checked image if it holds 8-bit data (uint8, or float32 values that
    are exactly float32(k) / 255), else None."""
    if x.dtype == np.uint8:
        return x
    out = np.empty(x.shape, np.uint8)
    return out if _kernels.quantize_255(x, out) else None


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_patch_size(patch_size):
    if (isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Integral)
            or patch_size <= 0 or patch_size % 2 == 0):
        raise ValueError(f"patch_size must be a positive odd integer, got {patch_size!r}")
    return int(patch_size)


def _check_pair(a, b, patch_size):
    """Validate (a, b, patch_size) together; return float32 (H, W, C) images on [0, 1] and p."""
    p, a, b = _check_pair_stored(a, b, patch_size)
    return _to_float(a), _to_float(b), p


def _check_pair_stored(a, b, patch_size):
    """Validate (a, b, patch_size) together; return p and the images as checked (uint8 kept)."""
    p = _check_patch_size(patch_size)
    a = _check_image(a, "a")
    b = _check_image(b, "b")
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"a and b must have the same number of channels, "
                         f"got {a.shape[2]} and {b.shape[2]}")
    for name, img in (("a", a), ("b", b)):
        if p > img.shape[0] or p > img.shape[1]:
            raise ValueError(f"patch_size {p} is larger than image {name} "
                             f"({img.shape[0]} x {img.shape[1]})")
    return p, a, b


# SSD sums on the 0-255 scale are exact in float32 while p * p * C * 255^2 < 2^24.
_EXACT_SUM_LIMIT = 2 ** 24


class _Stored:
    """Images of a checked pair in the kernels' layout (see :mod:`classic_pm._kernels`).

    Attributes: ``A2``, ``B2`` (padded rows, uint8 or float32), ``mask`` (float32 lanes),
    ``p``, ``C``, ``a_shape``, ``b_shape`` ((H, W, C) of A and B), ``scale`` (255.0 when the
    storage is uint8 on the 0-255 scale, 1.0 for float32 on [0, 1]), ``exact`` (scale == 255),
    ``kernels`` (the storage's kernel namespace, ``_kernels.U8`` or ``_kernels.F32``).
    """

    def __init__(self, a, b, p):
        self.p = p
        self.C = a.shape[2]
        self.a_shape = a.shape
        self.b_shape = b.shape
        qa = qb = None
        if p * p * self.C * 255 ** 2 < _EXACT_SUM_LIMIT:
            qa = _quantized(a)
            qb = _quantized(b) if qa is not None else None
        self.exact = qa is not None and qb is not None
        if self.exact:
            a, b, self.scale = qa, qb, 255.0
        else:
            a, b, self.scale = _to_float(a), _to_float(b), 1.0
        self.mask = _lane_mask(p, self.C, a.dtype)
        self.A2 = _padded_rows(a, p, self.mask.shape[0])
        self.B2 = _padded_rows(b, p, self.mask.shape[0])
        self.kernels = _kernels.for_storage(self.A2)

    def to_unit(self, cost):
        """Costs on the storage scale -> float64 on the [0, 1] scale (exact division)."""
        cost = np.asarray(cost, np.float64)
        return cost / (self.scale * self.scale) if self.scale != 1.0 else cost


def _stored_pair(a, b, patch_size):
    """Validate (a, b, patch_size) and lay the images out for the kernels (:class:`_Stored`)."""
    p, a, b = _check_pair_stored(a, b, patch_size)
    return _Stored(a, b, p)


def _check_nnf(nnf, a_shape, b_shape):
    """Validate an NNF against A's and B's sizes; return it as C-contiguous int32 (Ha, Wa, 2)."""
    nnf = np.asarray(nnf)
    expected = (a_shape[0], a_shape[1], 2)
    if nnf.shape != expected:
        raise ValueError(f"nnf must have shape {expected} (Ha, Wa, 2), got {nnf.shape}")
    if np.issubdtype(nnf.dtype, np.floating):
        if not np.isfinite(nnf).all():
            raise ValueError("nnf contains non-finite values (NaN or inf)")
        nnf = np.rint(nnf)
    elif not np.issubdtype(nnf.dtype, np.integer):
        raise ValueError(f"nnf must hold integer (or float) coordinates, got dtype {nnf.dtype}")
    ys, xs = nnf[..., 0], nnf[..., 1]
    if ys.size and (ys.min() < 0 or ys.max() >= b_shape[0] or xs.min() < 0 or xs.max() >= b_shape[1]):
        raise ValueError(f"nnf holds centres outside b: y must lie in [0, {b_shape[0] - 1}], "
                         f"x in [0, {b_shape[1] - 1}]")
    return np.ascontiguousarray(nnf, np.int32)


def _padded_rows(img, p, lanes=None):
    """Edge-pad ``img`` (H, W, C) by p // 2; rows flattened and followed by zeros.

    Returns an array of ``img``'s dtype, shape (H + p - 1, (W + p - 1) * C + lanes - p * C), the
    layout the kernels read (see :mod:`classic_pm._kernels`); the patch centred at (y, x) is
    ``out[y:y + p, x * C:(x + p) * C]``. ``lanes`` defaults to ``_lanes(p, C, img.dtype)``.
    """
    r = p // 2
    C = img.shape[2]
    lanes = _lanes(p, C, img.dtype) if lanes is None else lanes
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    padded = padded.reshape(padded.shape[0], -1)
    out = np.zeros((padded.shape[0], padded.shape[1] + lanes - p * C), img.dtype)
    out[:, :padded.shape[1]] = padded
    return out


def _lanes(p, C, dtype):
    """Lanes read per patch row (see ``_kernels._row_u8`` and ``_row_f32``): p * C rounded up
    to a multiple of 32, or for uint8 storage to 8 or 16 when p * C is that small."""
    n = p * C
    if dtype == np.uint8 and n <= 16:
        return 8 if n <= 8 else 16
    return (n + 31) // 32 * 32


def _lane_mask(p, C, dtype):
    """float32 (lanes,): 1 on the first p * C lanes, 0 after."""
    mask = np.zeros(_lanes(p, C, dtype), np.float32)
    mask[:p * C] = 1
    return mask


def _band_starts(height, threads):
    """Row ranges of the bands of the parallel sweep: ``threads`` bands of equal height.

    One band per thread: matches cross a band border only through the halo row (once per pass in
    the scan direction), so every extra border costs energy (motorcycle, 5 iterations, interior:
    2 bands 0.001558, 4 bands 0.001562, 8 bands 0.001565, 32 bands 0.001602; serial 0.001553),
    and the halves of the image cost the same within about 5%, so static scheduling balances.
    """
    n_bands = min(height, threads)
    return np.linspace(0, height, n_bands + 1).round().astype(np.int64)


@contextlib.contextmanager
def _num_threads(threads):
    """Run numba with at most ``threads`` threads, then restore the previous setting.

    For parallel runs only: ``numba.get_num_threads`` launches numba's threading layer, which
    serial runs never need.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


# --------------------------------------------------------------------------------- public API

def patchmatch(a, b, *, patch_size=7, iterations=5, seed=0, threads=1, callback=None,
               refine_radius=_kernels.RS_REFINE):
    """Classic PatchMatch (Barnes et al. 2009): approximate nearest-neighbour field from A to B.

    Random initialisation, then ``iterations`` passes of propagation and random search. Pass 1
    scans top-left to bottom-right, trying the left and upper neighbours' matches shifted by one
    pixel; pass 2 scans in reverse from the right and lower neighbours; and so on alternately.
    After propagation at each pixel, random search tries one candidate per radius
    w = max(Hb, Wb), w // 2, ..., 1 (two at radii 2 to ``refine_radius``), uniform in
    the window of radius w (intersected with B) centred on the best match found so far for that
    pixel: the match after propagation, moved to any better candidate that an earlier (larger)
    radius found. (Barnes et al. centre every window on the match before the search,
    v0 = f(x); recentring on the running best is a small difference from the paper.) The patch
    distance stops early once a patch row takes it past the current best. Propagated candidates
    are clamped into B. With 8-bit data (see the module docstring) every distance is an exact
    integer, so the NNF for a seed and thread count is the same on every CPU; the candidates at
    radii >= 11 are then evaluated as one batch per pixel, with the decisions of the one-by-one
    search (``_kernels._sweep_band``).

    Parameters
    ----------
    a : ndarray, shape (Ha, Wa, C) or (Ha, Wa)
        Image A, float in [0, 1] or uint8.
    b : ndarray, shape (Hb, Wb, C) or (Hb, Wb)
        Image B, same channels as A.
    patch_size : int, keyword-only
        Odd patch side p in pixels (default 7).
    iterations : int, keyword-only
        Number of passes (>= 0; 0 returns the random initialisation).
    seed : int, keyword-only
        Seed of the random streams; same seed and same threads give the same NNF.
    threads : int, keyword-only
        1: the serial scan of Barnes et al. > 1: A is cut into ``threads`` bands of rows, scanned
        in parallel; a band's border row takes the neighbour band's matches as they stood before
        the pass (deterministic), so matches cross band borders in later passes. The result
        depends on ``threads`` but never on scheduling; numba runs at most
        ``numba.config.NUMBA_NUM_THREADS`` threads (the previous setting is restored).
    callback : callable, keyword-only
        ``callback(iteration, nnf)`` after each pass, iteration 1-based; ``nnf`` is a copy.
    refine_radius : int, keyword-only
        Random search draws a second candidate at the radii 2 <= w <= refine_radius (default 8).
        ``refine_radius=0`` keeps Barnes et al.'s one candidate per radius; the default
        costs about 20-25% more time per iteration for 1.5-3% lower 5-iteration energy on
        motorcycle.

    Returns
    -------
    nnf : ndarray, int32, shape (Ha, Wa, 2)
        Absolute (y, x) centre in B of the match of every pixel of A.
    """
    st = _stored_pair(a, b, patch_size)
    iterations = _check_int(iterations, "iterations", 0)
    threads = _check_int(threads, "threads", 1)
    refine_radius = _check_int(refine_radius, "refine_radius", 0)
    seed_u64 = _check_seed(seed)
    _check_callback(callback)

    Ha, Wa = st.a_shape[:2]
    Hb, Wb = st.b_shape[:2]
    nnf = np.empty((Ha, Wa, 2), np.int32)
    cost = np.empty((Ha, Wa), np.float32)
    with _parallel_context(threads):
        init = st.kernels.init_serial if threads == 1 else st.kernels.init_parallel
        init(st.A2, st.B2, st.mask, nnf, cost, seed_u64, st.p, st.C, Hb, Wb)
        radii = _kernels.search_radii(max(Hb, Wb), refine_radius)
        _sweeps(st, nnf, cost, seed_u64, range(1, iterations + 1), threads, radii, callback)
    return nnf


def _check_seed(seed):
    """Validate an integer seed; return it as the uint64 the kernels hash."""
    seed = _check_int(seed, "seed", -(2 ** 63))
    return np.uint64(seed & 0xFFFFFFFFFFFFFFFF)


def _check_callback(callback):
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {callback!r}")


def _parallel_context(threads):
    """numba thread setting for a run: nothing for threads=1 (serial builds), else
    :func:`_num_threads`."""
    return contextlib.nullcontext() if threads == 1 else _num_threads(threads)


def _sweeps(st, nnf, cost, seed_u64, iterations, threads, radii, callback, stage_offset=0):
    """Run PatchMatch passes (``_kernels._sweep``) in place on ``nnf`` and ``cost``.

    ``iterations``: the pass numbers (their parity sets the scan direction, and they key the
    random streams); ``radii``: the random-search radii (``_kernels.search_radii``). After the
    k-th pass, ``callback(stage_offset + k, nnf.copy())``. Call inside :func:`_parallel_context`.
    """
    Ha = nnf.shape[0]
    bands = _band_starts(Ha, threads)
    halo = np.zeros((bands.shape[0] - 1, nnf.shape[1], 2), np.int32)
    sweep = st.kernels.sweep_serial if threads == 1 else st.kernels.sweep_parallel
    # Far candidates in batches with uint8 storage only: with float32 rows LLVM vectorised the
    # batch loop badly (about 1.5x slower per iteration, so float input draws them one by one).
    n_far = _kernels.count_far(radii) if st.exact else 0
    Hb, Wb = st.b_shape[:2]
    for k, it in enumerate(iterations, start=1):
        _kernels.fill_halo(nnf, bands, it % 2 == 1, halo)  # nothing to copy with one band
        sweep(st.A2, st.B2, st.mask, nnf, cost, halo, bands, seed_u64, it, st.p, st.C, Hb, Wb,
              radii, n_far)
        if callback is not None:
            callback(stage_offset + k, nnf.copy())


def patch_cost(a, b, nnf, *, patch_size=7):
    """SSD between each patch of A and its match in B (edge-replicated borders).

    Parameters
    ----------
    a : ndarray, shape (Ha, Wa, C) or (Ha, Wa)
    b : ndarray, shape (Hb, Wb, C) or (Hb, Wb)
    nnf : ndarray, int, shape (Ha, Wa, 2)
        Absolute (y, x) centres in B; float input is rounded to the nearest integer.
    patch_size : int, keyword-only

    Returns
    -------
    cost : ndarray, float32, shape (Ha, Wa)
        Sum over the p x p patch and the C channels of squared differences (images on [0, 1];
        for 8-bit data the exact integer SSD on the 0-255 scale divided by 255^2, rounded once).
    """
    st = _stored_pair(a, b, patch_size)
    return _patch_cost(st, nnf).astype(np.float32)


def _patch_cost(st, nnf):
    """SSDs of ``nnf`` (checked here) on the [0, 1] scale, float64 (Ha, Wa); ``st``: _Stored."""
    nnf = _check_nnf(nnf, st.a_shape, st.b_shape)
    out = np.empty(st.a_shape[:2], np.float32)
    st.kernels.patch_costs(st.A2, st.B2, st.mask, nnf, st.p, st.C, out)
    return st.to_unit(out)


def energy(a, b, nnf, *, patch_size=7, interior=False, where=None):
    """Mean squared difference per pixel and channel of an NNF: mean(patch_cost) / (p * p * C).

    The one energy formula of the suite (``experiments.metrics.energy`` and the benchmarks call
    this function).

    Parameters
    ----------
    interior : bool, keyword-only
        If True, average only over the pixels of A whose patch lies wholly inside A (their
        matches may still touch B's border, read with edge replication).
    where : ndarray of bool, shape (Ha, Wa), keyword-only, optional
        Average only over these pixels of A (combined with ``interior``); NaN if none is left.

    Returns
    -------
    float
    """
    st = _stored_pair(a, b, patch_size)
    p = st.p
    cost = _patch_cost(st, nnf)
    if where is not None:
        where = np.asarray(where)
        if where.dtype != np.bool_ or where.shape != cost.shape:
            raise ValueError(f"where must be a bool array of shape {cost.shape} (Ha, Wa), "
                             f"got {where.dtype} {where.shape}")
    if interior:
        r = p // 2
        inner = (slice(r, cost.shape[0] - r), slice(r, cost.shape[1] - r))
        cost = cost[inner]
        where = None if where is None else where[inner]
    if where is not None:
        cost = cost[where]
    return float(np.mean(cost) / (p * p * st.C))


def vote(b, nnf, *, patch_size=7):
    """Voting reconstruction of A from B's patches.

    Pixel (y, x) becomes the average, over the p x p patches centred at pixels q of A that cover
    it, of the pixel that q's match puts at (y, x): B at ``nnf[q] + (y, x) - q``, edge-replicated.

    Parameters
    ----------
    b : ndarray, shape (Hb, Wb, C) or (Hb, Wb)
    nnf : ndarray, int, shape (Ha, Wa, 2)
        Absolute (y, x) centres in B.
    patch_size : int, keyword-only

    Returns
    -------
    ndarray, float32, shape (Ha, Wa, C)
    """
    p = _check_patch_size(patch_size)
    b = _as_image(b, "b")
    if p > b.shape[0] or p > b.shape[1]:
        raise ValueError(f"patch_size {p} is larger than image b ({b.shape[0]} x {b.shape[1]})")
    nnf_arr = np.asarray(nnf)
    if nnf_arr.ndim != 3 or nnf_arr.shape[2] != 2:
        raise ValueError(f"nnf must have shape (Ha, Wa, 2), got {nnf_arr.shape}")
    nnf = _check_nnf(nnf_arr, nnf_arr.shape[:2], b.shape)
    out = np.empty((nnf.shape[0], nnf.shape[1], b.shape[2]), np.float32)
    _kernels.vote(_padded_rows(b, p), nnf, p, b.shape[2], out)
    return out
