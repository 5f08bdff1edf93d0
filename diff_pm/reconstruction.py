"""Differentiable voting reconstruction of A from B's pixels, given positions."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import Frame, check_image, check_patch_size, pixel_to_grid

__all__ = ["reconstruct", "Reconstruction"]


def reconstruct(b: torch.Tensor, positions: torch.Tensor, *, patch_size: int = 7, quirks=()) -> torch.Tensor:
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
    quirks : collection of {"y_clamp_width", "a_frame", "half_pixel"}
        The frame of the positions (:class:`~diff_pm._common.Frame`): offsets are recovered and
        applied in it, as :meth:`DifferentiablePatchMatch.reconstruct` does for a model with those
        quirks. All three: the reference's reconstruction (points clamped to A's extents, scaled to
        B, shifted by -0.5 px, zero padding beyond B).

    Returns
    -------
    Tensor, shape ``(N, C, Ha, Wa)``
    """
    check_image(b, "b")
    check_image(positions, "positions", channels=2)
    if positions.shape[0] != b.shape[0]:
        raise ValueError(f"positions and b must have the same batch size, got {positions.shape[0]} and {b.shape[0]}")
    patch_size = check_patch_size(patch_size)
    frame = Frame.parse(quirks)
    positions = positions.to(dtype=b.dtype)
    n, _, ha, wa = positions.shape
    size_a, size_b = (ha, wa), tuple(b.shape[-2:])
    hb, wb = size_b
    r = patch_size // 2
    dx, dy = frame.offsets(positions[:, 1:2], positions[:, 0:1], size_a, size_b)
    offsets = torch.cat((dx, dy), dim=1)                                               # (N, 2, Ha, Wa)
    mode = "reflect" if (ha > r and wa > r) else "replicate"
    padded = F.pad(offsets, (r, r, r, r), mode=mode) if r > 0 else offsets
    total = None
    for ty in range(patch_size):
        for tx in range(patch_size):
            d = padded[:, :, ty:ty + ha, tx:tx + wa]
            sx, sy = frame.points(d[:, 0:1], d[:, 1:2], size_a, size_b)
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

    def __init__(self, *, patch_size: int = 7, quirks=()):
        super().__init__()
        self.patch_size = check_patch_size(patch_size)
        self.quirks = Frame.parse(quirks).quirks

    def forward(self, b, positions):
        return reconstruct(b, positions, patch_size=self.patch_size, quirks=self.quirks)
