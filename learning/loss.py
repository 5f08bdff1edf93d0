"""The training losses of the arms (:mod:`learning.arms`).

* :func:`reconstruction_loss` (arm ``recon``): masked L1 of DPM's soft voting reconstruction, plus
  an end-point-error term (the loss of the earlier checkpoints);
* :func:`info_nce_loss` (arm ``contrastive``, no DPM): InfoNCE of descriptors, the true match
  against random points and points on a ring around it;
* :func:`dpm_candidate_loss` (arm ``dpm-ce``, through DPM's hard choice): cross-entropy over the
  candidates DPM's search actually compares (:func:`dpm_candidates`), the true match added.

The two ranking losses share :func:`ranking_cross_entropy`, :func:`sample_anchors` (which pixels
of A are supervised) and :func:`sample_points` (bilinear sampling of B's features).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import diff_pm

from .features import PATCH_SIZE

__all__ = ["reconstruction_loss", "ranking_cross_entropy", "sample_anchors", "sample_points", "info_nce_loss",
           "dpm_candidates", "dpm_candidate_loss"]


def reconstruction_loss(a, b, positions, valid, *, gt=None, epe_weight: float = 0.0,
                        patch_size: int = PATCH_SIZE, parts: bool = False):
    """Mean L1 of ``diff_pm.reconstruct(b, positions)`` against ``a`` on valid pixels (+ EPE term).

    Shape:
        - a, b: ``(N, C, H, W)``; positions, gt: ``(N, 2, H, W)``; valid: ``(N, 1, H, W)`` 0/1
        - returns: scalar tensor ``recon + epe_weight * epe / max(H, W)`` (EPE in pixels); with
          ``parts=True`` also the two terms as floats: ``(total, recon, epe_pixels)``
    """
    recon = diff_pm.reconstruct(b, positions, patch_size=patch_size)
    denom = valid.sum().clamp_min(1.0)
    l1 = ((recon - a).abs().mean(1, keepdim=True) * valid).sum() / denom
    loss, epe_px = l1, float("nan")
    if gt is not None:
        err = ((positions - gt).pow(2).sum(1, keepdim=True) + 1e-6).sqrt()
        epe = (err * valid).sum() / denom
        epe_px = float(epe.detach())
        if epe_weight > 0:
            loss = loss + epe_weight * epe / max(a.shape[-2:])
    if parts:
        return loss, float(l1.detach()), epe_px
    return loss


# --------------------------------------------------------------------------- ranking losses
def ranking_cross_entropy(logits, keep, weight):
    """Mean cross-entropy of candidate 0 (the positive) against the kept candidates.

    Shape:
        - logits: ``(N, M, K)`` scores of K candidates for M anchors (candidate 0: the true match)
        - keep: ``(N, M, K)`` bool, which candidates take part (candidate 0 always does)
        - weight: ``(N, M)`` 0/1, which anchors count (valid ground truth)
        - returns: scalar ``sum(weight * -log softmax(logits)[..., 0]) / max(sum(weight), 1)``
    """
    keep = keep.clone()
    keep[..., 0] = True
    log_p = torch.log_softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)[..., 0]
    return -(log_p * weight).sum() / weight.sum().clamp_min(1.0)


def sample_anchors(valid, count: int, generator):
    """``count`` anchor pixels per item, drawn uniformly among its valid pixels (with replacement).

    Shape: valid ``(N, 1, H, W)`` 0/1 -> ``(index (N, M) int64 into H*W, weight (N, M) float)``;
    an item without valid pixels draws uniformly and gets weight 0 everywhere.
    """
    flat = valid.flatten(1).float()
    draw = flat + (flat.sum(1, keepdim=True) == 0).float()
    index = torch.multinomial(draw, count, replacement=True, generator=generator)
    return index, flat.gather(1, index)


def sample_points(features, x, y):
    """``features`` sampled bilinearly at continuous points (B's pixels; zero outside).

    Shape: features ``(N, F, H, W)``, x/y ``(N, M, K)`` -> ``(N, F, M, K)``.
    """
    h, w = features.shape[-2:]
    grid = diff_pm.pixel_to_grid(x, y, h, w)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _at(t, index):
    """``t (N, C, H, W)`` at flat pixel indices ``(N, M)`` -> ``(N, C, M)``."""
    n, c = t.shape[:2]
    return t.flatten(2).gather(2, index.unsqueeze(1).expand(n, c, -1))


def info_nce_loss(desc_a, desc_b, gt, valid, *, generator, anchors: int = 256, random_negatives: int = 64,
                  ring_negatives: int = 32, ring=(2.0, 8.0), tau: float = 0.1):
    """InfoNCE of descriptors, without DPM: the true match against random and nearby points.

    For ``anchors`` valid pixels of each A (:func:`sample_anchors`), candidate 0 is B's descriptor
    at the ground-truth point, then ``ring_negatives`` points at a uniform distance in ``ring``
    (pixels) and a uniform angle around the truth, then ``random_negatives`` uniform points of B
    (all clamped into B; a negative closer to the truth than ``ring[0]``, by more than 0.001 px, is left
    out). Scores are
    ``-|d_A - d_B|^2 / tau`` (B sampled bilinearly), the loss :func:`ranking_cross_entropy`.
    Draws from ``generator``: anchors, ring radii, ring angles, random points (in that order).

    Shape: desc_a ``(N, F, Ha, Wa)``, desc_b ``(N, F, Hb, Wb)``, gt ``(N, 2, Ha, Wa)`` (y, x) in B,
    valid ``(N, 1, Ha, Wa)`` -> scalar.
    """
    n = desc_a.shape[0]
    hb, wb = desc_b.shape[-2:]
    index, weight = sample_anchors(valid, anchors, generator)
    gy, gx = _at(gt, index).unbind(1)                                           # (N, M)
    kw = dict(generator=generator, device=desc_a.device, dtype=desc_a.dtype)
    radius = ring[0] + (ring[1] - ring[0]) * torch.rand((n, anchors, ring_negatives), **kw)
    angle = 2 * math.pi * torch.rand((n, anchors, ring_negatives), **kw)
    rand = torch.rand((n, anchors, random_negatives, 2), **kw)
    ys = torch.cat((gy[..., None], gy[..., None] + radius * torch.sin(angle), rand[..., 0] * (hb - 1)), -1)
    xs = torch.cat((gx[..., None], gx[..., None] + radius * torch.cos(angle), rand[..., 1] * (wb - 1)), -1)
    ys, xs = ys.clamp(0, hb - 1), xs.clamp(0, wb - 1)
    keep = ((ys - gy[..., None]) ** 2 + (xs - gx[..., None]) ** 2) >= (ring[0] - 1e-3) ** 2
    cand = sample_points(desc_b, xs, ys)                                         # (N, F, M, K)
    logits = -(_at(desc_a, index).unsqueeze(-1) - cand).pow(2).sum(1) / tau     # (N, M, K)
    return ranking_cross_entropy(logits, keep, weight)


def dpm_candidates(feat_a, feat_b, *, generator, iterations: int, window, sample_count: int = 1,
                   keep_current: bool = True, outside: str = "reflect", return_offsets: bool = False):
    """The candidates DPM's hard search compares, per evaluation step (no gradient).

    Runs DPM's default search (full range, shared noise; ``keep_current``, ``outside`` and
    ``window`` as given) in hard mode on the feature maps, with the layers of :mod:`diff_pm`
    (``sample_particles``, ``Frame.reflect``, ``propagate``, ``propagate_evaluate``), and records
    before every evaluation the candidates' points that it compares (clamped into B).

    Returns a list of ``2 * iterations`` pairs ``(bx, by)``, each ``(N, K_s, Ha, Wa)``: the
    candidates of the horizontal then the vertical evaluation of every iteration (detached); with
    ``return_offsets`` also the final offsets ``(dx, dy)``, each ``(N, 1, Ha, Wa)`` (those of
    ``diff_pm.DifferentiablePatchMatch`` with the same options, ``evaluation="hard"``, ``patch_size=1``
    and generator, run on the feature maps).
    """
    frame = diff_pm.Frame()
    fa, fb = feat_a.detach(), feat_b.detach()
    n, _, ha, wa = fa.shape
    size_a, size_b = (ha, wa), tuple(fb.shape[-2:])
    big_w, big_h = max(wa, size_b[1]), max(ha, size_b[0])
    zeros = fa.new_zeros(n, 1, ha, wa)
    lo_x, hi_x, lo_y, hi_y = zeros - big_w, zeros + big_w, zeros - big_h, zeros + big_h
    steps, dx, dy = [], None, None
    with torch.no_grad():
        for _ in range(iterations):
            px, py = diff_pm.sample_particles(lo_x, hi_x, lo_y, hi_y, sample_count=sample_count,
                                              generator=generator, shared_noise=True)
            if outside == "reflect":
                px, py = frame.reflect(px, py, size_a, size_b)
            if keep_current and dx is not None:
                px, py = torch.cat((px, dx), 1), torch.cat((py, dy), 1)
            for direction in ("horizontal", "vertical"):
                cx, cy = diff_pm.propagate(px, py, direction=direction)
                steps.append(frame.points(cx, cy, size_a, size_b))
                px, py = diff_pm.propagate_evaluate(fa, fb, px, py, direction=direction, mode="hard",
                                                    scoring="patch", patch_size=1, temperature=1.0)
            dx, dy = px, py
            lo_x, hi_x = (dx - window[1] / 2).clamp(-big_w, big_w), (dx + window[1] / 2).clamp(-big_w, big_w)
            lo_y, hi_y = (dy - window[0] / 2).clamp(-big_h, big_h), (dy + window[0] / 2).clamp(-big_h, big_h)
    return (steps, (dx, dy)) if return_offsets else steps


def dpm_candidate_loss(feat_a, feat_b, gt, valid, *, generator, iterations: int, window, anchors: int = 256,
                       exclude: float = 1.0, sample_count: int = 1, keep_current: bool = True,
                       outside: str = "reflect"):
    """Cross-entropy over DPM's actual candidates, the ground-truth point added as the positive.

    The search (:func:`dpm_candidates`) runs without gradient, so the candidates are constants
    (detached between iterations, as PatchmatchNet does); for ``anchors`` valid pixels of each A,
    every evaluation step's candidates are scored as DPM scores them, ``-mean_c |f_A - f_B|``
    (``feat_*`` already carry the temperature), the true match (B's features at the
    ground-truth point) is candidate 0, candidates within ``exclude`` pixels of the truth are left
    out, and :func:`ranking_cross_entropy` is averaged over the steps. The gradient reaches the
    features through the scores only. Draws from ``generator``: DPM's particles, then the anchors.

    Shape: as :func:`info_nce_loss` (``feat_*`` are DPM's features, ``(N, F, H, W)``) -> scalar.
    """
    steps = dpm_candidates(feat_a, feat_b, generator=generator, iterations=iterations, window=window,
                           sample_count=sample_count, keep_current=keep_current, outside=outside)
    index, weight = sample_anchors(valid, anchors, generator)
    gy, gx = _at(gt, index).unbind(1)
    fa = _at(feat_a, index).unsqueeze(-1)                                       # (N, F, M, 1)
    total = 0.0
    for bx, by in steps:
        cx, cy = _at(bx, index).transpose(1, 2), _at(by, index).transpose(1, 2)  # (N, M, K)
        xs, ys = torch.cat((gx[..., None], cx), -1), torch.cat((gy[..., None], cy), -1)
        keep = ((ys - gy[..., None]) ** 2 + (xs - gx[..., None]) ** 2) > exclude ** 2
        logits = -(fa - sample_points(feat_b, xs, ys)).abs().mean(1)           # (N, M, K + 1)
        total = total + ranking_cross_entropy(logits, keep, weight)
    return total / len(steps)
