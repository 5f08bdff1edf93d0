"""Default features: every pixel's ``p x p`` neighbourhood stacked into channels (DeepPruner demo)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_image, check_patch_size

__all__ = ["neighbourhood_features", "NeighbourhoodFeatures"]


def _one_hot_filter(patch_size: int) -> torch.Tensor:
    """Fixed one-hot filter, shape ``(p*p, 1, 1, p, p)``: output channel ``t`` copies tap ``t``."""
    taps = patch_size * patch_size
    return torch.eye(taps).view(taps, 1, 1, patch_size, patch_size)


def neighbourhood_features(image: torch.Tensor, *, patch_size: int = 7, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Stack each pixel's ``p x p`` neighbourhood into ``p*p*C`` channels (zero padding at the border).

    Exactly the DeepPruner demo's feature extractor: a fixed one-hot ``conv3d``.

    Shape:
        - image: ``(N, C, H, W)``
        - output: ``(N, p*p*C, H, W)``; channel ``t*C + c`` is channel ``c`` of the pixel displaced by
          tap ``t = ty*p + tx``, i.e. by ``(ty - p//2, tx - p//2)``; zero where that pixel is outside.
    """
    check_image(image, "image")
    patch_size = check_patch_size(patch_size)
    if weight is None:
        weight = _one_hot_filter(patch_size)
    weight = weight.to(device=image.device, dtype=image.dtype)
    r = patch_size // 2
    n, c, h, w = image.shape
    out = F.conv3d(image.unsqueeze(1), weight, padding=(0, r, r))
    return out.reshape(n, patch_size * patch_size * c, h, w)


class NeighbourhoodFeatures(nn.Module):
    """Fixed ``p x p`` RGB-neighbourhood features (``p*p*C`` channels, 147 for RGB and p = 7).

    No learnt weights; the one-hot filter is a registered buffer. :class:`DifferentiablePatchMatch`
    recognises this module and, unless ``materialize=True``, evaluates it without ever building the
    feature maps (see :func:`diff_pm.evaluation.patch_scores`).
    """

    def __init__(self, *, patch_size: int = 7):
        super().__init__()
        self.patch_size = check_patch_size(patch_size)
        self.register_buffer("weight", _one_hot_filter(self.patch_size), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return neighbourhood_features(image, patch_size=self.patch_size, weight=self.weight)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}"
