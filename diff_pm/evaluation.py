"""Evaluation layer: score every candidate offset, then keep the softmax-weighted (or argmax) offset.

score_j(i) = temperature * mean_c( -| f_A(i)[c] - f_B(p_j(i))[c] | ),  p_j(i) = frame point of (y - dy_j, x - dx_j)

``f_B(p)`` is ``f_B`` sampled bilinearly at the continuous point ``p`` (B's pixels) with zero padding
(``grid_sample(..., align_corners=True, padding_mode="zeros")``); :class:`~diff_pm._common.Frame`
says where an offset points (identity by default, the reference's frame with its quirks). Ways to
compute the same mean-L1 scores (no temperature), each with its reason to exist:

* :func:`materialized_scores` -- what the DeepPruner reference does: ``grid_sample`` the full
  feature map of B once per candidate, ``(K, F, H, W)`` at a time (memory ``K * F * H * W``). The
  reference computation, kept for fidelity tests and as the benchmark's baseline.
* :func:`tiled_scores` -- any features (learnt ones); the same computation in tiles of rows, so only
  one tile of sampled features exists at a time (activation checkpointing per tile with gradients).
* :func:`patch_scores` -- the default ``p x p`` neighbourhood features, computed straight from the
  images: the neighbourhood of B sampled bilinearly at a continuous point shares one set of 4
  bilinear weights for all ``p*p`` taps, so it is an ``(p+1) x (p+1)`` integer window of B
  interpolated once. No feature map is built. On CPU a compiled (numba) kernel computes forward and
  backward; elsewhere (CUDA) tiled torch ops, the backward recomputing tile by tile.
* :func:`propagated_scores` -- :func:`patch_scores` of the candidates that propagation hands out,
  sharing work between the three pixels that receive each particle (compiled CPU kernel; the torch
  backend composes :func:`~diff_pm.propagation.propagate` and :func:`patch_scores`).

:func:`propagate_evaluate` (module :class:`PropagateEvaluate`) is one propagation step followed by its
evaluation, the unit of the forward loop; :func:`evaluate` scores candidates given explicitly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import _cpu_kernels
from ._common import Frame, check_choice, check_image, check_int, check_offsets, check_patch_size, pixel_to_grid
from .propagation import BORDERS, DIRECTIONS, propagate

__all__ = ["particle_positions", "materialized_scores", "tiled_scores", "patch_scores", "propagated_scores",
           "select_offsets", "evaluate", "Evaluation", "propagate_evaluate", "PropagateEvaluate",
           "MODES", "SCORINGS", "BACKENDS"]

MODES = ("soft", "hard")
SCORINGS = ("patch", "tiled", "materialize")
BACKENDS = ("auto", "compiled", "torch")

#: elements of the largest per-tile intermediate (about 32 MB in float32)
TILE_ELEMENTS = 1 << 23


def particle_positions(offset_x, offset_y, size_a: tuple[int, int], size_b: tuple[int, int], *, quirks=()):
    """The points in B (pixels) that the evaluation compares for each candidate offset.

    Default: ``(clamp(x - dx, 0, Wb - 1), clamp(y - dy, 0, Hb - 1))``. ``quirks`` (any of
    ``"y_clamp_width"``, ``"a_frame"``, ``"half_pixel"``; all three = the DeepPruner reference as it runs on
    PyTorch >= 1.3): see :class:`~diff_pm._common.Frame`.

    Shape:
        - offset_x, offset_y: ``(N, K, Ha, Wa)``
        - outputs ``(bx, by)``: ``(N, K, Ha, Wa)``
    """
    check_offsets(offset_x, offset_y)
    return Frame.parse(quirks).points(offset_x, offset_y, size_a, size_b)


def materialized_scores(feat_a, feat_b, bx, by):
    """Mean-L1 scores exactly as the reference computes them (materialises ``K x F x Ha x Wa``).

    For each batch item: expand ``feat_b`` to K copies, ``grid_sample`` them at the K particles'
    positions, subtract from ``feat_a``, take ``-mean |.|`` over channels.

    Shape:
        - feat_a: ``(N, F, Ha, Wa)``; feat_b: ``(N, F, Hb, Wb)``
        - bx, by: ``(N, K, Ha, Wa)`` positions in B's pixels
        - output: ``(N, K, Ha, Wa)`` (no temperature)
    """
    n, k = bx.shape[:2]
    hb, wb = feat_b.shape[-2:]
    grid = pixel_to_grid(bx, by, hb, wb)
    out = []
    for i in range(n):
        sampled = F.grid_sample(feat_b[i:i + 1].expand(k, -1, -1, -1), grid[i], mode="bilinear",
                                padding_mode="zeros", align_corners=True)          # (K, F, Ha, Wa)
        out.append(torch.mean(-torch.abs(feat_a[i:i + 1] - sampled), dim=1))
    return torch.stack(out)


def _tile_rows(per_row: int, height: int, budget: int = TILE_ELEMENTS) -> int:
    return max(1, min(height, budget // max(per_row, 1)))


def _tiled_tile(feat_a_rows, feat_b, bx, by):
    n, k, r, w = bx.shape
    hb, wb = feat_b.shape[-2:]
    grid = pixel_to_grid(bx, by, hb, wb).reshape(n, k * r, w, 2)
    sampled = F.grid_sample(feat_b, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    sampled = sampled.view(n, -1, k, r, w)
    return torch.mean(-torch.abs(feat_a_rows.unsqueeze(2) - sampled), dim=1)


def tiled_scores(feat_a, feat_b, bx, by, *, tile_elements: int = TILE_ELEMENTS):
    """Same scores as :func:`materialized_scores`, computed in tiles of rows of A.

    Only one tile's ``(N, F, K, rows, Wa)`` sampled features exist at a time; with gradients enabled
    each tile is checkpointed (recomputed in backward), so the backward pass is bounded the same way.

    Shape: as :func:`materialized_scores`.
    """
    n, k, ha, wa = bx.shape
    rows = _tile_rows(n * feat_a.shape[1] * k * wa, ha, tile_elements)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (feat_a, feat_b, bx, by))
    out = []
    for r0 in range(0, ha, rows):
        sl = slice(r0, min(ha, r0 + rows))
        args = (feat_a[:, :, sl], feat_b, bx[:, :, sl], by[:, :, sl])
        out.append(checkpoint(_tiled_tile, *args, use_reentrant=False) if grad else _tiled_tile(*args))
    return torch.cat(out, dim=2)


# --- fused neighbourhood scores -----------------------------------------------------------------

def _bilinear_corners(pos, size: int):
    """Top-left corner (int64, clamped to [-1, size-1]) and its two weights, zeroed where a corner
    lies outside ``[0, size - 1]`` (grid_sample's zero padding)."""
    p0 = torch.floor(pos)
    frac = pos - p0
    w0 = (1 - frac) * ((p0 >= 0) & (p0 <= size - 1)).to(pos.dtype)
    w1 = frac * ((p0 >= -1) & (p0 <= size - 2)).to(pos.dtype)
    return p0.clamp(-1, size - 1).long(), w0, w1


def _patch_tile(a_pad, b_flat, bx, by, r0: int, patch_size: int, hb: int, wb: int):
    """Scores of one tile of rows ``r0 : r0 + rows`` from the images (see :func:`patch_scores`).

    a_pad: ``(N, C, Ha + 2r, Wa + 2r)`` zero padded by ``r``; b_flat: ``(N, C, (Hb+2P)*(Wb+2P))``, B zero
    padded by ``P = r + 1`` and flattened; bx, by: ``(N, K, rows, Wa)``.
    """
    n, k, rows, wa = bx.shape
    c = a_pad.shape[1]
    p = patch_size
    r = p // 2
    wp = wb + 2 * (r + 1)
    x0, wx0, wx1 = _bilinear_corners(bx, wb)
    y0, wy0, wy1 = _bilinear_corners(by, hb)
    # window of (p+1) x (p+1) pixels of B starting at (y0 - r, x0 - r), i.e. (y0 + 1, x0 + 1) in padded B
    base = (y0 + 1) * wp + (x0 + 1)                                               # (N, K, rows, Wa)
    steps = torch.arange(p + 1, device=bx.device)
    offsets = (steps.view(-1, 1) * wp + steps.view(1, -1)).view(-1)               # ((p+1)^2,)
    index = (base.unsqueeze(-1) + offsets).view(n, 1, -1).expand(n, c, -1)
    window = torch.gather(b_flat, 2, index).view(n, c, k, rows, wa, p + 1, p + 1)
    e = lambda t: t.view(n, 1, k, rows, wa, 1, 1)                                 # noqa: E731
    horiz = window[..., :p] * e(wx0) + window[..., 1:] * e(wx1)                   # (..., p+1, p)
    sampled = horiz[..., :p, :] * e(wy0) + horiz[..., 1:, :] * e(wy1)             # (..., p, p)
    patch_a = F.unfold(a_pad[:, :, r0:r0 + rows + 2 * r], p).view(n, c, p, p, rows, wa)
    patch_a = patch_a.permute(0, 1, 4, 5, 2, 3).unsqueeze(2)                      # (N, C, 1, rows, Wa, p, p)
    return -torch.abs(sampled - patch_a).mean(dim=(1, 5, 6))


def _patch_rows(n, c, k, wa, p, tile_elements):
    return max(1, tile_elements // max(n * c * k * wa * (p + 1) * (p + 1), 1))


def _patch_scores_torch(a_pad, b_flat, bx, by, patch_size, hb, wb, tile_elements):
    n, k, ha, wa = bx.shape
    rows = _patch_rows(n, a_pad.shape[1], k, wa, patch_size, tile_elements)
    out = [_patch_tile(a_pad, b_flat, bx[:, :, s:s + rows], by[:, :, s:s + rows], s, patch_size, hb, wb)
           for s in range(0, ha, rows)]
    return torch.cat(out, dim=2)


def _pad_inputs(a, b, patch_size):
    r = patch_size // 2
    a_pad = F.pad(a, (r, r, r, r))
    b_pad = F.pad(b, (r + 1,) * 4)
    return a_pad, b_pad.flatten(2)


def _use_compiled(a, backend: str) -> bool:
    """Resolve ``backend`` ("auto", "compiled", "torch") for input ``a``; ValueError if it cannot be served."""
    check_choice(backend, "backend", BACKENDS)
    compiled = _cpu_kernels.available(a) if backend == "auto" else backend == "compiled"
    if compiled and not _cpu_kernels.available(a):
        raise ValueError(f"the compiled backend needs CPU float32/float64 tensors and numba, got {a.device}/{a.dtype}")
    return compiled


class _PatchScores(torch.autograd.Function):
    """Fused neighbourhood scores; forward without a graph, backward recomputes tile by tile."""

    @staticmethod
    def forward(ctx, a, b, bx, by, patch_size, tile_elements, compiled):
        hb, wb = b.shape[-2:]
        ctx.save_for_backward(a, b, bx, by)
        ctx.conf = (patch_size, tile_elements, compiled)
        if compiled:
            return _cpu_kernels.patch_scores(a, b, bx, by, patch_size)
        a_pad, b_flat = _pad_inputs(a, b, patch_size)
        return _patch_scores_torch(a_pad, b_flat, bx, by, patch_size, hb, wb, tile_elements)

    @staticmethod
    def backward(ctx, grad_out):
        a, b, bx, by = ctx.saved_tensors
        patch_size, tile_elements, compiled = ctx.conf
        hb, wb = b.shape[-2:]
        n, k, ha, wa = bx.shape
        need = ctx.needs_input_grad
        if compiled:
            grads = _cpu_kernels.patch_scores_backward(a, b, bx, by, patch_size, grad_out)
            return tuple(g if nd else None for g, nd in zip(grads, need[:4])) + (None, None, None)
        with torch.enable_grad():
            a_pad, b_flat = [t.detach().requires_grad_(True) for t in _pad_inputs(a, b, patch_size)]
            g_apad = torch.zeros_like(a_pad)
            g_bflat = torch.zeros_like(b_flat)
            g_bx, g_by = torch.zeros_like(bx), torch.zeros_like(by)
            rows = _patch_rows(n, a.shape[1], k, wa, patch_size, tile_elements)
            for s in range(0, ha, rows):
                sl = slice(s, s + rows)
                tx = bx[:, :, sl].detach().requires_grad_(True)
                ty = by[:, :, sl].detach().requires_grad_(True)
                out = _patch_tile(a_pad, b_flat, tx, ty, s, patch_size, hb, wb)
                ga, gb, gx, gy = torch.autograd.grad(out, (a_pad, b_flat, tx, ty), grad_out[:, :, sl],
                                                     allow_unused=True)
                if ga is not None:
                    g_apad += ga
                if gb is not None:
                    g_bflat += gb
                g_bx[:, :, sl] = gx
                g_by[:, :, sl] = gy
        r = patch_size // 2
        q = r + 1
        grad_a = g_apad[:, :, r:r + ha, r:r + a.shape[-1]] if need[0] else None
        grad_b = g_bflat.view(n, b.shape[1], hb + 2 * q, wb + 2 * q)[:, :, q:q + hb, q:q + wb] if need[1] else None
        return grad_a, grad_b, (g_bx if need[2] else None), (g_by if need[3] else None), None, None, None


def patch_scores(a, b, bx, by, *, patch_size: int = 7, tile_elements: int = TILE_ELEMENTS, backend: str = "auto"):
    """Mean-L1 scores of the ``p x p`` neighbourhood features, computed from the images.

    Equal by definition to ``materialized_scores(neighbourhood_features(a), neighbourhood_features(b),
    bx, by)`` -- zero padding of the features at image borders and grid_sample's zero padding for
    corners outside B included -- without building any feature map: for a position with top-left
    integer corner ``(y0, x0)`` and bilinear weights, the sampled feature is the ``(p+1) x (p+1)``
    window of zero-padded B at ``(y0 - r, x0 - r)`` interpolated once (each corner weight zeroed when
    that corner lies outside B).

    Shape:
        - a: ``(N, C, Ha, Wa)``; b: ``(N, C, Hb, Wb)``
        - bx, by: ``(N, K, Ha, Wa)``
        - output: ``(N, K, Ha, Wa)`` (no temperature)

    ``backend``: ``"compiled"`` (numba kernels, CPU only), ``"torch"`` (tiled torch ops, any device)
    or ``"auto"`` (compiled on CPU when numba is available, else torch). Both use the same formula.
    """
    check_image(a, "a")
    check_image(b, "b", channels=a.shape[1])
    check_offsets(bx, by, like=a)
    return _PatchScores.apply(a, b, bx, by, check_patch_size(patch_size), check_int(tile_elements, "tile_elements"),
                              _use_compiled(a, backend))


class _PropagatedScores(torch.autograd.Function):
    """Compiled propagation-aware forward; backward rebuilds the candidates' points (cheap) and uses the
    compiled backward kernel of :func:`patch_scores`; autograd chains the rest."""

    @staticmethod
    def forward(ctx, a, b, src_x, src_y, patch_size, direction, border, frame):
        ctx.save_for_backward(a, b, src_x, src_y)
        ctx.conf = (patch_size, direction, border, frame)
        size_a, size_b = tuple(a.shape[-2:]), tuple(b.shape[-2:])
        return _cpu_kernels.propagated_scores(
            a, b, src_x, src_y, patch_size, direction == "horizontal", zero_border=border == "zeros",
            limits=frame.limits(size_a, size_b), scales=frame.scales(size_a, size_b), shift=frame.shift,
            ymax=frame.ybase_limit(size_a))

    @staticmethod
    def backward(ctx, grad_out):
        patch_size, direction, border, frame = ctx.conf
        a, b, src_x, src_y = ctx.saved_tensors
        need = ctx.needs_input_grad
        with torch.enable_grad():
            sx, sy = src_x.detach().requires_grad_(True), src_y.detach().requires_grad_(True)
            cx, cy = propagate(sx, sy, direction=direction, border=border)
            bx, by = frame.points(cx, cy, tuple(a.shape[-2:]), tuple(b.shape[-2:]))
            g_a, g_b, g_bx, g_by = _cpu_kernels.patch_scores_backward(a, b, bx, by, patch_size, grad_out)
            g_sx, g_sy = (torch.autograd.grad((bx, by), (sx, sy), (g_bx, g_by), allow_unused=True)
                          if (need[2] or need[3]) else (None, None))
        return (g_a if need[0] else None, g_b if need[1] else None, g_sx if need[2] else None,
                g_sy if need[3] else None, None, None, None, None)


def propagated_scores(a, b, src_x, src_y, *, direction: str, patch_size: int = 7, border: str = "replicate",
                      quirks=(), backend: str = "auto"):
    """Scores of the candidates that :func:`~diff_pm.propagation.propagate` hands out, without building them.

    Equal to ``patch_scores(a, b, *particle_positions(*propagate(src_x, src_y, direction=direction,
    border=border), ..., quirks=quirks))``. The compiled CPU backend evaluates each source particle at
    its three target pixels at once: unclamped, the three sampled windows are one window shifted by a
    pixel, so a ``(p + 2)``-wide strip of absolute differences is computed once and summed over three
    overlapping ranges (about half the work). The torch backend composes the three functions.

    Shape:
        - a ``(N, C, Ha, Wa)``, b ``(N, C, Hb, Wb)``, src_x/src_y ``(N, K, Ha, Wa)``
        - output ``(N, 3K, Ha, Wa)`` in :func:`~diff_pm.propagation.propagate`'s candidate order
    """
    check_choice(direction, "direction", DIRECTIONS)
    check_choice(border, "border", BORDERS)
    check_image(a, "a")
    check_image(b, "b", channels=a.shape[1])
    check_offsets(src_x, src_y, like=a)
    patch_size = check_patch_size(patch_size)
    frame = Frame.parse(quirks)
    if _use_compiled(a, backend):
        return _PropagatedScores.apply(a, b, src_x, src_y, patch_size, direction, border, frame)
    cx, cy = propagate(src_x, src_y, direction=direction, border=border)
    bx, by = frame.points(cx, cy, tuple(a.shape[-2:]), tuple(b.shape[-2:]))
    return patch_scores(a, b, bx, by, patch_size=patch_size, backend="torch")


# --- selection ----------------------------------------------------------------------------------

def select_offsets(logits, offset_x, offset_y, *, mode: str = "soft"):
    """Combine candidates: softmax-weighted mean (``"soft"``) or the argmax candidate (``"hard"``).

    Shape:
        - logits, offset_x, offset_y: ``(N, K, H, W)`` (logits = temperature * score)
        - outputs: two ``(N, 1, H, W)`` tensors
    """
    check_choice(mode, "mode", MODES)
    if mode == "soft":
        weights = torch.softmax(logits, dim=1)
        return (offset_x * weights).sum(1, keepdim=True), (offset_y * weights).sum(1, keepdim=True)
    best = torch.argmax(logits, dim=1, keepdim=True)
    return torch.gather(offset_x, 1, best), torch.gather(offset_y, 1, best)


def _scores(feat_a, feat_b, bx, by, scoring, patch_size, backend="auto"):
    if scoring == "patch":
        return patch_scores(feat_a, feat_b, bx, by, patch_size=patch_size, backend=backend)
    if scoring == "tiled":
        return tiled_scores(feat_a, feat_b, bx, by)
    return materialized_scores(feat_a, feat_b, bx, by)


def _check_options(temperature, mode, scoring, patch_size, quirks):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    check_choice(mode, "mode", MODES)
    check_choice(scoring, "scoring", SCORINGS)
    return float(temperature), check_patch_size(patch_size), Frame.parse(quirks)


def evaluate(feat_a, feat_b, offset_x, offset_y, *, temperature: float = 1e10, mode: str = "soft",
             scoring: str = "patch", patch_size: int = 7, quirks=()):
    """One evaluation step: points, scores, softmax (or argmax) over the candidates.

    Parameters
    ----------
    feat_a, feat_b : Tensor, ``(N, F, Ha, Wa)`` and ``(N, F, Hb, Wb)``
        Features; for ``scoring="patch"`` the *images* (their ``p x p`` neighbourhoods are the features).
    offset_x, offset_y : Tensor, ``(N, K, Ha, Wa)``
        Candidate offsets in pixels (see :class:`~diff_pm._common.Frame` for where they point).
    temperature : float
        Multiplies the scores before the softmax (``1e10``: practically hard).
    mode : {"soft", "hard"}
        Softmax-weighted mean of the candidates, or the argmax candidate.
    scoring : {"patch", "tiled", "materialize"}
        :func:`patch_scores`, :func:`tiled_scores` or :func:`materialized_scores`.
    patch_size : int
        Side of the neighbourhood features (``scoring="patch"`` only).
    quirks : collection of {"y_clamp_width", "a_frame", "half_pixel"}
        The reference's frame quirks.

    Returns
    -------
    offset_x, offset_y : Tensor, ``(N, 1, Ha, Wa)``
    """
    temperature, patch_size, frame = _check_options(temperature, mode, scoring, patch_size, quirks)
    check_image(feat_a, "feat_a")
    check_image(feat_b, "feat_b", channels=feat_a.shape[1])
    check_offsets(offset_x, offset_y, like=feat_a)
    bx, by = frame.points(offset_x, offset_y, tuple(feat_a.shape[-2:]), tuple(feat_b.shape[-2:]))
    scores = _scores(feat_a, feat_b, bx, by, scoring, patch_size)
    return select_offsets(temperature * scores, offset_x, offset_y, mode=mode)


def propagate_evaluate(feat_a, feat_b, offset_x, offset_y, *, direction: str, border: str = "replicate",
                       temperature: float = 1e10, mode: str = "soft", scoring: str = "patch", patch_size: int = 7,
                       quirks=(), backend: str = "auto"):
    """One propagation step and its evaluation: each pixel keeps the best of its own and its two
    neighbours' particles along ``direction``.

    Equal to ``evaluate(feat_a, feat_b, *propagate(offset_x, offset_y, direction=direction, border=border),
    ...)``; with ``scoring="patch"`` on CPU the candidates' scores come from :func:`propagated_scores`
    without building the candidates' points.

    Shape:
        - feat_a ``(N, F, Ha, Wa)``, feat_b ``(N, F, Hb, Wb)``, offset_x/offset_y ``(N, K, Ha, Wa)``
        - outputs: two ``(N, 1, Ha, Wa)`` tensors
    """
    temperature, patch_size, frame = _check_options(temperature, mode, scoring, patch_size, quirks)
    check_image(feat_a, "feat_a")
    check_image(feat_b, "feat_b", channels=feat_a.shape[1])
    check_offsets(offset_x, offset_y, like=feat_a)
    cx, cy = propagate(offset_x, offset_y, direction=direction, border=border)
    if scoring == "patch" and _use_compiled(feat_a, backend):
        scores = _PropagatedScores.apply(feat_a, feat_b, offset_x, offset_y, patch_size, direction, border, frame)
    else:
        bx, by = frame.points(cx, cy, tuple(feat_a.shape[-2:]), tuple(feat_b.shape[-2:]))
        scores = _scores(feat_a, feat_b, bx, by, scoring, patch_size, backend)
    return select_offsets(temperature * scores, cx, cy, mode=mode)


class _EvaluationOptions(nn.Module):
    """Holds and checks the options shared by :class:`Evaluation` and :class:`PropagateEvaluate`."""

    def __init__(self, *, temperature, mode, scoring, patch_size, quirks):
        super().__init__()
        self.temperature, self.patch_size, frame = _check_options(temperature, mode, scoring, patch_size, quirks)
        self.mode, self.scoring = mode, scoring
        self.quirks = frame.quirks

    def options(self) -> dict:
        return dict(temperature=self.temperature, mode=self.mode, scoring=self.scoring,
                    patch_size=self.patch_size, quirks=self.quirks)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options().items())


class Evaluation(_EvaluationOptions):
    """Module form of :func:`evaluate` (holds temperature, mode, scoring method, patch size, frame quirks).

    Shape:
        - feat_a ``(N, F, Ha, Wa)``, feat_b ``(N, F, Hb, Wb)``, offset_x/offset_y ``(N, K, Ha, Wa)``
        - outputs: two ``(N, 1, Ha, Wa)`` tensors
    """

    def __init__(self, *, temperature: float = 1e10, mode: str = "soft", scoring: str = "patch",
                 patch_size: int = 7, quirks=()):
        super().__init__(temperature=temperature, mode=mode, scoring=scoring, patch_size=patch_size, quirks=quirks)

    def forward(self, feat_a, feat_b, offset_x, offset_y):
        return evaluate(feat_a, feat_b, offset_x, offset_y, **self.options())


class PropagateEvaluate(_EvaluationOptions):
    """Module form of :func:`propagate_evaluate`: one propagation direction and border rule, plus the
    evaluation options of :class:`Evaluation`.

    Shape:
        - feat_a ``(N, F, Ha, Wa)``, feat_b ``(N, F, Hb, Wb)``, offset_x/offset_y ``(N, K, Ha, Wa)``
        - outputs: two ``(N, 1, Ha, Wa)`` tensors
    """

    def __init__(self, *, direction: str, border: str = "replicate", temperature: float = 1e10, mode: str = "soft",
                 scoring: str = "patch", patch_size: int = 7, quirks=()):
        super().__init__(temperature=temperature, mode=mode, scoring=scoring, patch_size=patch_size, quirks=quirks)
        self.direction = check_choice(direction, "direction", DIRECTIONS)
        self.border = check_choice(border, "border", BORDERS)

    def options(self) -> dict:
        return dict(super().options(), direction=self.direction, border=self.border)

    def forward(self, feat_a, feat_b, offset_x, offset_y):
        return propagate_evaluate(feat_a, feat_b, offset_x, offset_y, **self.options())
