"""Propagation layer: hand each pixel its neighbours' particles with fixed one-hot filters."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["propagation_filters", "propagate", "Propagation"]


def propagation_filters() -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot filters ``(3, 1, 1, 3)`` (horizontal) and ``(3, 1, 3, 1)`` (vertical).

    Output channel 0 picks the left/upper neighbour, 1 the pixel itself, 2 the right/lower neighbour.
    """
    eye = torch.eye(3)
    return eye.view(3, 1, 1, 3), eye.view(3, 1, 3, 1)


def propagate(offset_x, offset_y, direction: str = "horizontal", *, border: str = "replicate", filters=None):
    """Gather each pixel's own particles and those of its two neighbours along one axis.

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
        DeepPruner reference's fast propagation does (a quirk).
    filters : tuple of Tensor, optional
        ``(horizontal, vertical)`` one-hot filters (see :func:`propagation_filters`).

    Returns
    -------
    offset_x, offset_y : Tensor, shape ``(N, 3K, H, W)``
        Candidate ``c*K + j`` is particle ``j`` of: the left/upper neighbour (``c = 0``), the pixel
        itself (``c = 1``), the right/lower neighbour (``c = 2``) -- the reference's order.
    """
    if direction not in ("horizontal", "vertical"):
        raise ValueError(f"direction must be 'horizontal' or 'vertical', got {direction!r}")
    if border not in ("replicate", "zeros"):
        raise ValueError(f"border must be 'replicate' or 'zeros', got {border!r}")
    if filters is None:
        filters = propagation_filters()
    weight = filters[0] if direction == "horizontal" else filters[1]
    weight = weight.to(device=offset_x.device, dtype=offset_x.dtype)
    n, k, h, w = offset_x.shape
    both = torch.cat((offset_x, offset_y), dim=0).reshape(2 * n * k, 1, h, w)
    pad = (1, 1, 0, 0) if direction == "horizontal" else (0, 0, 1, 1)
    both = F.pad(both, pad, mode="replicate") if border == "replicate" else F.pad(both, pad)
    out = F.conv2d(both, weight)                                   # (2NK, 3, H, W)
    out = out.view(2 * n, k, 3, h, w).transpose(1, 2).reshape(2 * n, 3 * k, h, w)
    return out[:n], out[n:]


class Propagation(nn.Module):
    """Module form of :func:`propagate`; the one-hot filters are registered buffers.

    Shape:
        - offset_x, offset_y: ``(N, K, H, W)``
        - outputs: two ``(N, 3K, H, W)`` tensors
    """

    def __init__(self, *, border: str = "replicate"):
        super().__init__()
        if border not in ("replicate", "zeros"):
            raise ValueError(f"border must be 'replicate' or 'zeros', got {border!r}")
        self.border = border
        h, v = propagation_filters()
        self.register_buffer("filter_h", h, persistent=False)
        self.register_buffer("filter_v", v, persistent=False)

    def forward(self, offset_x, offset_y, direction: str = "horizontal"):
        return propagate(offset_x, offset_y, direction, border=self.border, filters=(self.filter_h, self.filter_v))

    def extra_repr(self) -> str:
        return f"border={self.border!r}"
