"""numba kernels of classic PatchMatch and of the kd-tree NNF (private; use ``classic_pm``).

Every kernel is a plain function over preallocated arrays.

Image layout
------------
Image arguments are the *edge-padded* images reshaped to 2-D so that one patch row is contiguous:

    ``A2``: shape (Ha + p - 1, (Wa + p - 1) * C + lanes - p * C), the image padded by p // 2 on
    every side with edge replication, each row followed by ``lanes - p * C`` zeros; the patch
    centred at pixel (y, x) of A is ``A2[y:y + p, x * C:(x + p) * C]``. Same for ``B2``.
    ``mask``: float32 (lanes,), 1 on the first p * C lanes, 0 after (see ``_row_u8``).

Two storages share this layout; each has its own compiled set of the kernels that compare
patches (``U8``, ``F32``; see "storage variants" at the end), built from the same functions:

* **uint8, the 0-255 scale** (8-bit input, and float input that is exactly k / 255). A patch
  row is read as uint8, converted to float32 and summed in float32: every squared difference
  is an integer <= 255^2 and every partial sum an integer below 2^24 (the wrappers use this
  storage only while p * p * C * 255^2 < 2^24), so each sum is exact in float32 *in any order*.
  Reassociation (fastmath), the vector width of the CPU, batching: none can change a distance,
  so the NNF for a seed and thread count is the same on every CPU.
* **float32, the [0, 1] scale** (any other float input). Sums are reassociated for speed, so
  the last bits of a distance, and rarely a match, may differ between CPUs.

``lanes`` is p * C rounded up to a multiple of 32 (uint8 storage: 8 or 16 when p * C is that
small), see ``_row_u8`` and ``_row_f32``: LLVM's vector body for a row loop handles 32 lanes per
iteration (4 x 8 float32), so rows of 24 lanes (7 x 3 rounded up to 8, the previous layout) ran
entirely in the scalar remainder loop.

State is explicit: ``nnf`` int32 (Ha, Wa, 2) holding absolute (y, x) centres in B, ``cost``
float32 (Ha, Wa) holding the SSD of each pixel's patch to its current match (storage scale).

Randomness: every image row draws from its own xorshift64* stream, seeded by hashing
(seed, iteration, row) with splitmix64 (iteration 0 is the random initialisation). The streams do
not depend on the thread count or on the scheduling, so results are reproducible under ``prange``.

Serial and parallel kernels are two builds of one undecorated function each (``_build``, and
the ``*_serial`` / ``*_parallel`` members of ``U8`` and ``F32``). The sweeps run each band of
rows through the same compiled ``_sweep_band``.
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

    Called with a literal ``n`` (8, 16 or 32); column indices are uint64 so that numba emits no
    negative-index wraparound.
    """
    acc = np.float32(0.0)
    uk0 = np.uint64(k0)
    for k in range(n):
        uk = np.uint64(k)
        d = np.float32(A2[ya, ia + uk]) - np.float32(B2[yb, ib + uk])
        acc += mask[uk0 + uk] * d * d
    return acc


def _row_u8(A2, B2, mask, ya, oa, yb, ob):
    """SSD of one patch row, uint8 storage: A2's row ``ya`` from column ``oa`` against B2's row
    ``yb`` from column ``ob``, over ``len(mask)`` lanes weighted by ``mask`` (the lanes past
    p * C belong to the next pixels or to the zero columns that end every padded row). float32.
    One block of 8 or 16 lanes for p * C <= 16, else blocks of 32 (``_lane_block``), widened
    to float32 in registers. Measured, not derived: on 7 x 7 RGB, where the small-block
    branches are never taken, the same 32-lane loop without them ran 1.55x slower per
    PatchMatch iteration (LLVM compiled it differently); keep the structure unless the
    benchmark says otherwise."""
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


def _row_f32(A2, B2, mask, ya, oa, yb, ob):
    """SSD of one patch row, float32 storage (arguments as ``_row_u8``). One loop with a runtime
    trip count (a multiple of 32, whole iterations of LLVM's 32-lane vector body); the uint8
    loop's literal 32-lane blocks, with float32 rows, measured 2.9x slower per iteration (numba
    leaves LLVM's SLP vectoriser off, so a fully unrolled loop stays scalar)."""
    ia = np.uint64(oa)
    ib = np.uint64(ob)
    acc = np.float32(0.0)
    for k in range(mask.shape[0]):
        uk = np.uint64(k)
        d = A2[ya, ia + uk] - B2[yb, ib + uk]
        acc += mask[uk] * d * d
    return acc


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


def _dist(A2, B2, mask, ay, ax, by, bx, p, C, best):
    """SSD between A's patch at (ay, ax) and B's patch at (by, bx), with early termination
    against ``best`` (see ``_dist_from``); float32, storage scale."""
    return _dist_from(A2, B2, mask, ay, ax, by, bx, p, C, np.float32(0.0), 0, best)


def _patch_costs(A2, B2, mask, nnf, p, C, out):
    """Write into ``out`` (float32 (Ha, Wa)) the full SSD of every pixel's patch to ``nnf``'s
    match (storage scale)."""
    inf = np.float32(np.inf)
    for y in range(nnf.shape[0]):
        for x in range(nnf.shape[1]):
            out[y, x] = _dist(A2, B2, mask, y, x, nnf[y, x, 0], nnf[y, x, 1], p, C, inf)


def _costs_at(A2, B2, mask, ys, xs, my, mx, p, C, out):
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


def _clone(fn, name, env):
    """``fn`` as a new function named ``name`` (qualified name too: numba's on-disk cache is
    keyed by it, not by compile flags) that resolves its globals in ``env``."""
    clone = types.FunctionType(fn.__code__, env, name, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = name
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def _build(fn, parallel):
    """njit ``fn`` as a serial or a parallel build (functions that do not read images)."""
    suffix = "_parallel" if parallel else "_serial"
    return njit(_clone(fn, fn.__name__ + suffix, fn.__globals__), parallel=parallel, cache=True,
                fastmath=_FASTMATH)


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




# --------------------------------------------------------------------------- kd-tree NNF
#
# numba leaves LLVM's SLP vectoriser off, so only loops are vectorised: every hot loop below runs
# over pixels or points with a runtime trip count (never over the D coordinates of one point).
#
# Projection: planar float32 images ``F`` (C, H + p - 1, W + p - 1 + taps), edge-padded like the
# rows layout, followed by zero columns; ``basis`` (C, D, p, taps) with taps = p rounded up to a
# multiple of 8 (zero past p). Projected patches: float32 (H, W, D).
#
# Tree: an implicit binary tree over B's projected patches, ``depth`` levels of internal nodes
# in heap order (node n has children 2n + 1 and 2n + 2; a query goes right when
# ``q[split_dim[n]] >= split_val[n]``), all leaves at depth ``depth``. Every node splits at the
# median of its widest coordinate: the top ``top`` levels (nodes of more than SUBTREE points)
# on a regular sample of the points (``kd_level``), then every node of level ``top`` is built
# to the leaves from all its points, exactly, inside the cache (``kd_subtrees``). Leaves are
# stored coordinate-major for the scan: ``leaf_pts`` (n_leaves, D, cap) float32 and
# ``leaf_idx`` (n_leaves, cap) int64 (row-major B index, -1 in unused slots, whose coordinates
# are LEAF_PAD so that they never rank).

LEAF_PAD = np.float32(1e15)
# The widest coordinate of a tree node is measured on at most this many of its points.
SPREAD_SAMPLE = 64
# Nodes of at most this many points are built to the leaves from all their points, in cache.
SUBTREE = 2048
# Sample points per node of level ``top`` for the sampled top levels.
TOP_SAMPLE = 256
# Samples per cache-resident chunk of the PCA's covariance (``_gram``).
GRAM_CHUNK = 512
# A shortlisted candidate is compared by exact SSD only while its PCA distance, a lower bound of
# its SSD (orthonormal projection), is below BOUND_SLACK * best; the slack covers float32
# rounding of the projections.
BOUND_SLACK = np.float32(1.001)


def _gram(XT, out):
    """``out = XT @ XT.T`` for XT float64 (D, n): out float64 (D, D). Samples in chunks of
    GRAM_CHUNK (cache-resident); the reduction over a chunk is a vectorised loop. Keeps the
    PCA's covariance off BLAS, whose own threads would compete with numba's."""
    D = XT.shape[0]
    n = XT.shape[1]
    out[:, :] = 0.0
    for c0 in range(0, n, GRAM_CHUNK):
        c1 = min(n, c0 + GRAM_CHUNK)
        for a in prange(D):
            xa = XT[a, c0:c1]
            for b in range(a, D):
                xb = XT[b, c0:c1]
                s = 0.0
                for i in range(c1 - c0):
                    s += xa[i] * xb[i]
                out[a, b] += s
    for a in range(D):
        for b in range(a):
            out[a, b] = out[b, a]


gram_serial = _build(_gram, parallel=False)


@njit(cache=True)
def symmetric_eigh(a):
    """Eigenvalues (descending) and eigenvectors (columns) of the symmetric float64 matrix ``a``.

    Householder tridiagonalisation, then the implicit QL algorithm with Wilkinson-style shifts
    (EISPACK tred2 / tql2, as in Numerical Recipes' tred2 and tqli), single-threaded: LAPACK
    through OpenBLAS may wake threads that, with numba's threads or another process on the
    cores, turn a 2 ms decomposition into hundreds of ms. Eigenvector signs are arbitrary.
    """
    n = a.shape[0]
    z = a.copy()
    d = np.zeros(n)
    e = np.zeros(n)
    # -- tred2: z becomes the orthogonal Q, d the diagonal, e the sub-diagonal
    for i in range(n - 1, 0, -1):
        l = i - 1
        h = 0.0
        if l > 0:
            scale = 0.0
            for k in range(l + 1):
                scale += abs(z[i, k])
            if scale == 0.0:
                e[i] = z[i, l]
            else:
                for k in range(l + 1):
                    z[i, k] /= scale
                    h += z[i, k] * z[i, k]
                f = z[i, l]
                g = -np.sqrt(h) if f >= 0.0 else np.sqrt(h)
                e[i] = scale * g
                h -= f * g
                z[i, l] = f - g
                f = 0.0
                for j in range(l + 1):
                    z[j, i] = z[i, j] / h
                    g = 0.0
                    for k in range(j + 1):
                        g += z[j, k] * z[i, k]
                    for k in range(j + 1, l + 1):
                        g += z[k, j] * z[i, k]
                    e[j] = g / h
                    f += e[j] * z[i, j]
                hh = f / (h + h)
                for j in range(l + 1):
                    f = z[i, j]
                    g = e[j] - hh * f
                    e[j] = g
                    for k in range(j + 1):
                        z[j, k] -= f * e[k] + g * z[i, k]
        else:
            e[i] = z[i, l]
        d[i] = h
    d[0] = 0.0
    e[0] = 0.0
    for i in range(n):
        if d[i] != 0.0:
            for j in range(i):
                g = 0.0
                for k in range(i):
                    g += z[i, k] * z[k, j]
                for k in range(i):
                    z[k, j] -= g * z[k, i]
        d[i] = z[i, i]
        z[i, i] = 1.0
        for j in range(i):
            z[j, i] = 0.0
            z[i, j] = 0.0
    # -- tqli on the tridiagonal (d, e); rotations applied to the rows of zt = z.T
    zt = np.ascontiguousarray(z.T)
    for i in range(1, n):
        e[i - 1] = e[i]
    e[n - 1] = 0.0
    eps = np.finfo(np.float64).eps
    for l in range(n):
        iterations = 0
        while True:
            m = l
            while m < n - 1:
                dd = abs(d[m]) + abs(d[m + 1])
                if abs(e[m]) <= eps * dd:
                    break
                m += 1
            if m == l:
                break
            iterations += 1
            if iterations > 100:
                raise ValueError("symmetric_eigh: no convergence")
            g = (d[l + 1] - d[l]) / (2.0 * e[l])
            r = np.hypot(g, 1.0)
            g = d[m] - d[l] + e[l] / (g + (r if g >= 0.0 else -r))
            s = 1.0
            c = 1.0
            p = 0.0
            i = m - 1
            underflow = False
            while i >= l:
                f = s * e[i]
                b = c * e[i]
                r = np.hypot(f, g)
                e[i + 1] = r
                if r == 0.0:
                    d[i + 1] -= p
                    e[m] = 0.0
                    underflow = True
                    break
                s = f / r
                c = g / r
                g = d[i + 1] - p
                r = (d[i] - g) * s + 2.0 * c * b
                p = s * r
                d[i + 1] = g + p
                g = c * r - b
                for k in range(n):
                    f = zt[i + 1, k]
                    zt[i + 1, k] = s * zt[i, k] + c * f
                    zt[i, k] = c * zt[i, k] - s * f
                i -= 1
            if underflow:
                continue
            d[l] -= p
            e[l] = g
            e[m] = 0.0
    order = np.argsort(-d)
    values = np.empty(n)
    vectors = np.empty((n, n))
    for j in range(n):
        values[j] = d[order[j]]
        for k in range(n):
            vectors[k, j] = zt[order[j], k]
    return values, vectors


def _project(F, basis, offset, out):
    """PCA coordinates of every patch: ``out[y, x, j] = patch(y, x) . component j - offset[j]``.

    ``F``, ``basis``: planar layouts above; ``offset`` float32 (D,): the projection of the mean
    patch. For each output row, each component is accumulated over (c, dy) as 8-tap filters
    along the row (a vectorised loop over x). Rows in parallel when built so.
    """
    H = out.shape[0]
    W = out.shape[1]
    D = out.shape[2]
    C = F.shape[0]
    p = basis.shape[2]
    taps = basis.shape[3]
    for y in prange(H):
        buf = np.empty((D, W), np.float32)
        for j in range(D):
            o = buf[j]
            for x in range(W):
                o[x] = -offset[j]
            for c in range(C):
                for dy in range(p):
                    src = F[c, y + dy]
                    bt = basis[c, j, dy]
                    for d0 in range(0, taps, 8):
                        b0 = bt[d0]
                        b1 = bt[d0 + 1]
                        b2 = bt[d0 + 2]
                        b3 = bt[d0 + 3]
                        b4 = bt[d0 + 4]
                        b5 = bt[d0 + 5]
                        b6 = bt[d0 + 6]
                        b7 = bt[d0 + 7]
                        s = src[d0:]
                        for x in range(W):
                            o[x] += (b0 * s[x] + b1 * s[x + 1] + b2 * s[x + 2] + b3 * s[x + 3]
                                     + b4 * s[x + 4] + b5 * s[x + 5] + b6 * s[x + 6]
                                     + b7 * s[x + 7])
        for x in range(W):
            for j in range(D):
                out[y, x, j] = buf[j, x]


project_serial = _build(_project, parallel=False)
project_parallel = _build(_project, parallel=True)


@njit(cache=True)
def _select(keys, idx, kth):
    """Reorder ``keys`` (and ``idx`` alike) so that ``keys[kth]`` holds the value it would hold
    if sorted, values before it <= and after it >= (quickselect around median-of-three pivots).

    Each partition is a branch-free Lomuto pass (always swap, advance the boundary by the
    comparison): first values < pivot to the front, then, only if ``kth`` is not among them,
    values == pivot next (so every round makes progress, whatever the ties)."""
    lo = 0
    hi = keys.shape[0]
    while hi - lo > 1:
        a = keys[lo]
        b = keys[(lo + hi) // 2]
        c = keys[hi - 1]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
            if a > b:
                b = a
        pivot = b
        store = lo
        for i in range(lo, hi):
            v = keys[i]
            keys[i] = keys[store]
            keys[store] = v
            t = idx[i]
            idx[i] = idx[store]
            idx[store] = t
            store += 1 if v < pivot else 0
        if kth < store:
            hi = store
            continue
        equal = store
        for i in range(store, hi):
            v = keys[i]
            keys[i] = keys[equal]
            keys[equal] = v
            t = idx[i]
            idx[i] = idx[equal]
            idx[equal] = t
            equal += 1 if v <= pivot else 0
        if kth < equal:
            return
        lo = equal


def _kd_level(points, perm, bounds, level, split_dim, split_val):
    """Split every node of one tree level at its middle along its widest coordinate (only a
    serial build is made: these are the sampled top levels, a few ms). ``points`` (N, D)
    float32 stay in place; ``perm`` orders them:
    node j of the level covers ``perm[bounds[j]:bounds[j + 1]]`` (``bounds``: 2^level + 1
    entries) and is reordered so that its lower half (values <= ``split_val`` in coordinate
    ``split_dim``) comes first."""
    first = (1 << level) - 1
    D = points.shape[1]
    for j in prange(bounds.shape[0] - 1):
        lo = bounds[j]
        hi = bounds[j + 1]
        # Widest coordinate, from at most SPREAD_SAMPLE points of the node (evenly strided).
        stride = max(1, (hi - lo) // SPREAD_SAMPLE)
        best_dim = 0
        best_spread = np.float32(-1.0)
        for k in range(D):
            mn = points[perm[lo], k]
            mx = mn
            for i in range(lo + stride, hi, stride):
                v = points[perm[i], k]
                mn = min(mn, v)
                mx = max(mx, v)
            if mx - mn > best_spread:
                best_spread = mx - mn
                best_dim = k
        n = hi - lo
        keys = np.empty(n, np.float32)
        idx = np.empty(n, np.int64)
        for i in range(n):
            idx[i] = perm[lo + i]
            keys[i] = points[idx[i], best_dim]
        mid = n // 2
        _select(keys, idx, mid)
        split_dim[first + j] = best_dim
        split_val[first + j] = keys[mid]
        for i in range(n):
            perm[lo + i] = idx[i]


kd_level_serial = _build(_kd_level, parallel=False)


def _assign(points, split_dim, split_val, top, out):
    """``out[i]``: the node of level ``top`` that point i descends to (points in parallel when
    built so)."""
    first = (1 << top) - 1
    for i in prange(points.shape[0]):
        node = 0
        for _ in range(top):
            node = 2 * node + 1 + (1 if points[i, split_dim[node]] >= split_val[node] else 0)
        out[i] = node - first


assign_serial = _build(_assign, parallel=False)
assign_parallel = _build(_assign, parallel=True)


@njit(cache=True)
def _widest(rows, order, lo, hi):
    """Coordinate of largest range (max - min) over the rows ``order[lo:hi]`` (at most
    SPREAD_SAMPLE of them, evenly strided; first coordinate on ties)."""
    stride = max(1, (hi - lo) // SPREAD_SAMPLE)
    best_dim = 0
    best_spread = np.float32(-1.0)
    for k in range(rows.shape[1]):
        mn = rows[order[lo], k]
        mx = mn
        for i in range(lo + stride, hi, stride):
            v = rows[order[i], k]
            mn = min(mn, v)
            mx = max(mx, v)
        if mx - mn > best_spread:
            best_spread = mx - mn
            best_dim = k
    return best_dim


def _subtrees(rows, order, starts, top, sub_depth, split_dim, split_val, leaf_start):
    """Build, for every node g of level ``top``, its subtree of ``sub_depth`` levels from all its
    points: the rows ``order[starts[g]:starts[g + 1]]`` of ``rows`` (N, D) float32. ``order`` is
    reordered in place into leaf order (the rows stay where they are, in cache). Each internal
    node splits at the middle of its range along its widest coordinate (exact median,
    quickselect), and the leaves' boundaries go to ``leaf_start`` (leaf g * 2^sub_depth + q).
    Nodes of level ``top`` in parallel when built so."""
    n_sub = 1 << sub_depth
    for g in prange(starts.shape[0] - 1):
        bounds = np.empty(n_sub + 1, np.int64)
        bounds[0] = starts[g]
        bounds[1] = starts[g + 1]
        keys = np.empty(max(1, starts[g + 1] - starts[g]), np.float32)
        for r in range(sub_depth):
            width = 1 << r
            first = (1 << (top + r)) - 1 + g * width
            for q in range(width - 1, -1, -1):  # right to left: bounds[q + 1] is still unsplit
                lo = bounds[q]
                hi = bounds[q + 1]
                m = hi - lo
                if m > 1:
                    dim = _widest(rows, order, lo, hi)
                    for i in range(m):
                        keys[i] = rows[order[lo + i], dim]
                    _select(keys[:m], order[lo:hi], m // 2)
                    split_dim[first + q] = dim
                    split_val[first + q] = keys[m // 2]
                else:
                    split_dim[first + q] = 0
                    split_val[first + q] = rows[order[lo], 0] if m == 1 else np.float32(0.0)
                bounds[2 * q + 2] = hi
                bounds[2 * q + 1] = lo + m // 2
                bounds[2 * q] = lo
        for q in range(n_sub + 1):
            leaf_start[g * n_sub + q] = bounds[q]


subtrees_serial = _build(_subtrees, parallel=False)
subtrees_parallel = _build(_subtrees, parallel=True)


@njit(cache=True)
def bucket(points, node_of, starts, rows, perm):
    """Counting sort of the points by their level-``top`` node: ``rows[starts[g]:starts[g + 1]]``
    receive node g's points (in B order; contiguous, so that each subtree is built in cache) and
    ``perm`` their B indices."""
    fill = starts[:-1].copy()
    for i in range(points.shape[0]):
        g = node_of[i]
        o = fill[g]
        for k in range(points.shape[1]):
            rows[o, k] = points[i, k]
        perm[o] = i
        fill[g] = o + 1


@njit(cache=True)
def fill_leaves(rows, perm, order, leaf_start, leaf_pts, leaf_idx, leaf_of):
    """Copy the points of each leaf (``rows[order[leaf_start[l]:leaf_start[l + 1]]]``, B indices
    ``perm[order[...]]``) into the coordinate-major ``leaf_pts`` / ``leaf_idx`` (unused slots:
    LEAF_PAD and -1) and record ``leaf_of[b_index]``, the leaf of every point."""
    cap = leaf_idx.shape[1]
    for leaf in range(leaf_start.shape[0] - 1):
        lo = leaf_start[leaf]
        n = leaf_start[leaf + 1] - lo
        for s in range(cap):
            if s < n:
                b = perm[order[lo + s]]
                leaf_idx[leaf, s] = b
                leaf_of[b] = leaf
            else:
                leaf_idx[leaf, s] = -1
        for k in range(rows.shape[1]):
            for s in range(n):
                leaf_pts[leaf, k, s] = rows[order[lo + s], k]
            for s in range(n, cap):
                leaf_pts[leaf, k, s] = LEAF_PAD


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _offer(d, i, top_d, top_i, k):
    """Insert the candidate (PCA distance d, B index i) into the sorted shortlist top_d[:k] /
    top_i[:k] if it ranks (the last entry drops out)."""
    if d < top_d[k - 1]:
        cd = d
        ci = i
        for m in range(k):  # branch-free insertion: one compare-exchange per entry
            tm = top_d[m]
            ti = top_i[m]
            sw = cd < tm
            top_d[m] = cd if sw else tm
            top_i[m] = ci if sw else ti
            cd = tm if sw else cd
            ci = ti if sw else ci


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _scan_leaf(q, leaf_pts, leaf_idx, leaf, dist, top_d, top_i, k, bound):
    """Offer the points of ``leaf`` whose PCA distance to ``q`` is below ``bound`` to the
    shortlist top_d[:k] (see ``_offer``); ``dist``: scratch (cap,). The distances are
    accumulated coordinate by coordinate over the leaf's slots (a vectorised loop over points)."""
    cap = dist.shape[0]
    for s in range(cap):
        dist[s] = 0.0
    for j in range(q.shape[0]):
        qj = q[j]
        row = leaf_pts[leaf, j]
        for s in range(cap):
            d = qj - row[s]
            dist[s] += d * d
    thr = min(bound, top_d[k - 1])
    for s in range(cap):
        d = dist[s]
        if d < thr:
            _offer(d, leaf_idx[leaf, s], top_d, top_i, k)
            thr = min(bound, top_d[k - 1])


def _kd_query_band(A2, B2, mask, p, C, Hb, Wb, qa, leaf_pts, leaf_idx, split_dim, split_val,
                   depth, leaf_of, rerank, nnf, cost, y0, y1):
    """Propagation-assisted kd-tree query of the rows y0..y1-1 of A (one band), scan order.

    At each pixel: the exact SSD of the left neighbour's match shifted right by one pixel and of
    the upper neighbour's match shifted down by one (the upper one only inside the band) gives
    a first best. Then the pixel descends the tree to its own leaf (no backtracking), and that
    leaf and the leaves holding the two shifted matches (He and Sun 2012) are scanned: of their
    patches whose PCA distance, a lower bound of the SSD (orthonormal projection), is below
    BOUND_SLACK times the best SSD, the ``rerank`` nearest in PCA distance are compared by exact
    SSD, nearest first, while the bound stays below the best SSD. Writes ``nnf`` and ``cost``
    (storage scale).
    """
    Wa = nnf.shape[1]
    inf = np.float32(np.inf)
    top_d = np.empty(rerank, np.float32)
    top_i = np.empty(rerank, np.int64)
    dist = np.empty(leaf_idx.shape[1], np.float32)
    first_leaf = (1 << depth) - 1
    for y in range(y0, y1):
        for x in range(Wa):
            q = qa[y, x]
            best = inf
            bi = -1
            left = -1
            if x > 0:
                ly = nnf[y, x - 1, 0]
                lx = min(nnf[y, x - 1, 1] + 1, Wb - 1)
                left = ly * Wb + lx
                best = _dist(A2, B2, mask, y, x, ly, lx, p, C, best)
                bi = left
            up = -1
            if y > y0:
                uy = min(nnf[y - 1, x, 0] + 1, Hb - 1)
                ux = nnf[y - 1, x, 1]
                up = uy * Wb + ux
                if up != left:
                    d = _dist(A2, B2, mask, y, x, uy, ux, p, C, best)
                    if d < best:
                        best = d
                        bi = up
            node = 0
            for _ in range(depth):
                node = 2 * node + 1 + (1 if q[split_dim[node]] >= split_val[node] else 0)
            own = node - first_leaf
            for m in range(rerank):
                top_d[m] = inf
                top_i[m] = -1
            bound = BOUND_SLACK * best
            _scan_leaf(q, leaf_pts, leaf_idx, own, dist, top_d, top_i, rerank, bound)
            lleaf = -1
            if left >= 0:
                lleaf = leaf_of[left]
                if lleaf != own:
                    _scan_leaf(q, leaf_pts, leaf_idx, lleaf, dist, top_d, top_i, rerank, bound)
            if up >= 0:
                uleaf = leaf_of[up]
                if uleaf != own and uleaf != lleaf:
                    _scan_leaf(q, leaf_pts, leaf_idx, uleaf, dist, top_d, top_i, rerank, bound)
            for m in range(rerank):
                i = top_i[m]
                if i < 0 or top_d[m] >= BOUND_SLACK * best:
                    break
                if i != bi:
                    cy = i // Wb
                    d = _dist(A2, B2, mask, y, x, cy, i - cy * Wb, p, C, best)
                    if d < best:
                        best = d
                        bi = i
            nnf[y, x, 0] = bi // Wb
            nnf[y, x, 1] = bi - (bi // Wb) * Wb
            cost[y, x] = best


def _kd_query(A2, B2, mask, p, C, Hb, Wb, qa, leaf_pts, leaf_idx, split_dim, split_val, depth,
              leaf_of, rerank, nnf, cost, band_starts):
    """``_kd_query_band`` over every band of rows (bands in parallel when built so)."""
    for band in prange(band_starts.shape[0] - 1):
        _kd_query_band(A2, B2, mask, p, C, Hb, Wb, qa, leaf_pts, leaf_idx, split_dim, split_val,
                       depth, leaf_of, rerank, nnf, cost, band_starts[band], band_starts[band + 1])




# ------------------------------------------------------------------------- storage variants
#
# Every kernel that compares patches exists once per storage, compiled from the same undecorated
# functions: numba resolves a function's globals when it compiles it, so each variant clones the
# chain below into its own namespace in which ``_row`` is that storage's row loop.
# name, function, role: "inline" helpers (numba IR inlining), "kernel" (one build),
# "pair" (serial and parallel builds of one function, chosen by the wrappers' ``threads``).
_CHAIN = (
    ("_dist_from", _dist_from, "inline"),
    ("_dist", _dist, "inline"),
    ("patch_costs", _patch_costs, "kernel"),
    ("costs_at", _costs_at, "kernel"),
    ("_sweep_band", _sweep_band, "kernel"),
    ("_kd_query_band", _kd_query_band, "kernel"),
    ("init", _init, "pair"),
    ("sweep", _sweep, "pair"),
    ("exact_at", _exact_at, "pair"),
    ("kd_query", _kd_query, "pair"),
)


def _variant(row, tag, fastmath=_FASTMATH, cache=True):
    """The kernels of one storage: a namespace with ``patch_costs``, ``costs_at``,
    ``init_serial``, ``init_parallel``, ``sweep_serial``, ``sweep_parallel``, ``exact_at_*``,
    ``kd_query_*`` (and ``_sweep_band``, ``_kd_query_band``), compiled with ``row`` as ``_row``.
    Names end in ``tag``. ``fastmath`` other than the default is for tests (``strict_builds``)."""
    env = dict(globals())
    env["_row"] = njit(_clone(row, "_row" + tag, env), inline="always", fastmath=fastmath,
                       cache=cache)
    kernels = {"tag": tag}
    for name, fn, role in _CHAIN:
        if role == "pair":
            for parallel in (False, True):
                key = name + ("_parallel" if parallel else "_serial")
                kernels[key] = njit(_clone(fn, key + tag, env), parallel=parallel,
                                    fastmath=fastmath, cache=cache)
        else:
            env[name] = njit(_clone(fn, name + tag, env),
                             inline="always" if role == "inline" else "never",
                             fastmath=fastmath, cache=cache)
            kernels[name] = env[name]
    return types.SimpleNamespace(**kernels)


U8 = _variant(_row_u8, "_u8")
F32 = _variant(_row_f32, "_f32")


def for_storage(A2):
    """The kernel namespace for images stored like ``A2`` (uint8: exact; float32)."""
    return U8 if A2.dtype == np.uint8 else F32


def strict_builds():
    """The uint8 kernels compiled with no fastmath flag anywhere (no reassociation: every SSD
    summed in program order); not cached. For tests: they must give bit for bit what ``U8``
    gives."""
    return _variant(_row_u8, "_u8_strict", fastmath=False, cache=False)
