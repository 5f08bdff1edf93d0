"""Propagation layer: hand each pixel its neighbours' particles with fixed one-hot filters."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_choice, check_int, check_offsets

__all__ = ["propagation_filters", "propagate", "Propagation", "DIRECTIONS", "BORDERS"]

DIRECTIONS = ("horizontal", "vertical")
BORDERS = ("replicate", "zeros")


def propagation_filters(particles: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped one-hot filters ``(3K, 1, 1, 3)`` (horizontal) and ``(3K, 1, 3, 1)`` (vertical).

    For particle ``j`` (group ``j``) output channel ``3j + c`` picks: ``c = 0`` the left/upper
    neighbour, ``c = 1`` the pixel itself, ``c = 2`` the right/lower neighbour.
    """
    eye = torch.eye(3).repeat(particles, 1)
    return eye.view(3 * particles, 1, 1, 3), eye.view(3 * particles, 1, 3, 1)


def propagate(offset_x, offset_y, *, direction: str = "horizontal", border: str = "replicate", filters=None):
    """Gather each pixel's own particles and those of its two neighbours along one axis.

    A convolution with fixed one-hot filters, grouped per particle (no learnt weights).

    Parameters
    ----------
    offset_x, offset_y : Tensor, shape ``(N, K, H, W)``
    direction : {"horizontal", "vertical"}
        Horizontal: left and right neighbours; vertical: upper and lower neighbours.
    border : {"replicate", "zeros"}
        Border rule for the neighbour that does not exist. ``"replicate"`` (default): a border pixel
        receives its own particles in place of the missing neighbour's (so every candidate is a
        real particle; in hard mode this equals having fewer candidates, in soft mode the own
        particles count twice). ``"zeros"``: the missing neighbour contributes offset 0, as the
        DeepPruner reference's fast propagation does (quirk ``zero_border``).
    filters : tuple of Tensor, optional
        ``(horizontal, vertical)`` filters from :func:`propagation_filters` ``(K')``, ``K' >= K``.

    Returns
    -------
    offset_x, offset_y : Tensor, shape ``(N, 3K, H, W)``
        Candidate ``3j + c`` is particle ``j`` of: the left/upper neighbour (``c = 0``), the pixel
        itself (``c = 1``), the right/lower neighbour (``c = 2``) -- the order of the reference's
        convolutional ``Propagation`` layer (its faster variant orders neighbour-major; the order
        only matters for exact ties in hard mode).
    """
    check_choice(direction, "direction", DIRECTIONS)
    check_choice(border, "border", BORDERS)
    check_offsets(offset_x, offset_y)
    n, k, h, w = offset_x.shape
    if filters is None or filters[0].shape[0] < 3 * k:
        filters = propagation_filters(k)
    horizontal = direction == "horizontal"
    # the filters for K' >= K particles start with the filters for K particles
    weight = (filters[0] if horizontal else filters[1])[:3 * k].to(device=offset_x.device, dtype=offset_x.dtype)
    padding = (0, 1) if horizontal else (1, 0)
    out = []
    for src in (offset_x, offset_y):
        cand = F.conv2d(src, weight, padding=padding, groups=k)                   # zero padding
        if border == "replicate":                                                 # own particles instead
            if horizontal:
                cand[:, 0::3, :, 0] = src[:, :, :, 0]
                cand[:, 2::3, :, w - 1] = src[:, :, :, w - 1]
            else:
                cand[:, 0::3, 0, :] = src[:, :, 0, :]
                cand[:, 2::3, h - 1, :] = src[:, :, h - 1, :]
        out.append(cand)
    return out[0], out[1]


class Propagation(nn.Module):
    """Module form of :func:`propagate`; the one-hot filters (for up to ``particles`` K) are registered buffers.

    Shape:
        - offset_x, offset_y: ``(N, K, H, W)``
        - outputs: two ``(N, 3K, H, W)`` tensors
    """

    def __init__(self, *, particles: int = 1, border: str = "replicate"):
        super().__init__()
        self.border = check_choice(border, "border", BORDERS)
        h, v = propagation_filters(check_int(particles, "particles"))
        self.register_buffer("filter_h", h, persistent=False)
        self.register_buffer("filter_v", v, persistent=False)

    def forward(self, offset_x, offset_y, *, direction: str = "horizontal"):
        return propagate(offset_x, offset_y, direction=direction, border=self.border,
                         filters=(self.filter_h, self.filter_v))

    def extra_repr(self) -> str:
        return f"border={self.border!r}"
