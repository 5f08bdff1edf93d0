"""Particle sampling layer: stratified uniform samples of the offset search range."""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_image, check_int

__all__ = ["sample_particles", "ParticleSampler"]


def sample_particles(lo_x, hi_x, lo_y, hi_y, *, sample_count: int = 1, generator=None, shared_noise: bool = False,
                     interval_index: torch.Tensor | None = None):
    """Draw ``(k+1)^2`` offset particles per pixel, one uniform sample per interval, meshgrid-wise.

    Each axis range ``[lo, hi]`` is cut into ``k + 1`` equal intervals; one uniform sample is drawn in
    each (``lo + (hi - lo) / (k+1) * (i + u_i)``, ``u_i ~ U[0, 1)``); the ``k + 1`` x-samples and
    ``k + 1`` y-samples are combined meshgrid-wise. Particle ``j = iy * (k+1) + ix`` (DeepPruner order).

    Parameters
    ----------
    lo_x, hi_x, lo_y, hi_y : Tensor, shape ``(N, 1, H, W)``
        Per-pixel offset range in pixels (``lo <= hi``).
    sample_count : int
        ``k >= 1``; ``(k+1)^2`` particles are returned.
    generator : torch.Generator or sequence of N generators, optional
        Source of the uniform draws (on the tensors' device). ``None`` uses torch's default generator.
        x noise is drawn first, then y noise, each of shape ``(N, k+1, H, W)``. With one generator per
        batch item, item ``i`` draws its own x then y noise from ``generator[i]``, so its particles do
        not depend on the rest of the batch.
    shared_noise : bool
        Reuse the x noise for y, as the DeepPruner reference does (``noise="shared"``, the model's
        default): only one ``(N, k+1, H, W)`` draw per call.

    Returns
    -------
    offset_x, offset_y : Tensor, shape ``(N, (k+1)^2, H, W)``
    """
    k = check_int(sample_count, "sample_count")
    for name, t in (("lo_x", lo_x), ("hi_x", hi_x), ("lo_y", lo_y), ("hi_y", hi_y)):
        check_image(t, name, channels=1)
    n_int = k + 1
    n, _, h, w = lo_x.shape
    u_x, u_y = _uniform_noise((n, n_int, h, w), generator, shared_noise, lo_x)
    if interval_index is None:
        interval_index = torch.arange(n_int, device=lo_x.device, dtype=lo_x.dtype).view(1, n_int, 1, 1)
    interval_index = interval_index.to(device=lo_x.device, dtype=lo_x.dtype)
    sx = lo_x + (hi_x - lo_x) / n_int * (interval_index + u_x)   # (N, k+1, H, W)
    sy = lo_y + (hi_y - lo_y) / n_int * (interval_index + u_y)
    offset_x = sx.unsqueeze(1).expand(n, n_int, n_int, h, w).reshape(n, n_int * n_int, h, w)
    offset_y = sy.unsqueeze(2).expand(n, n_int, n_int, h, w).reshape(n, n_int * n_int, h, w)
    return offset_x, offset_y


def _uniform_noise(shape, generator, shared_noise, like):
    def draw(g, size):
        return torch.rand(size, generator=g, device=like.device, dtype=like.dtype)
    if generator is None or isinstance(generator, torch.Generator):
        u_x = draw(generator, shape)
        return u_x, (u_x if shared_noise else draw(generator, shape))
    if len(generator) != shape[0]:
        raise ValueError(f"expected one generator per batch item ({shape[0]}), got {len(generator)}")
    xs, ys = [], []
    for g in generator:
        xs.append(draw(g, (1,) + tuple(shape[1:])))
        ys.append(xs[-1] if shared_noise else draw(g, (1,) + tuple(shape[1:])))
    return torch.cat(xs), torch.cat(ys)


class ParticleSampler(nn.Module):
    """Module form of :func:`sample_particles`; holds ``k``, the noise rule and the interval-index buffer.

    Shape:
        - lo_x, hi_x, lo_y, hi_y: ``(N, 1, H, W)``
        - outputs: two ``(N, (k+1)^2, H, W)`` tensors
    """

    def __init__(self, *, sample_count: int = 1, shared_noise: bool = False):
        super().__init__()
        self.sample_count = check_int(sample_count, "sample_count")
        self.shared_noise = bool(shared_noise)
        self.register_buffer("interval_index", torch.arange(self.sample_count + 1.0).view(1, -1, 1, 1), persistent=False)

    def forward(self, lo_x, hi_x, lo_y, hi_y, *, generator=None):
        return sample_particles(lo_x, hi_x, lo_y, hi_y, sample_count=self.sample_count, generator=generator,
                                shared_noise=self.shared_noise, interval_index=self.interval_index)

    def extra_repr(self) -> str:
        return f"sample_count={self.sample_count}, shared_noise={self.shared_noise}"
