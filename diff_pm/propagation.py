"""Propagation layer: hand each pixel its neighbours' particles.

DeepPruner writes this step as a convolution with fixed one-hot filters over the particle
dimension; a one-hot filter copies a shifted view, so the layer copies shifted views directly.
"""
from __future__ import annotations

from torch import nn

from ._common import check_choice, check_offsets

__all__ = ["propagate", "Propagation", "DIRECTIONS", "BORDERS"]

DIRECTIONS = ("horizontal", "vertical")
BORDERS = ("replicate", "zeros")


def propagate(offset_x, offset_y, *, direction: str = "horizontal", border: str = "replicate"):
    """Gather each pixel's own particles and those of its two neighbours along one axis.

    The reference's one-hot propagation filters, applied as the shifted copies they compute (no
    learnt weights).

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
    return _shift(offset_x, direction == "horizontal", border), _shift(offset_y, direction == "horizontal", border)


def _shift(src, horizontal: bool, border: str):
    """Candidates ``(N, 3K, H, W)`` of one offset map ``(N, K, H, W)``."""
    n, k, h, w = src.shape
    out = src.new_empty(n, k, 3, h, w)
    out[:, :, 1] = src
    if horizontal:
        out[:, :, 0, :, 1:] = src[..., :-1]
        out[:, :, 2, :, :-1] = src[..., 1:]
        first, last = (out[:, :, 0, :, 0], out[:, :, 2, :, w - 1])
        own_first, own_last = src[..., 0], src[..., w - 1]
    else:
        out[:, :, 0, 1:] = src[:, :, :-1]
        out[:, :, 2, :-1] = src[:, :, 1:]
        first, last = (out[:, :, 0, 0], out[:, :, 2, h - 1])
        own_first, own_last = src[:, :, 0], src[:, :, h - 1]
    if border == "replicate":
        first.copy_(own_first)
        last.copy_(own_last)
    else:
        first.zero_()
        last.zero_()
    return out.view(n, 3 * k, h, w)


class Propagation(nn.Module):
    """Module form of :func:`propagate`; holds the border rule.

    Shape:
        - offset_x, offset_y: ``(N, K, H, W)``
        - outputs: two ``(N, 3K, H, W)`` tensors
    """

    def __init__(self, *, border: str = "replicate"):
        super().__init__()
        self.border = check_choice(border, "border", BORDERS)

    def forward(self, offset_x, offset_y, *, direction: str = "horizontal"):
        return propagate(offset_x, offset_y, direction=direction, border=self.border)

    def extra_repr(self) -> str:
        return f"border={self.border!r}"
