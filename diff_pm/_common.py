"""Conventions shared by every layer of diff_pm: shape checks and coordinate conversion.

Correspondence convention (written down once, used everywhere)
---------------------------------------------------------------
* Images and feature maps are ``(N, C, H, W)`` tensors.
* Internally the search state is a per-pixel continuous offset ``(dx, dy)`` in pixels, as in
  DeepPruner: pixel ``(y, x)`` of A is matched to the point ``(y - dy, x - dx)`` of B.
* The public output is *positions*: ``(N, 2, Ha, Wa)`` absolute ``(y, x)`` pixel coordinates in B
  (channel 0 = y, channel 1 = x). Pixel ``j`` has its centre at coordinate ``j``.
* Sampling at a continuous position is bilinear with zero padding outside the map, done by
  ``torch.nn.functional.grid_sample(..., align_corners=True, padding_mode="zeros")``. The only
  place that converts pixel coordinates to grid_sample's normalised ``[-1, 1]`` coordinates is
  :func:`pixel_to_grid`.
"""
from __future__ import annotations

import torch

__all__ = ["check_image", "pixel_to_grid", "pixel_grid"]


def check_image(x, name: str, *, channels: int | None = None) -> None:
    """Raise a one-line ``ValueError`` unless ``x`` is a floating ``(N, C, H, W)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if min(x.shape) < 1:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {x.shape[1]}")


def pixel_to_grid(x: torch.Tensor, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates -> ``grid_sample`` coordinates, for ``align_corners=True``.

    Parameters
    ----------
    x, y : Tensor, same shape ``(...)``
        Pixel coordinates in a map of size ``(height, width)``; pixel ``j`` is at coordinate ``j``.
    height, width : int
        Size of the map that will be sampled.

    Returns
    -------
    Tensor, shape ``(..., 2)``
        Normalised ``(x, y)`` (grid_sample's order): ``-1`` is pixel 0, ``+1`` is pixel ``size - 1``.
        Use it only with ``grid_sample(..., align_corners=True)``. A map of size 1 along an axis
        maps every coordinate to its single pixel, as grid_sample does.
    """
    gx = x * (2.0 / max(width - 1, 1)) - 1.0
    gy = y * (2.0 / max(height - 1, 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)


def pixel_grid(height: int, width: int, *, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinate maps ``(x, y)``, each ``(1, 1, height, width)``, on ``like``'s device and dtype."""
    ys = torch.arange(height, device=like.device, dtype=like.dtype)
    xs = torch.arange(width, device=like.device, dtype=like.dtype)
    return xs.view(1, 1, 1, width).expand(1, 1, height, width), ys.view(1, 1, height, 1).expand(1, 1, height, width)
