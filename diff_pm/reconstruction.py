"""Differentiable voting reconstruction of A from B's pixels, given positions."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_image, pixel_grid, pixel_to_grid

__all__ = ["reconstruct", "Reconstruction"]


def reconstruct(b: torch.Tensor, positions: torch.Tensor, *, patch_size: int = 7) -> torch.Tensor:
    """Patch voting on the offset field (DeepPruner's ``Reconstruct``), differentiable.

    With offsets ``d = (x, y) - positions``, pixel ``i`` of A becomes the mean over the ``p x p``
    neighbours ``j`` of ``i`` of B sampled bilinearly at ``i - d_j`` (neighbour ``j``'s match, shifted
    back to ``i``), the point clamped to B's extents. Neighbours outside A take the reflected
    pixel's offset (reflection padding, as the reference; replicate when A is smaller than ``p//2 + 1``).

    Parameters
    ----------
    b : Tensor, shape ``(N, C, Hb, Wb)``
    positions : Tensor, shape ``(N, 2, Ha, Wa)``
        Absolute ``(y, x)`` pixel coordinates in B (the output of :class:`DifferentiablePatchMatch`).
    patch_size : int
        Odd ``p``; ``p = 1`` samples B at the positions directly.

    Returns
    -------
    Tensor, shape ``(N, C, Ha, Wa)``
    """
    check_image(b, "b")
    check_image(positions, "positions", channels=2)
    if positions.shape[0] != b.shape[0]:
        raise ValueError(f"positions and b must have the same batch size, got {positions.shape[0]} and {b.shape[0]}")
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd integer, got {patch_size}")
    positions = positions.to(dtype=b.dtype)
    n, _, ha, wa = positions.shape
    hb, wb = b.shape[-2:]
    r = patch_size // 2
    x, y = pixel_grid(ha, wa, like=positions)
    offsets = torch.cat((x - positions[:, 1:2], y - positions[:, 0:1]), dim=1)        # (N, 2, Ha, Wa): dx, dy
    mode = "reflect" if (ha > r and wa > r) else "replicate"
    padded = F.pad(offsets, (r, r, r, r), mode=mode) if r > 0 else offsets
    total = None
    for ty in range(patch_size):
        for tx in range(patch_size):
            d = padded[:, :, ty:ty + ha, tx:tx + wa]
            sx = (x - d[:, 0:1]).clamp(0, wb - 1)
            sy = (y - d[:, 1:2]).clamp(0, hb - 1)
            grid = pixel_to_grid(sx[:, 0], sy[:, 0], hb, wb)
            sample = F.grid_sample(b, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            total = sample if total is None else total + sample
    return total / (patch_size * patch_size)


class Reconstruction(nn.Module):
    """Module form of :func:`reconstruct`.

    Shape:
        - b: ``(N, C, Hb, Wb)``; positions: ``(N, 2, Ha, Wa)``
        - output: ``(N, C, Ha, Wa)``
    """

    def __init__(self, *, patch_size: int = 7):
        super().__init__()
        self.patch_size = int(patch_size)

    def forward(self, b, positions):
        return reconstruct(b, positions, patch_size=self.patch_size)
