"""The training loss: masked L1 of DPM's voting reconstruction (plus an end-point-error term)."""
from __future__ import annotations

import diff_pm

from .features import PATCH_SIZE

__all__ = ["reconstruction_loss"]


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
