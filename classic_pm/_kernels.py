"""numba kernels of classic PatchMatch and of the kd-tree NNF (private; use ``classic_pm``).

Every kernel is a plain function over preallocated arrays.

Image layout
------------
Image arguments are the *edge-padded* images reshaped to 2-D so that one patch row is contiguous:

    ``A2``: shape (Ha + p - 1, (Wa + p - 1) * C + lanes - p * C), the image padded by p // 2 on
    every side with edge replication, each row followed by ``lanes - p * C`` zeros; the patch
    centred at pixel (y, x) of A is ``A2[y:y + p, x * C:(x + p) * C]``. Same for ``B2``.
    ``mask``: float32 (lanes,), 1 on the first p * C lanes, 0 after (see ``_row``).

Two storages share this layout and every kernel (numba compiles one specialisation each):

* **uint8, the 0-255 scale** (8-bit input, and float input that is exactly k / 255). A patch
  row is read as uint8, converted to float32 and summed in float32: every squared difference
  is an integer <= 255^2 and every partial sum an integer below 2^24 (the wrappers use this
  storage only while p * p * C * 255^2 < 2^24), so each sum is exact in float32 *in any order*.
  Reassociation (fastmath), the vector width of the CPU, batching: none can change a distance,
  so the NNF for a seed and thread count is the same on every CPU.
* **float32, the [0, 1] scale** (any other float input). Sums are reassociated for speed, so
  the last bits of a distance, and rarely a match, may differ between CPUs.

``lanes`` is p * C rounded up to 8, 16, or a multiple of 32: each lane block is a loop with a
compile-time trip count (8, 16 or 32), which LLVM turns into straight vector code with no scalar
remainder (a runtime trip count of 24 ran every 7 x 7 RGB row through the scalar remainder of a
32-lane vector body).

State is explicit: ``nnf`` int32 (Ha, Wa, 2) holding absolute (y, x) centres in B, ``cost``
float32 (Ha, Wa) holding the SSD of each pixel's patch to its current match (storage scale).

Randomness: every image row draws from its own xorshift64* stream, seeded by hashing
(seed, iteration, row) with splitmix64 (iteration 0 is the random initialisation). The streams do
not depend on the thread count or on the scheduling, so results are reproducible under ``prange``.

Serial and parallel kernels are two builds of one undecorated function each (``_build``). The
sweeps run each band of rows through the same compiled ``_sweep_band``.
"""

import types

import numpy as np
from numba import njit, prange

# Reassociation lets LLVM vectorise the SSD reduction; no 'nnan'/'ninf' flags, since ``inf`` is
# used as "no bound" for the early termination.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

# Random search draws a second candidate at the radii 2 <= w <= rs_refine (w = 5 and 2 for the
# usual image sizes). Barnes et al. draw one per radius (rs_refine < 2, ``refine_radius=0`` in the
# public API). RS_REFINE is the public default.
RS_REFINE = 8

# Random-search candidates at radii >= FAR_RADIUS are evaluated as one batch per pixel (see
# ``_sweep_band``): all drawn around the match after propagation, the first FAR_ROWS patch rows
# of each computed without a branch, then only the candidates still below the best continued.
FAR_RADIUS = 11
FAR_ROWS = 1

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


# ------------------------------------------------------------------------------ random numbers

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


@njit(cache=True, inline="always")
def _candidate(r, by, bx, w, Hb, Wb):
    """Random-search candidate from the 64 random bits ``r``: uniform in the window of radius
    ``w`` around (by, bx), intersected with B; y from the high 32 bits, x from the low ones."""
    ylo = max(by - w, 0)
    yhi = min(by + w, Hb - 1)
    xlo = max(bx - w, 0)
    xhi = min(bx + w, Wb - 1)
    return ylo + _below(r >> _S32, yhi - ylo + 1), xlo + _below(r & _M32, xhi - xlo + 1)


# ------------------------------------------------------------------------------ patch distance

@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _lane_block(A2, B2, mask, ya, ia, yb, ib, k0, n):
    """sum over k < n of mask[k0 + k] * (A2[ya, ia + k] - B2[yb, ib + k])^2, float32.

    ``n`` is a literal 8, 16 or 32 at every call site, so the loop has a compile-time trip
    count; the column indices are uint64 so that numba emits no negative-index wraparound.
    """
    acc = np.float32(0.0)
    uk0 = np.uint64(k0)
    for k in range(n):
        uk = np.uint64(k)
        d = np.float32(A2[ya, ia + uk]) - np.float32(B2[yb, ib + uk])
        acc += mask[uk0 + uk] * d * d
    return acc


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _row(A2, B2, mask, ya, oa, yb, ob):
    """SSD of one patch row: A2's row ``ya`` from column ``oa`` against B2's row ``yb`` from
    column ``ob``, over ``len(mask)`` lanes weighted by ``mask`` (the lanes past p * C belong to
    the next pixels or to the zero columns that end every padded row). float32."""
    lanes = mask.shape[0]
    ia = np.uint64(oa)
    ib = np.uint64(ob)
    if lanes == 8:
        return _lane_block(A2, B2, mask, ya, ia, yb, ib, 0, 8)
    if lanes == 16:
        return _lane_block(A2, B2, mask, ya, ia, yb, ib, 0, 16)
    acc = np.float32(0.0)
    for k0 in range(0, lanes, 32):
        uk0 = np.uint64(k0)
        acc += _lane_block(A2, B2, mask, ya, ia + uk0, yb, ib + uk0, k0, 32)
    return acc


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _dist_from(A2, B2, mask, ay, ax, by, bx, p, C, s, r0, best):
    """SSD between A's patch at (ay, ax) and B's patch at (by, bx), given the sum ``s`` of its
    rows 0 .. r0 - 1; float32.

    Early termination: once the partial sum (checked after each patch row) reaches ``best``,
    that partial sum is returned (it is >= best, so the candidate is rejected by ``d < best``).
    Squared differences are >= 0, so a partial sum never exceeds the full one.
    """
    oa = ax * C
    ob = bx * C
    for dy in range(r0, p):
        s += _row(A2, B2, mask, ay + dy, oa, by + dy, ob)
        if s >= best:
            return s
    return s


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _dist(A2, B2, mask, ay, ax, by, bx, p, C, best):
    """SSD between A's patch at (ay, ax) and B's patch at (by, bx), with early termination
    against ``best`` (see ``_dist_from``); float32, storage scale."""
    return _dist_from(A2, B2, mask, ay, ax, by, bx, p, C, np.float32(0.0), 0, best)


@njit(cache=True, fastmath=_FASTMATH)
def patch_costs(A2, B2, mask, nnf, p, C, out):
    """Write into ``out`` (float32 (Ha, Wa)) the full SSD of every pixel's patch to ``nnf``'s
    match (storage scale)."""
    inf = np.float32(np.inf)
    for y in range(nnf.shape[0]):
        for x in range(nnf.shape[1]):
            out[y, x] = _dist(A2, B2, mask, y, x, nnf[y, x, 0], nnf[y, x, 1], p, C, inf)


@njit(cache=True, fastmath=_FASTMATH)
def costs_at(A2, B2, mask, ys, xs, my, mx, p, C, out):
    """``out[i]`` = full SSD between A's patch at (ys[i], xs[i]) and B's at (my[i], mx[i])."""
    inf = np.float32(np.inf)
    for i in range(ys.shape[0]):
        out[i] = _dist(A2, B2, mask, ys[i], xs[i], my[i], mx[i], p, C, inf)


@njit(cache=True)
def quantize_255(x, out):
    """Write ``rint(x * 255)`` as uint8 into ``out`` if every value of the float32 ``x`` is
    exactly ``float32(k) / float32(255)`` for an integer k in [0, 255]; return whether it was.

    Exact test (no tolerance): the value must be the correctly rounded quotient k / 255, which is
    what ``u8.astype(np.float32) / 255`` gives (and, for all 256 k, also ``np.float32(k / 255.0)``).
    Stops at the first value that is not, so arbitrary float images cost almost nothing.
    """
    xf = x.ravel()
    of = out.ravel()
    for i in range(xf.shape[0]):
        v = xf[i]
        k = np.rint(v * np.float32(255.0))
        if not (k >= 0.0 and k <= 255.0):
            return False
        if np.float32(k) / np.float32(255.0) != v:
            return False
        of[i] = np.uint8(k)
    return True


# ---------------------------------------------------------------------------- PatchMatch sweep

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
                radii, n_far):
    """One pass over the rows y0..y1-1 of A (one band); the serial core of ``_sweep``.

    ``halo_row`` (int32 (Wa, 2)) stands in for the row just outside the band that propagation
    reads (y0 - 1 in forward passes, y1 in backward ones). Other arguments as in ``_sweep``.

    Random search evaluates the candidates in the order of ``radii`` with the semantics of a
    plain loop (draw around the running best, accept if the SSD is lower), but the first
    ``n_far`` (the far radii) as one batch: their random numbers are drawn first, all candidates
    placed around the match after propagation, and the first FAR_ROWS rows of every one summed
    without a branch (independent loads that the CPU overlaps); then, in order, a candidate whose
    partial sum already reaches the running best is rejected, the others are finished with early
    termination. After an acceptance the remaining far candidates are placed again, from the same
    random numbers, around the new best and evaluated one by one. Accept/reject decisions (and so
    the NNF) are those of the plain loop; with uint8 storage the sums are exact, so the NNF is
    bit-identical to it.
    """
    Wa = nnf.shape[1]
    forward = iteration % 2 == 1
    step = 1 if forward else -1
    it = np.uint64(iteration)
    n_r = radii.shape[0]
    far_r = np.empty(max(n_far, 1), np.uint64)
    far_y = np.empty(max(n_far, 1), np.int64)
    far_x = np.empty(max(n_far, 1), np.int64)
    far_s = np.empty(max(n_far, 1), np.float32)
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
            # Random search, far radii: one batch (see the docstring).
            if n_far > 0:
                oa = x * C
                for k in range(n_far):
                    s = _xorshift(s)
                    r = s * _XS_MUL
                    cy, cx = _candidate(r, by, bx, radii[k], Hb, Wb)
                    far_r[k] = r
                    far_y[k] = cy
                    far_x[k] = cx
                    acc = np.float32(0.0)
                    for dy in range(FAR_ROWS):
                        acc += _row(A2, B2, mask, y + dy, oa, cy + dy, cx * C)
                    far_s[k] = acc
                moved = False
                for k in range(n_far):
                    if moved:
                        cy, cx = _candidate(far_r[k], by, bx, radii[k], Hb, Wb)
                        if cy != by or cx != bx:
                            d = _dist(A2, B2, mask, y, x, cy, cx, p, C, best)
                            if d < best:
                                best = d
                                by = cy
                                bx = cx
                    else:
                        cy = far_y[k]
                        cx = far_x[k]
                        if (cy != by or cx != bx) and far_s[k] < best:
                            d = _dist_from(A2, B2, mask, y, x, cy, cx, p, C, far_s[k], FAR_ROWS,
                                           best)
                            if d < best:
                                best = d
                                by = cy
                                bx = cx
                                moved = True
            # Random search, near radii: one candidate at a time around the running best.
            for k in range(n_far, n_r):
                s = _xorshift(s)
                r = s * _XS_MUL
                cy, cx = _candidate(r, by, bx, radii[k], Hb, Wb)
                if cy != by or cx != bx:
                    d = _dist(A2, B2, mask, y, x, cy, cx, p, C, best)
                    if d < best:
                        best = d
                        by = cy
                        bx = cx
            nnf[y, x, 0] = by
            nnf[y, x, 1] = bx
            cost[y, x] = best


def _sweep(A2, B2, mask, nnf, cost, halo, band_starts, seed, iteration, p, C, Hb, Wb, radii,
           n_far):
    """One PatchMatch iteration (propagation + random search at each pixel), in place.

    Parameters
    ----------
    A2, B2 : ndarray, uint8 or float32, shape (H + p - 1, (W + p - 1) * C + lanes - p * C)
        Edge-padded images, rows contiguous (see module docstring).
    mask : ndarray, float32, shape (lanes,)
        Lane mask of ``_row``.
    nnf : ndarray, int32, shape (Ha, Wa, 2)
        Current matches, absolute (y, x) centres in B; updated in place.
    cost : ndarray, float32, shape (Ha, Wa)
        SSD of each current match (storage scale); updated in place.
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
    radii : ndarray, int64, shape (n,)
        The random-search radii in the order drawn, one entry per candidate (``search_radii``).
    n_far : int
        How many leading entries of ``radii`` are evaluated as one batch (``count_far``).
    """
    for band in prange(band_starts.shape[0] - 1):
        _sweep_band(A2, B2, mask, nnf, cost, halo[band], band_starts[band], band_starts[band + 1],
                    seed, iteration, p, C, Hb, Wb, radii, n_far)


def search_radii(rs_max, rs_refine):
    """Random-search radii, one entry per candidate: rs_max, rs_max // 2, ..., 1, with a second
    entry for each radius 2 <= w <= rs_refine. int64 array."""
    out = []
    w = rs_max
    while w >= 1:
        out.append(w)
        if 2 <= w <= rs_refine:
            out.append(w)
        w //= 2
    return np.array(out, np.int64)


def count_far(radii, far_radius=FAR_RADIUS):
    """Number of leading entries of ``radii`` that are >= far_radius (the batched candidates)."""
    n = 0
    while n < radii.shape[0] and radii[n] >= far_radius:
        n += 1
    return n


def _build(fn, parallel, fastmath=_FASTMATH, callees=None):
    """njit ``fn`` as a serial or a parallel build.

    The builds get distinct qualified names so that numba's on-disk cache (keyed by qualname,
    not by compile flags) keeps them apart. ``fastmath`` other than the default (tests only,
    see ``strict_builds``) is never cached; ``callees`` maps global names that ``fn`` calls to
    other builds.
    """
    suffix = "_parallel" if parallel else "_serial"
    cache = fastmath is _FASTMATH and callees is None
    if not cache:
        suffix += "_strict"
    env = fn.__globals__ if callees is None else {**fn.__globals__, **callees}
    clone = types.FunctionType(fn.__code__, env, fn.__name__ + suffix, fn.__defaults__,
                               fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return njit(clone, parallel=parallel, cache=cache, fastmath=fastmath)


def strict_builds():
    """Serial builds of the PatchMatch kernels with no fastmath flag anywhere (no
    reassociation: every SSD summed in program order), as a dict with the keys ``init_serial``,
    ``sweep_serial``, ``patch_costs`` (drop-in replacements) and ``_sweep_band`` (what the sweep
    calls). For tests: with uint8 storage they must give bit for bit what the default builds
    give."""
    band = _build(_sweep_band.py_func, parallel=False, fastmath=False)
    return {
        "init_serial": _build(_init, parallel=False, fastmath=False),
        "sweep_serial": _build(_sweep, parallel=False, fastmath=False,
                               callees={"_sweep_band": band}),
        "patch_costs": _build(patch_costs.py_func, parallel=False, fastmath=False),
        "_sweep_band": band,
    }


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
    """Voting reconstruction into ``out`` (float32 (Ha, Wa, C)); ``B2`` is float32 on [0, 1].

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


# ------------------------------------------------------------------ sampled exact energy

def _exact_at(A2, B2, mask, ys, xs, p, C, Hb, Wb, cost, my, mx):
    """Exhaustive search for the pixels (ys[i], xs[i]) of A, in place (samples in parallel when
    built so).

    On entry ``cost[i]`` (float32, storage scale) bounds the search: it is the SSD of the match
    (my[i], mx[i]) given by the caller. Every centre of B is tried in row-major order with early
    termination against the running best and accepted when strictly lower, so on exit ``cost[i]``
    is the exact minimum SSD over B and (my[i], mx[i]) a centre that attains it (the caller's
    match when nothing is strictly better, else the first strictly better minimum in row-major
    order).
    """
    for i in prange(ys.shape[0]):
        ay = ys[i]
        ax = xs[i]
        best = cost[i]
        by = my[i]
        bx = mx[i]
        for yb in range(Hb):
            for xb in range(Wb):
                d = _dist(A2, B2, mask, ay, ax, yb, xb, p, C, best)
                if d < best:
                    best = d
                    by = yb
                    bx = xb
        cost[i] = best
        my[i] = by
        mx[i] = bx


exact_at_serial = _build(_exact_at, parallel=False)
exact_at_parallel = _build(_exact_at, parallel=True)


# --------------------------------------------------------------------------- kd-tree NNF
#
# Projected patches: float32 (H, W, D) with D a multiple of 16 (``KD_BLOCK``); the PCA basis is
# padded with zero columns, so the padded coordinates are 0 for every patch and add nothing to
# a distance. Each 16-wide block is a loop with a compile-time trip count (vector code).
#
# Tree: an implicit balanced binary tree over B's projected patches, ``depth`` levels of
# internal nodes in heap order (node n has children 2n + 1 and 2n + 2); the node at position j
# of level d covers ``bounds[j]:bounds[j + 1]`` of the permuted points, split at its middle, so
# all leaves lie at depth ``depth`` and hold floor or ceil of Nb / 2^depth points. ``pts`` (Nb, D)
# holds the points in leaf order, ``perm`` (Nb,) their row-major index in B, ``leaf_start``
# (2^depth + 1,) the leaf boundaries, ``split_dim`` / ``split_val`` (2^depth - 1,) the internal
# nodes: a query goes right when ``q[split_dim] >= split_val``.

KD_BLOCK = 16
PROJECT_BLOCK = 64
# The widest coordinate of a tree node is measured on at most this many of its points.
SPREAD_SAMPLE = 1024


def _project(P2, basis, offset, p, C, out):
    """PCA coordinates of every patch: ``out[y, x] = patch(y, x) . basis - offset``, float32.

    ``P2``: padded image rows (module docstring layout, uint8 or float32), ``basis``: float32
    (p, p * C, D), the components laid out like a patch (row, lane); ``offset``: float32 (D,),
    the projection of the mean patch; ``out``: float32 (H, W, D). Rows in parallel when built so.
    Loop order: for each basis row (dy, k), a block of PROJECT_BLOCK pixels of the row, so that
    consecutive updates of the accumulator go to different pixels (no chain of dependent
    loads and stores through one accumulator).
    """
    H = out.shape[0]
    W = out.shape[1]
    D = out.shape[2]
    pc = p * C
    for y in prange(H):
        acc = np.empty((PROJECT_BLOCK, D), np.float32)
        for x0 in range(0, W, PROJECT_BLOCK):
            nx = min(PROJECT_BLOCK, W - x0)
            for i in range(nx):
                for j in range(D):
                    acc[i, j] = -offset[j]
            for dy in range(p):
                for k in range(pc):
                    for i in range(nx):
                        v = np.float32(P2[y + dy, (x0 + i) * C + k])
                        for j0 in range(0, D, KD_BLOCK):
                            for j in range(KD_BLOCK):
                                acc[i, j0 + j] += v * basis[dy, k, j0 + j]
            for i in range(nx):
                for j in range(D):
                    out[y, x0 + i, j] = acc[i, j]


project_serial = _build(_project, parallel=False)
project_parallel = _build(_project, parallel=True)


@njit(cache=True, inline="always")
def _swap_rows(pts, perm, i, j):
    for k in range(pts.shape[1]):
        t = pts[i, k]
        pts[i, k] = pts[j, k]
        pts[j, k] = t
    t2 = perm[i]
    perm[i] = perm[j]
    perm[j] = t2


@njit(cache=True)
def _select(pts, perm, lo, hi, kth, dim):
    """Reorder rows lo..hi-1 of ``pts`` (and ``perm`` alike) so that row ``kth`` holds the value
    of column ``dim`` it would hold if sorted, rows before it <= and rows after it >= that value
    (quickselect with a three-way partition around a median-of-three pivot)."""
    while hi - lo > 1:
        a = pts[lo, dim]
        b = pts[(lo + hi) // 2, dim]
        c = pts[hi - 1, dim]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
            if a > b:
                b = a
        pivot = b
        lt = lo
        i = lo
        gt = hi - 1
        while i <= gt:
            v = pts[i, dim]
            if v < pivot:
                if i != lt:
                    _swap_rows(pts, perm, lt, i)
                lt += 1
                i += 1
            elif v > pivot:
                _swap_rows(pts, perm, i, gt)
                gt -= 1
            else:
                i += 1
        # rows lo..lt-1 < pivot, lt..gt == pivot, gt+1..hi-1 > pivot
        if kth < lt:
            hi = lt
        elif kth > gt:
            lo = gt + 1
        else:
            return


def _kd_level(pts, perm, bounds, level, split_dim, split_val):
    """Split every node of one tree level at its middle along its widest coordinate (nodes in
    parallel when built so). ``bounds`` (2^level + 1,): the nodes' point ranges."""
    first = (1 << level) - 1
    D = pts.shape[1]
    for j in prange(bounds.shape[0] - 1):
        lo = bounds[j]
        hi = bounds[j + 1]
        # Widest coordinate, from at most SPREAD_SAMPLE points of the node (evenly strided).
        stride = max(1, (hi - lo) // SPREAD_SAMPLE)
        mn = pts[lo].copy()
        mx = pts[lo].copy()
        for i in range(lo + stride, hi, stride):
            for k in range(D):
                v = pts[i, k]
                mn[k] = min(mn[k], v)
                mx[k] = max(mx[k], v)
        best_dim = 0
        for k in range(1, D):
            if mx[k] - mn[k] > mx[best_dim] - mn[best_dim]:
                best_dim = k
        mid = (lo + hi) // 2
        _select(pts, perm, lo, hi, mid, best_dim)
        split_dim[first + j] = best_dim
        split_val[first + j] = pts[mid, best_dim]


kd_level_serial = _build(_kd_level, parallel=False)
kd_level_parallel = _build(_kd_level, parallel=True)


@njit(cache=True)
def leaf_of_points(perm, leaf_start, out):
    """``out[perm[i]]`` = the leaf holding point i (the inverse map: B index -> leaf)."""
    for leaf in range(leaf_start.shape[0] - 1):
        for i in range(leaf_start[leaf], leaf_start[leaf + 1]):
            out[perm[i]] = leaf


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _proj_dist(q, pts, i):
    """Squared Euclidean distance between the query ``q`` (D,) and point ``pts[i]``, float32."""
    acc = np.float32(0.0)
    for j0 in range(0, q.shape[0], KD_BLOCK):
        for j in range(KD_BLOCK):
            d = q[j0 + j] - pts[i, j0 + j]
            acc += d * d
    return acc


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _scan_leaf(q, pts, perm, leaf_start, leaf, top_d, top_i):
    """Offer every point of ``leaf`` to the sorted shortlist (top_d ascending, top_i their B
    indices), keeping the len(top_d) nearest in PCA distance."""
    k = top_d.shape[0]
    for i in range(leaf_start[leaf], leaf_start[leaf + 1]):
        d = _proj_dist(q, pts, i)
        if d < top_d[k - 1]:
            m = k - 1
            while m > 0 and top_d[m - 1] > d:
                top_d[m] = top_d[m - 1]
                top_i[m] = top_i[m - 1]
                m -= 1
            top_d[m] = d
            top_i[m] = perm[i]


@njit(cache=True, fastmath=_FASTMATH)
def _kd_query_band(A2, B2, mask, p, C, Hb, Wb, qa, pts, perm, leaf_start, split_dim, split_val,
                   depth, leaf_of, rerank, nnf, cost, y0, y1):
    """Propagation-assisted kd-tree query of the rows y0..y1-1 of A (one band), scan order.

    At each pixel: descend the tree to the pixel's own leaf (no backtracking); take the leaves
    that hold the left neighbour's match shifted right by one pixel and the upper neighbour's
    match shifted down by one (He and Sun 2012; the upper neighbour only inside the band);
    keep the ``rerank`` points of those (distinct) leaves nearest in PCA distance; then the exact
    SSD decides between them and the two shifted neighbour matches themselves. Writes ``nnf``
    and ``cost`` (storage scale).
    """
    Wa = nnf.shape[1]
    inf = np.float32(np.inf)
    top_d = np.empty(rerank, np.float32)
    top_i = np.empty(rerank, np.int64)
    first_leaf = (1 << depth) - 1
    for y in range(y0, y1):
        for x in range(Wa):
            q = qa[y, x]
            node = 0
            for _ in range(depth):
                node = 2 * node + 1 + (1 if q[split_dim[node]] >= split_val[node] else 0)
            own = node - first_leaf
            for m in range(rerank):
                top_d[m] = inf
                top_i[m] = -1
            _scan_leaf(q, pts, perm, leaf_start, own, top_d, top_i)
            best = inf
            by = -1
            bx = -1
            lleaf = -1
            ly = -1
            lx = -1
            if x > 0:
                ly = nnf[y, x - 1, 0]
                lx = min(nnf[y, x - 1, 1] + 1, Wb - 1)
                lleaf = leaf_of[ly * Wb + lx]
                if lleaf != own:
                    _scan_leaf(q, pts, perm, leaf_start, lleaf, top_d, top_i)
                best = _dist(A2, B2, mask, y, x, ly, lx, p, C, best)
                by = ly
                bx = lx
            if y > y0:
                uy = min(nnf[y - 1, x, 0] + 1, Hb - 1)
                ux = nnf[y - 1, x, 1]
                uleaf = leaf_of[uy * Wb + ux]
                if uleaf != own and uleaf != lleaf:
                    _scan_leaf(q, pts, perm, leaf_start, uleaf, top_d, top_i)
                if uy != ly or ux != lx:
                    d = _dist(A2, B2, mask, y, x, uy, ux, p, C, best)
                    if d < best:
                        best = d
                        by = uy
                        bx = ux
            for m in range(rerank):
                i = top_i[m]
                if i < 0:
                    break
                cy = i // Wb
                cx = i - cy * Wb
                if cy != by or cx != bx:
                    d = _dist(A2, B2, mask, y, x, cy, cx, p, C, best)
                    if d < best:
                        best = d
                        by = cy
                        bx = cx
            nnf[y, x, 0] = by
            nnf[y, x, 1] = bx
            cost[y, x] = best


def _kd_query(A2, B2, mask, p, C, Hb, Wb, qa, pts, perm, leaf_start, split_dim, split_val, depth,
              leaf_of, rerank, nnf, cost, band_starts):
    """``_kd_query_band`` over every band of rows (bands in parallel when built so)."""
    for band in prange(band_starts.shape[0] - 1):
        _kd_query_band(A2, B2, mask, p, C, Hb, Wb, qa, pts, perm, leaf_start, split_dim, split_val,
                       depth, leaf_of, rerank, nnf, cost, band_starts[band], band_starts[band + 1])


kd_query_serial = _build(_kd_query, parallel=False)
kd_query_parallel = _build(_kd_query, parallel=True)
