"""Compiled CPU kernels (numba) for the fused neighbourhood scores and their gradients.

Same definition as :func:`diff_pm.evaluation._patch_tile` (the device-generic torch version): for a
point ``(py, px)`` in B with top-left corner ``(y0, x0)`` and weights ``w00, w01, w10, w11``
(``(1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx``, each zeroed when its corner lies outside B -- grid_sample's
zero padding), the sampled neighbourhood tap ``(i, j)`` is
``w00 B[y0+i-r, x0+j-r] + w01 B[y0+i-r, x0+j-r+1] + w10 B[y0+i-r+1, x0+j-r] + w11 B[y0+i-r+1, x0+j-r+1]``
with B zero padded (the features' zero padding), and the score is ``-mean |A_patch - sampled|``.

Arrays are channels-last and padded so that the inner loops run over contiguous ``p * C`` floats.
Arithmetic runs in the arrays' dtype (float32 or float64): points are rounded to it as torch rounds
them, bilinear weights are cast to it, sums accumulate in it. Rows are split over numba's threads;
gradients of A and B are accumulated in one buffer per chunk of rows (no races), then summed.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

try:  # numba is a project dependency, but keep the torch fallback importable without it
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["available", "patch_scores", "patch_scores_backward", "propagated_scores"]


def available(t: torch.Tensor) -> bool:
    """True when the compiled kernels can serve ``t`` (CPU float32/float64, numba importable)."""
    return numba is not None and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


if numba is not None:

    @njit(cache=True, inline="always")
    def _corner(pos, size):
        p0 = math.floor(pos)
        frac = pos - p0
        w0 = (1.0 - frac) if (p0 >= 0 and p0 <= size - 1) else 0.0
        w1 = frac if (p0 >= -1 and p0 <= size - 2) else 0.0
        i0 = int(min(max(p0, -1.0), size - 1.0))
        return i0, w0, w1

    @njit(cache=True, inline="always")
    def _weights(px, py, hb, wb, wt):
        """Corner ``(y0, x0)`` of point ``(py, px)``; its four weights stored in ``wt`` (the arrays' dtype)."""
        x0, wx0, wx1 = _corner(px, wb)
        y0, wy0, wy1 = _corner(py, hb)
        wt[0] = wy0 * wx0
        wt[1] = wy0 * wx1
        wt[2] = wy1 * wx0
        wt[3] = wy1 * wx1
        return y0, x0

    @njit(cache=True, inline="always")
    def _direct(a_cl, b_cl, n, y, x, y0, x0, wt, p, c, pad):
        """Sum over the patch of |A patch at (y, x) - B sampled with corner (y0, x0), weights wt|.

        A padded by ``p // 2``, B by ``pad`` (>= p // 2 + 1); the sum is in the arrays' dtype.
        """
        r = p // 2
        w00 = wt[0]
        w01 = wt[1]
        w10 = wt[2]
        w11 = wt[3]
        bbase = (x0 - r + pad) * c
        abase = x * c
        pc = p * c
        acc = 0.0
        for i in range(p):
            rb = y0 - r + pad + i
            # row views starting at the window: indices from range() need no wraparound handling
            b00 = b_cl[n, rb, bbase:]
            b01 = b_cl[n, rb, bbase + c:]
            b10 = b_cl[n, rb + 1, bbase:]
            b11 = b_cl[n, rb + 1, bbase + c:]
            ar = a_cl[n, y + i, abase:]
            for j in range(pc):
                acc += abs(ar[j] - (w00 * b00[j] + w01 * b01[j] + w10 * b10[j] + w11 * b11[j]))
        return acc

    @njit(cache=True, parallel=True, fastmath=True)
    def _forward(a_cl, b_cl, bx, by, p, hb, wb, out):
        # a_cl: (N, Ha+2r, (Wa+2r)*C); b_cl: (N, Hb+2r+2, (Wb+2r+2)*C); bx, by, out: (N, K, Ha, Wa)
        n_img, n_part, ha, wa = bx.shape
        c = a_cl.shape[2] // (wa + p - 1)
        pad = p // 2 + 1
        scale = 1.0 / (c * p * p)
        for row in prange(n_img * ha):
            n = row // ha
            y = row - n * ha
            wt = np.empty(4, dtype=out.dtype)
            for x in range(wa):
                for k in range(n_part):
                    y0, x0 = _weights(bx[n, k, y, x], by[n, k, y, x], hb, wb, wt)
                    out[n, k, y, x] = -_direct(a_cl, b_cl, n, y, x, y0, x0, wt, p, c, pad) * scale

    @njit(cache=True, parallel=True, fastmath=True)
    def _backward(a_cl, b_cl, bx, by, p, hb, wb, gout, ga, gb, gx, gy, chunks):
        # ga: (chunks, N, Ha+2r, (Wa+2r)*C); gb: (chunks, N, Hb+2r+2, (Wb+2r+2)*C); gx, gy: (N, K, Ha, Wa)
        n_img, n_part, ha, wa = bx.shape
        c = (a_cl.shape[2] // (wa + p - 1))
        pc = p * c
        scale = 1.0 / (c * p * p)
        total = n_img * ha
        for ch in prange(chunks):
            lo = (total * ch) // chunks
            hi = (total * (ch + 1)) // chunks
            for row in range(lo, hi):
                n = row // ha
                y = row - n * ha
                for x in range(wa):
                    abase = x * c
                    for k in range(n_part):
                        g = gout[n, k, y, x] * scale
                        if g == 0.0:
                            continue
                        px = bx[n, k, y, x]
                        py = by[n, k, y, x]
                        x0, wx0, wx1 = _corner(px, wb)
                        y0, wy0, wy1 = _corner(py, hb)
                        # d(weights)/d(px), d/d(py): frac = pos - floor(pos), valid masks are constants
                        fx0 = math.floor(px)
                        fy0 = math.floor(py)
                        dwx0 = -1.0 if (fx0 >= 0 and fx0 <= wb - 1) else 0.0
                        dwx1 = 1.0 if (fx0 >= -1 and fx0 <= wb - 2) else 0.0
                        dwy0 = -1.0 if (fy0 >= 0 and fy0 <= hb - 1) else 0.0
                        dwy1 = 1.0 if (fy0 >= -1 and fy0 <= hb - 2) else 0.0
                        w00 = wy0 * wx0
                        w01 = wy0 * wx1
                        w10 = wy1 * wx0
                        w11 = wy1 * wx1
                        bbase = (x0 + 1) * c
                        sx = 0.0
                        sy = 0.0
                        for i in range(p):
                            rb0 = y0 + 1 + i
                            b00 = b_cl[n, rb0, bbase:]
                            b01 = b_cl[n, rb0, bbase + c:]
                            b10 = b_cl[n, rb0 + 1, bbase:]
                            b11 = b_cl[n, rb0 + 1, bbase + c:]
                            ar = a_cl[n, y + i, abase:]
                            gar = ga[ch, n, y + i, abase:]
                            g00 = gb[ch, n, rb0, bbase:]
                            g01 = gb[ch, n, rb0, bbase + c:]
                            g10 = gb[ch, n, rb0 + 1, bbase:]
                            g11 = gb[ch, n, rb0 + 1, bbase + c:]
                            for j in range(pc):
                                v00 = b00[j]
                                v01 = b01[j]
                                v10 = b10[j]
                                v11 = b11[j]
                                s = w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11
                                d = ar[j] - s
                                # out = -scale * sum |a - s|: d out / d a = -sign(d), d out / d s = sign(d)
                                sg = g if d > 0 else (-g if d < 0 else 0.0)
                                gar[j] -= sg
                                g00[j] += sg * w00
                                g01[j] += sg * w01
                                g10[j] += sg * w10
                                g11[j] += sg * w11
                                sx += sg * (wy0 * dwx0 * v00 + wy0 * dwx1 * v01 + wy1 * dwx0 * v10 + wy1 * dwx1 * v11)
                                sy += sg * (dwy0 * wx0 * v00 + dwy0 * wx1 * v01 + dwy1 * wx0 * v10 + dwy1 * wx1 * v11)
                        gx[n, k, y, x] = sx
                        gy[n, k, y, x] = sy


def _channels_last(t: torch.Tensor, pad: int, extra: int = 0) -> np.ndarray:
    """(N, C, H, W) tensor -> zero-padded channels-last numpy array (N, H+2pad, (W+2pad+extra)*C)."""
    t = F.pad(t.detach(), (pad, pad + extra, pad, pad))
    n, c, h, w = t.shape
    return np.ascontiguousarray(t.permute(0, 2, 3, 1).reshape(n, h, w * c).numpy())


def _prepare(a, b, bx, by, patch_size, b_pad=None, extra=0):
    """A padded by ``r``, B by ``b_pad`` (default ``r + 1``), both channels-last with ``extra`` more
    columns on the right; ``bx, by`` as numpy."""
    r = patch_size // 2
    a_cl = _channels_last(a, r, extra)
    b_cl = _channels_last(b, r + 1 if b_pad is None else b_pad, extra)
    bxn = np.ascontiguousarray(bx.detach().numpy())
    byn = np.ascontiguousarray(by.detach().numpy())
    return a_cl, b_cl, bxn, byn


def patch_scores(a, b, bx, by, patch_size: int) -> torch.Tensor:
    """Forward scores ``(N, K, Ha, Wa)``; same contract as :func:`diff_pm.evaluation.patch_scores`."""
    a_cl, b_cl, bxn, byn = _prepare(a, b, bx, by, patch_size)
    out = np.empty(bxn.shape, dtype=bxn.dtype)
    hb, wb = b.shape[-2:]
    _forward(a_cl, b_cl, bxn, byn, patch_size, hb, wb, out)
    return torch.from_numpy(out)


def patch_scores_backward(a, b, bx, by, patch_size: int, grad_out: torch.Tensor):
    """Gradients ``(grad_a, grad_b, grad_bx, grad_by)`` of ``sum(grad_out * patch_scores(...))``."""
    a_cl, b_cl, bxn, byn = _prepare(a, b, bx, by, patch_size)
    gout = np.ascontiguousarray(grad_out.detach().to(bx.dtype).numpy())
    chunks = max(1, min(numba.get_num_threads(), bxn.shape[0] * bxn.shape[2]))
    ga = np.zeros((chunks,) + a_cl.shape, dtype=a_cl.dtype)
    gb = np.zeros((chunks,) + b_cl.shape, dtype=b_cl.dtype)
    gx = np.zeros(bxn.shape, dtype=bxn.dtype)
    gy = np.zeros(byn.shape, dtype=byn.dtype)
    hb, wb = b.shape[-2:]
    _backward(a_cl, b_cl, bxn, byn, patch_size, hb, wb, gout, ga, gb, gx, gy, chunks)
    n, c, ha, wa = a.shape
    r = patch_size // 2
    q = r + 1
    grad_a = torch.from_numpy(ga.sum(0)).view(n, ha + 2 * r, wa + 2 * r, c)[:, r:r + ha, r:r + wa].permute(0, 3, 1, 2)
    grad_b = torch.from_numpy(gb.sum(0)).view(n, hb + 2 * q, wb + 2 * q, c)[:, q:q + hb, q:q + wb].permute(0, 3, 1, 2)
    return grad_a.contiguous(), grad_b.contiguous(), torch.from_numpy(gx), torch.from_numpy(gy)


# --- propagation-aware forward -------------------------------------------------------------------
#
# After propagation every particle of a source pixel s is evaluated at three target pixels,
# s - 1, s, s + 1 along the propagation axis. When none of the three points is clamped, the frame
# does not scale that axis and all their bilinear corners lie inside B, the three sampled windows
# are the same bilinear window shifted by one pixel (same weights), so the per-column (horizontal)
# or per-row (vertical) absolute differences of a (p + 2)-wide strip are computed once and summed
# over three overlapping ranges of p. Elsewhere (image borders, clamped or scaled points) each
# target is evaluated directly. Same definition as ``patch_scores(frame.points(propagate(...)))``.

#: columns of zeros added on the right of A and B: the strip loop reads up to 7 elements past its end
STRIP_EXTRA = 8

if numba is not None:

    @njit(cache=True, inline="always")
    def _point(q, lim, scale, shift, rnd):
        """Evaluated coordinate ``clamp(q, 0, lim) * scale + shift``, each step rounded to the arrays'
        dtype through ``rnd`` (a 1-element array) as torch rounds it."""
        rnd[0] = min(max(q, 0.0), lim)
        if scale != 1.0:
            rnd[0] = rnd[0] * scale
        if shift != 0.0:
            rnd[0] = rnd[0] + shift
        return rnd[0]

    @njit(cache=True, inline="always")
    def _target(a_cl, b_cl, n, ty, tx, dx, dy, p, c, hb, wb, pad, lx, ly, sx, sy, shift, ymax, wt, rnd):
        """Un-normalised sum |A patch - sampled B patch| of offset (dx, dy) at target pixel (ty, tx)."""
        rnd[0] = tx - dx
        qx = rnd[0]
        rnd[0] = min(ty, ymax) - dy
        qy = rnd[0]
        px = _point(qx, lx, sx, shift, rnd)
        py = _point(qy, ly, sy, shift, rnd)
        y0, x0 = _weights(px, py, hb, wb, wt)
        return _direct(a_cl, b_cl, n, ty, tx, y0, x0, wt, p, c, pad)

    @njit(cache=True, parallel=True, fastmath=True)
    def _propagated_forward(a_cl, b_cl, src_x, src_y, p, c, hb, wb, pad, horizontal, zero_border,
                            lx, ly, sx, sy, shift, ymax, out):
        # a_cl padded by r, b_cl padded by pad >= r + 2, both with STRIP_EXTRA more columns on the
        # right; src_x, src_y: (N, K, Ha, Wa); out: (N, 3K, Ha, Wa)
        # frame: points clamp(q, 0, (ly, lx)) * (sy, sx) + shift with q = (min(y, ymax) - dy, x - dx)
        n_img, n_part, ha, wa = src_x.shape
        r = p // 2
        scale = 1.0 / (c * p * p)
        length = wa if horizontal else ha
        # the strip loop runs over whole SIMD vectors (a multiple of 8 elements); its tail is ignored
        n_strip = ((p + 2) * c + 7) // 8 * 8
        for row in prange(n_img * ha):
            n = row // ha
            y = row - n * ha
            strip = np.zeros(n_strip, dtype=np.float64)
            costs = np.zeros(p + 2, dtype=np.float64)
            wt = np.empty(4, dtype=out.dtype)
            rnd = np.empty(1, dtype=out.dtype)
            for x in range(wa):
                s = x if horizontal else y
                for k in range(n_part):
                    dx = src_x[n, k, y, x]
                    dy = src_y[n, k, y, x]
                    fast = False
                    if s >= 1 and s <= length - 2:
                        rnd[0] = x - dx
                        qx = rnd[0]
                        rnd[0] = min(y, ymax) - dy
                        qy = rnd[0]
                        if horizontal:
                            fast = (sx == 1.0 and qx - 1.0 >= 0.0 and qx + 1.0 <= lx
                                    and qx - 1.0 + shift >= 0.0 and qx + 1.0 + shift <= wb - 1.0)
                        else:
                            fast = (sy == 1.0 and y + 1 <= ymax and qy - 1.0 >= 0.0 and qy + 1.0 <= ly
                                    and qy - 1.0 + shift >= 0.0 and qy + 1.0 + shift <= hb - 1.0)
                    if fast:
                        px = _point(qx, lx, sx, shift, rnd)
                        py = _point(qy, ly, sy, shift, rnd)
                        y0, x0 = _weights(px, py, hb, wb, wt)
                        w00 = wt[0]
                        w01 = wt[1]
                        w10 = wt[2]
                        w11 = wt[3]
                        if horizontal:
                            # columns u = 0 .. p+1 <-> B columns x0 - r - 1 + u, A columns x - r - 1 + u
                            for e in range(n_strip):
                                strip[e] = 0.0
                            bbase = (x0 - r - 1 + pad) * c
                            abase = (x - 1) * c
                            for i in range(p):
                                rb = y0 - r + pad + i
                                b00 = b_cl[n, rb, bbase:]
                                b01 = b_cl[n, rb, bbase + c:]
                                b10 = b_cl[n, rb + 1, bbase:]
                                b11 = b_cl[n, rb + 1, bbase + c:]
                                ar = a_cl[n, y + i, abase:]
                                for e in range(n_strip):
                                    strip[e] += abs(ar[e] - (w00 * b00[e] + w01 * b01[e] + w10 * b10[e] + w11 * b11[e]))
                            for u in range(p + 2):
                                t = strip[u * c]
                                for ch in range(1, c):
                                    t += strip[u * c + ch]
                                costs[u] = t
                        else:
                            # rows u = 0 .. p+1 <-> B rows y0 - r - 1 + u, A rows y - r - 1 + u
                            bbase = (x0 - r + pad) * c
                            abase = x * c
                            for u in range(p + 2):
                                rb = y0 - r - 1 + pad + u
                                b00 = b_cl[n, rb, bbase:]
                                b01 = b_cl[n, rb, bbase + c:]
                                b10 = b_cl[n, rb + 1, bbase:]
                                b11 = b_cl[n, rb + 1, bbase + c:]
                                ar = a_cl[n, y - 1 + u, abase:]
                                t = 0.0
                                for e in range(p * c):
                                    t += abs(ar[e] - (w00 * b00[e] + w01 * b01[e] + w10 * b10[e] + w11 * b11[e]))
                                costs[u] = t
                        total = costs[1]
                        for u in range(2, p + 1):
                            total += costs[u]
                        lower = total - costs[p] + costs[0]      # target s - 1: u = 0 .. p-1
                        upper = total - costs[1] + costs[p + 1]  # target s + 1: u = 2 .. p+1
                        if horizontal:
                            out[n, 3 * k + 2, y, x - 1] = -lower * scale
                            out[n, 3 * k + 1, y, x] = -total * scale
                            out[n, 3 * k, y, x + 1] = -upper * scale
                        else:
                            out[n, 3 * k + 2, y - 1, x] = -lower * scale
                            out[n, 3 * k + 1, y, x] = -total * scale
                            out[n, 3 * k, y + 1, x] = -upper * scale
                    else:
                        for t in range(-1, 2):
                            e = s + t
                            if e < 0 or e > length - 1:
                                continue
                            tx = x + t if horizontal else x
                            ty = y if horizontal else y + t
                            v = -_target(a_cl, b_cl, n, ty, tx, dx, dy, p, c, hb, wb, pad,
                                         lx, ly, sx, sy, shift, ymax, wt, rnd) * scale
                            out[n, 3 * k + 1 - t, ty, tx] = v
                            # the missing neighbour's slot at the border: own particle, or offset 0
                            for edge, slot in ((0, 0), (length - 1, 2)):
                                if t == 0 and s == edge:
                                    if zero_border:
                                        out[n, 3 * k + slot, ty, tx] = -_target(
                                            a_cl, b_cl, n, ty, tx, 0.0, 0.0, p, c, hb, wb, pad,
                                            lx, ly, sx, sy, shift, ymax, wt, rnd) * scale
                                    else:
                                        out[n, 3 * k + slot, ty, tx] = v


def propagated_scores(a, b, src_x, src_y, patch_size: int, horizontal: bool, *, zero_border: bool = False,
                      limits=None, scales=(1.0, 1.0), shift: float = 0.0, ymax: float = math.inf) -> torch.Tensor:
    """Scores ``(N, 3K, Ha, Wa)`` of the candidates that propagation hands out (see the block comment).

    ``limits=(Ly, Lx)`` (default B's ``(Hb-1, Wb-1)``), ``scales=(sy, sx)``, ``shift`` and ``ymax`` describe
    the frame (:class:`diff_pm._common.Frame`); ``zero_border`` the border rule.
    """
    pad = patch_size // 2 + 2
    a_cl, b_cl, sxn, syn = _prepare(a, b, src_x, src_y, patch_size, pad, STRIP_EXTRA)
    n, k, ha, wa = sxn.shape
    out = np.empty((n, 3 * k, ha, wa), dtype=sxn.dtype)
    hb, wb = b.shape[-2:]
    ly, lx = (hb - 1, wb - 1) if limits is None else limits
    ymax = float(min(ymax, 2.0 ** 31))
    _propagated_forward(a_cl, b_cl, sxn, syn, patch_size, a.shape[1], hb, wb, pad, bool(horizontal), bool(zero_border),
                        float(lx), float(ly), float(scales[1]), float(scales[0]), float(shift), ymax, out)
    return torch.from_numpy(out)
