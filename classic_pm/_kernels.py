"""numba kernels of classic PatchMatch (private; use the wrappers in ``classic_pm``).

Every kernel is a plain function over preallocated arrays. Image arguments are the
*edge-padded* images reshaped to 2-D so that one patch row is contiguous:

    ``A2``: float32, shape (Ha + p - 1, (Wa + p - 1) * C + lanes - p * C), the image padded by
    p // 2 on every side with edge replication, each row followed by a few zeros; the patch
    centred at pixel (y, x) of A is ``A2[y:y + p, x * C:(x + p) * C]``. Same for ``B2``.
    ``mask``: float32 (lanes,), 1 on the first p * C lanes, 0 after; lanes = p * C rounded up
    to a multiple of 8 (see ``_dist``).

State is explicit: ``nnf`` int32 (Ha, Wa, 2) holding absolute (y, x) centres in B, ``cost`` float32
(Ha, Wa) holding the SSD of each pixel's patch to its current match.

Randomness: every image row draws from its own xorshift64* stream, seeded by hashing
(seed, iteration, row) with splitmix64 (iteration 0 is the random initialisation). The streams do
not depend on the thread count or on the scheduling, so results are reproducible under ``prange``.

The sweep and the initialisation exist in two builds of one undecorated function each (``_sweep``,
``_init``; see ``_build``): a serial one (threads=1: one band, the classic Barnes scan) and a
parallel one (``prange`` over bands of rows, or over rows for the initialisation). Both sweeps run
each band through the same compiled ``_sweep_band``, so the per-band work is identical.
"""

import types

import numpy as np
from numba import njit, prange

# Reassociation lets LLVM vectorise the SSD reduction; no 'nnan'/'ninf' flags, since ``inf`` is
# used as "no bound" for the early termination.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

# Random search draws a second candidate at the radii 2 <= w <= rs_refine (w = 5 and 2 for the
# usual image sizes). Barnes et al. draw one per radius (rs_refine < 2, ``refine_radius=0`` in the
# public API); the two extra near candidates cost about 20% more time per iteration and lower
# the 5-iteration energy on Middlebury motorcycle by about 1.5% (0.001584 -> 0.001563, mean of
# seeds 0-3; interior patches, threads=1). RS_REFINE is the public default.
RS_REFINE = 8

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_S12 = np.uint64(12)
_S25 = np.uint64(25)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_M32 = np.uint64(0xFFFFFFFF)
_XS_MUL = np.uint64(0x2545F4914F6CDD1D)
_SM_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_SM_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_SM_MUL2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _splitmix(z):
    """One splitmix64 step of the uint64 ``z`` (a bijective hash)."""
    z = z + _SM_GAMMA
    z = (z ^ (z >> _S30)) * _SM_MUL1
    z = (z ^ (z >> _S27)) * _SM_MUL2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _row_state(seed, iteration, row):
    """Nonzero xorshift64 state of the stream for (seed, iteration, row); all uint64."""
    s = _splitmix(_splitmix(_splitmix(seed) ^ iteration) ^ row)
    if s == _U0:
        s = _U1
    return s


@njit(cache=True, inline="always")
def _xorshift(s):
    """Next xorshift64 state (nonzero stays nonzero)."""
    s ^= s >> _S12
    s ^= s << _S25
    s ^= s >> _S27
    return s


@njit(cache=True, inline="always")
def _below(r32, n):
    """Map a 32-bit uniform uint64 ``r32`` to an int in [0, n) (Lemire's multiply-shift)."""
    return np.int64((r32 * np.uint64(n)) >> _S32)


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _dist(A2, B2, mask, ay, ax, by, bx, p, C, best):
    """SSD between A's patch at (ay, ax) and B's patch at (by, bx), float32.

    Each patch row is read as ``len(mask)`` lanes (p * C rounded up to a multiple of 8, so the
    loop vectorises without a scalar tail); ``mask`` is 1 on the first p * C lanes and 0 on the
    rest, which belong to the next pixels (or to the zero columns that end every padded row).
    Early termination: once the partial sum (checked after each patch row) reaches ``best``, that
    partial sum is returned (it is >= best, so the candidate is rejected by ``d < best``).
    """
    lanes = mask.shape[0]
    oa = ax * C
    ob = bx * C
    s = np.float32(0.0)
    for dy in range(p):
        ra = A2[ay + dy, oa:oa + lanes]
        rb = B2[by + dy, ob:ob + lanes]
        acc = np.float32(0.0)
        for k in range(lanes):
            d = ra[k] - rb[k]
            acc += mask[k] * d * d
        s += acc
        if s >= best:
            return s
    return s


@njit(cache=True, fastmath=_FASTMATH)
def patch_costs(A2, B2, mask, nnf, p, C, out):
    """Write into ``out`` (float32 (Ha, Wa)) the full SSD of every pixel's patch to ``nnf``'s match."""
    inf = np.float32(np.inf)
    for y in range(nnf.shape[0]):
        for x in range(nnf.shape[1]):
            out[y, x] = _dist(A2, B2, mask, y, x, nnf[y, x, 0], nnf[y, x, 1], p, C, inf)


def _init(A2, B2, mask, nnf, cost, seed, p, C, Hb, Wb):
    """Uniform random NNF (stream of iteration 0) and its costs; rows in parallel when built so."""
    Ha = nnf.shape[0]
    Wa = nnf.shape[1]
    inf = np.float32(np.inf)
    for y in prange(Ha):
        s = _row_state(seed, _U0, np.uint64(y))
        for x in range(Wa):
            s = _xorshift(s)
            r = s * _XS_MUL
            by = _below(r >> _S32, Hb)
            bx = _below(r & _M32, Wb)
            nnf[y, x, 0] = by
            nnf[y, x, 1] = bx
            cost[y, x] = _dist(A2, B2, mask, y, x, by, bx, p, C, inf)


@njit(cache=True, fastmath=_FASTMATH)
def _sweep_band(A2, B2, mask, nnf, cost, halo_row, y0, y1, seed, iteration, p, C, Hb, Wb,
                rs_refine):
    """One pass over the rows y0..y1-1 of A (one band); the serial core of ``_sweep``.

    ``halo_row`` (int32 (Wa, 2)) stands in for the row just outside the band that propagation
    reads (y0 - 1 in forward passes, y1 in backward ones). Other arguments as in ``_sweep``.
    """
    Wa = nnf.shape[1]
    forward = iteration % 2 == 1
    step = 1 if forward else -1
    it = np.uint64(iteration)
    rs_max = max(Hb, Wb)
    if forward:
        ystart, yend, xstart, xend = y0, y1, 0, Wa
    else:
        ystart, yend, xstart, xend = y1 - 1, y0 - 1, Wa - 1, -1
    for y in range(ystart, yend, step):
        s = _row_state(seed, it, np.uint64(y))
        ny_row = y - step  # the row propagation comes from
        has_vert = 0 <= ny_row < nnf.shape[0]
        from_halo = ny_row < y0 or ny_row >= y1
        for x in range(xstart, xend, step):
            by = nnf[y, x, 0]
            bx = nnf[y, x, 1]
            best = cost[y, x]
            # Propagation: the horizontal neighbour's match, shifted by one, clamped into B.
            nx = x - step
            hy = -1
            hx = -1
            if 0 <= nx < Wa:
                cy = nnf[y, nx, 0]
                cx = min(max(nnf[y, nx, 1] + step, 0), Wb - 1)
                hy = cy
                hx = cx
                if cy != by or cx != bx:
                    d = _dist(A2, B2, mask, y, x, cy, cx, p, C, best)
                    if d < best:
                        best = d
                        by = cy
                        bx = cx
            # Propagation: the vertical neighbour's match, shifted by one, clamped into B.
            if has_vert:
                if from_halo:
                    cy = halo_row[x, 0]
                    cx = halo_row[x, 1]
                else:
                    cy = nnf[ny_row, x, 0]
                    cx = nnf[ny_row, x, 1]
                cy = min(max(cy + step, 0), Hb - 1)
                if (cy != by or cx != bx) and (cy != hy or cx != hx):
                    d = _dist(A2, B2, mask, y, x, cy, cx, p, C, best)
                    if d < best:
                        best = d
                        by = cy
                        bx = cx
            # Random search: one candidate per radius w = rs_max, rs_max // 2, ..., 1 (two
            # for 2 <= w <= rs_refine), uniform in the window of radius w around the current
            # best match, intersected with B.
            w = rs_max
            again = True
            while w >= 1:
                ylo = max(by - w, 0)
                yhi = min(by + w, Hb - 1)
                xlo = max(bx - w, 0)
                xhi = min(bx + w, Wb - 1)
                s = _xorshift(s)
                r = s * _XS_MUL
                cy = ylo + _below(r >> _S32, yhi - ylo + 1)
                cx = xlo + _below(r & _M32, xhi - xlo + 1)
                if cy != by or cx != bx:
                    d = _dist(A2, B2, mask, y, x, cy, cx, p, C, best)
                    if d < best:
                        best = d
                        by = cy
                        bx = cx
                if again and 2 <= w <= rs_refine:
                    again = False
                else:
                    again = True
                    w //= 2
            nnf[y, x, 0] = by
            nnf[y, x, 1] = bx
            cost[y, x] = best


def _sweep(A2, B2, mask, nnf, cost, halo, band_starts, seed, iteration, p, C, Hb, Wb, rs_refine):
    """One PatchMatch iteration (propagation + random search at each pixel), in place.

    Parameters
    ----------
    A2, B2 : ndarray, float32, shape (H + p - 1, (W + p - 1) * C + lanes - p * C)
        Edge-padded images, rows contiguous (see module docstring).
    mask : ndarray, float32, shape (lanes,)
        Lane mask of ``_dist``.
    nnf : ndarray, int32, shape (Ha, Wa, 2)
        Current matches, absolute (y, x) centres in B; updated in place.
    cost : ndarray, float32, shape (Ha, Wa)
        SSD of each current match; updated in place.
    halo : ndarray, int32, shape (n_bands, Wa, 2)
        For each band, the NNF row just outside it on the side propagation comes from (the row
        above for forward scans, below for reverse scans), copied before the sweep. Bands read it
        instead of the live row so that no band reads another band's rows while they change.
    band_starts : ndarray, int64, shape (n_bands + 1,)
        Row ranges of the bands: band k covers rows band_starts[k] to band_starts[k + 1] - 1.
    seed : uint64
    iteration : int
        1-based; odd iterations scan forward (top-left to bottom-right, propagating from the
        left and upper neighbours), even iterations backward (from the right and lower ones).
    p, C, Hb, Wb : int
        Patch size, channels, size of B.
    rs_refine : int
        Random search draws two candidates at the radii 2 <= w <= rs_refine (< 2: one per radius,
        exactly Barnes et al.).
    """
    for band in prange(band_starts.shape[0] - 1):
        _sweep_band(A2, B2, mask, nnf, cost, halo[band], band_starts[band], band_starts[band + 1],
                    seed, iteration, p, C, Hb, Wb, rs_refine)


def _build(fn, parallel):
    """njit ``fn`` as a serial or a parallel build.

    The two builds get distinct qualified names so that numba's on-disk cache (keyed by
    qualname, not by compile flags) keeps them apart.
    """
    suffix = "_parallel" if parallel else "_serial"
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                               fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return njit(clone, parallel=parallel, cache=True, fastmath=_FASTMATH)


init_serial = _build(_init, parallel=False)
init_parallel = _build(_init, parallel=True)
sweep_serial = _build(_sweep, parallel=False)
sweep_parallel = _build(_sweep, parallel=True)


@njit(cache=True)
def fill_halo(nnf, band_starts, forward, halo):
    """Copy, for each band, the NNF row that propagation reads from outside the band."""
    Ha = nnf.shape[0]
    for band in range(band_starts.shape[0] - 1):
        y = band_starts[band] - 1 if forward else band_starts[band + 1]
        if 0 <= y < Ha:
            halo[band] = nnf[y]


@njit(cache=True)
def vote(B2, nnf, p, C, out):
    """Voting reconstruction into ``out`` (float32 (Ha, Wa, C)).

    Pixel (y, x) of A averages, over the patches centred at A pixels q = (y + dy, x + dx) inside A
    (|dy|, |dx| <= p // 2), the pixel of B that q's match puts at (y, x): B at match(q) - (dy, dx),
    edge-replicated, i.e. ``B2[my - dy + r, (mx - dx + r) * C + c]``. The zero columns that end
    B2's rows (see module docstring) are never read.
    """
    Ha = nnf.shape[0]
    Wa = nnf.shape[1]
    r = p // 2
    acc = np.zeros(C, np.float64)
    for y in range(Ha):
        for x in range(Wa):
            acc[:] = 0.0
            n = 0
            for dy in range(-r, r + 1):
                qy = y + dy
                if qy < 0 or qy >= Ha:
                    continue
                for dx in range(-r, r + 1):
                    qx = x + dx
                    if qx < 0 or qx >= Wa:
                        continue
                    row = nnf[qy, qx, 0] - dy + r
                    col = (nnf[qy, qx, 1] - dx + r) * C
                    for c in range(C):
                        acc[c] += B2[row, col + c]
                    n += 1
            for c in range(C):
                out[y, x, c] = acc[c] / n
