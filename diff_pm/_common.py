"""Conventions shared by every layer of diff_pm: argument checks, quirks, coordinates.

Correspondence convention (written down once, used everywhere)
---------------------------------------------------------------
* Images and feature maps are ``(N, C, H, W)`` tensors.
* Internally the search state is a per-pixel continuous offset ``(dx, dy)`` in pixels, as in
  DeepPruner: pixel ``(y, x)`` of A designates the point ``(y - dy, x - dx)``, which :class:`Frame`
  maps into B's pixels (identity by default).
* The public output is *positions*: ``(N, 2, Ha, Wa)`` absolute ``(y, x)`` pixel coordinates in B
  (channel 0 = y, channel 1 = x) of the designated points, before the evaluation clamps them to
  the image (:meth:`Frame.evaluated` gives the points the evaluation compares). Pixel ``j`` has its
  centre at coordinate ``j``.
* Sampling at a continuous position is bilinear with zero padding outside the map, done by
  ``torch.nn.functional.grid_sample(..., align_corners=True, padding_mode="zeros")``. The only
  place that converts pixel coordinates to grid_sample's normalised ``[-1, 1]`` coordinates is
  :func:`pixel_to_grid`.

One set of argument checks serves every function and constructor of the package: each raises a
one-line ``ValueError`` that names the argument and what it must be.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterable

import torch

__all__ = ["QUIRKS", "FRAME_QUIRKS", "check_image", "check_offsets", "check_patch_size", "check_int",
           "check_choice", "check_quirks", "pixel_to_grid", "pixel_grid", "Frame"]

#: The DeepPruner reference's behaviours that the defaults fix, one name each (``docs/diff_pm.md``
#: measures each one's effect). ``reference_quirks=True`` means all of them.
QUIRKS = ("zero_border", "y_clamp_width", "a_frame", "half_pixel")
#: The quirks that change where an offset points in B (they apply to the reconstruction too).
FRAME_QUIRKS = ("y_clamp_width", "a_frame", "half_pixel")


# --------------------------------------------------------------------------- checks
def check_image(x, name: str, *, channels: int | None = None) -> None:
    """Raise a one-line ``ValueError`` unless ``x`` is a non-empty floating ``(N, C, H, W)`` tensor."""
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


def check_offsets(offset_x, offset_y, *, like: torch.Tensor | None = None) -> None:
    """Offsets: two floating ``(N, K, H, W)`` tensors of the same shape, device and dtype.

    With ``like`` (an image ``(N, C, H, W)``), also the same batch size, height and width.
    """
    check_image(offset_x, "offset_x")
    check_image(offset_y, "offset_y")
    if offset_x.shape != offset_y.shape:
        raise ValueError(f"offset_x and offset_y must have the same shape, got {tuple(offset_x.shape)} "
                         f"and {tuple(offset_y.shape)}")
    if offset_x.device != offset_y.device or offset_x.dtype != offset_y.dtype:
        raise ValueError("offset_x and offset_y must share device and dtype")
    if like is not None:
        n, _, h, w = like.shape
        if offset_x.shape[0] != n or tuple(offset_x.shape[-2:]) != (h, w):
            raise ValueError(f"offsets of shape {tuple(offset_x.shape)} do not fit an image of shape "
                             f"{tuple(like.shape)} (same N, H, W expected)")


def check_int(value, name: str, *, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools and floats, even 7.0, are refused, as in classic_pm); returns ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_patch_size(value, name: str = "patch_size") -> int:
    """A positive odd integer (7.5, 8, 0, True are refused); returns it as ``int``."""
    try:
        p = check_int(value, name, minimum=1)
    except ValueError:
        raise ValueError(f"{name} must be a positive odd integer, got {value!r}") from None
    if p % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer, got {value!r}")
    return p


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_quirks(quirks, *, allowed: Iterable[str] = QUIRKS) -> frozenset:
    """A collection of quirk names (see :data:`QUIRKS`) -> frozenset; unknown names are refused."""
    allowed = tuple(allowed)
    if isinstance(quirks, str):
        quirks = (quirks,)
    try:
        names = frozenset(quirks)
    except TypeError:
        raise ValueError(f"quirks must be a collection of names from {', '.join(allowed)}, got {quirks!r}") from None
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise ValueError(f"unknown quirk {unknown[0]!r}; choose from {', '.join(allowed)}")
    return names


# --------------------------------------------------------------------------- coordinates
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


@dataclass(frozen=True)
class Frame:
    """Where an offset points in B, and which point the evaluation compares.

    Default (all False): pixel ``(y, x)`` with offset ``(dx, dy)`` designates ``(y - dy, x - dx)`` in
    B's pixels; the evaluation compares that point clamped to B (``[0, Hb-1] x [0, Wb-1]``).

    The reference's frame quirks (all three together reproduce its ``grid_sample`` call):

    * ``y_clamp_width``: the base y coordinate is ``min(y, Wa - 1)`` (its y grid clamped with the width).
    * ``a_frame``: the point is clamped to **A**'s extents and scaled by ``Wb / Wa``, ``Hb / Ha`` (B's
      coordinates normalised by A's size).
    * ``half_pixel``: the point is shifted by ``-0.5`` px (grid_sample's ``align_corners=False`` with
      that normalisation); where the shift reaches past B's border, bilinear sampling reads zeros.

    Pixel ``(y, x)`` with offset ``(dx, dy)``: ``q = (ybase - dy, x - dx)``; raw point
    ``q * s + shift``; evaluated point ``clamp(q, 0, L) * s + shift`` with ``L`` the clamp limits
    (A's size - 1 with ``a_frame``, else B's) and ``s`` the scales (1 without ``a_frame``).
    """

    y_clamp_width: bool = False
    a_frame: bool = False
    half_pixel: bool = False

    @classmethod
    def from_quirks(cls, quirks: Iterable[str]) -> "Frame":
        """The frame of already checked quirk names (names outside :data:`FRAME_QUIRKS` are ignored)."""
        q = frozenset(quirks)
        return cls(**{name: name in q for name in FRAME_QUIRKS})

    @classmethod
    def parse(cls, quirks) -> "Frame":
        """The frame of a user's ``quirks`` argument: frame quirk names only (others are refused)."""
        return cls.from_quirks(check_quirks(quirks, allowed=FRAME_QUIRKS))

    @property
    def quirks(self) -> tuple[str, ...]:
        return tuple(name for name in FRAME_QUIRKS if getattr(self, name))

    @property
    def shift(self) -> float:
        return -0.5 if self.half_pixel else 0.0

    def scales(self, size_a, size_b) -> tuple[float, float]:
        """``(sy, sx)``: B pixels per unit of the offset frame."""
        if not self.a_frame:
            return 1.0, 1.0
        return size_b[0] / size_a[0], size_b[1] / size_a[1]

    def limits(self, size_a, size_b) -> tuple[int, int]:
        """``(Ly, Lx)``: the designated point ``q`` is clamped to ``[0, Ly] x [0, Lx]`` (A's with ``a_frame``)."""
        h, w = size_a if self.a_frame else size_b
        return h - 1, w - 1

    def ybase_limit(self, size_a) -> float:
        """Upper bound of the base y coordinate (``inf`` unless ``y_clamp_width``)."""
        return float(size_a[1] - 1) if self.y_clamp_width else float("inf")

    def base(self, size_a, *, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base coordinates ``(x, y)`` of A's pixels, each ``(1, 1, Ha, Wa)``."""
        x, y = pixel_grid(size_a[0], size_a[1], like=like)
        if self.y_clamp_width:
            y = y.clamp(max=size_a[1] - 1)
        return x, y

    def points(self, offset_x, offset_y, size_a, size_b, *, evaluated: bool = True):
        """Points ``(bx, by)`` in B's pixels that offsets designate (``evaluated=True``: clamped, as the
        evaluation compares them; ``False``: the raw points, the model's positions).

        Shape: offsets ``(N, K, Ha, Wa)`` -> two ``(N, K, Ha, Wa)`` tensors.
        """
        x, y = self.base(size_a, like=offset_x)
        qx, qy = x - offset_x, y - offset_y
        if evaluated:
            ly, lx = self.limits(size_a, size_b)
            qx, qy = qx.clamp(0, lx), qy.clamp(0, ly)
        sy, sx = self.scales(size_a, size_b)
        if sx != 1.0:
            qx = qx * sx
        if sy != 1.0:
            qy = qy * sy
        if self.half_pixel:
            qx, qy = qx - 0.5, qy - 0.5
        return qx, qy

    def reflect(self, offset_x, offset_y, size_a, size_b):
        """Offsets whose point ``q`` lies outside the clamp limits, mirrored into them.

        ``q`` is reflected at ``0`` and at ``L`` (:meth:`limits`) as often as needed, so every returned
        offset designates a point that the evaluation compares unclamped; offsets inside are unchanged.
        Shape: two ``(N, K, Ha, Wa)`` tensors -> the same.
        """
        x, y = self.base(size_a, like=offset_x)
        ly, lx = self.limits(size_a, size_b)
        return x - _mirror(x - offset_x, lx), y - _mirror(y - offset_y, ly)

    def evaluated(self, px, py, size_a, size_b):
        """Raw points (B pixels) -> the points the evaluation compares (clamped as :meth:`points`)."""
        sy, sx = self.scales(size_a, size_b)
        ly, lx = self.limits(size_a, size_b)
        s = self.shift
        return (px - s).clamp(0, lx * sx) + s, (py - s).clamp(0, ly * sy) + s

    def offsets(self, px, py, size_a, size_b):
        """Inverse of ``points(..., evaluated=False)``: raw points in B -> offsets ``(dx, dy)``."""
        sy, sx = self.scales(size_a, size_b)
        x, y = self.base(size_a, like=px)
        s = self.shift
        qx = (px - s) / sx if sx != 1.0 else px - s
        qy = (py - s) / sy if sy != 1.0 else py - s
        return x - qx, y - qy


def _mirror(q: torch.Tensor, limit: float) -> torch.Tensor:
    """``q`` reflected into ``[0, limit]`` (period ``2 * limit``); ``limit == 0`` maps everything to 0."""
    if limit <= 0:
        return torch.zeros_like(q)
    r = torch.remainder(q, 2.0 * limit)
    return limit - torch.abs(r - limit)
