"""DifferentiablePatchMatch: the unrolled recurrent network (sampling, propagation, evaluation)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._common import check_image, pixel_grid
from .evaluation import Evaluation, particle_positions
from .features import NeighbourhoodFeatures
from .propagation import Propagation
from .sampling import ParticleSampler

__all__ = ["DifferentiablePatchMatch"]


class DifferentiablePatchMatch(nn.Module):
    """Differentiable PatchMatch (Duggal et al., DeepPruner, ICCV 2019) for a pair of images.

    One iteration: sample ``(k+1)^2`` particles in each pixel's offset range, horizontal
    propagation, evaluation, vertical propagation, evaluation; then the range becomes
    ``offset +/- window / 2``. Every step is differentiable (soft mode).

    Parameters (keyword-only; defaults are the reference configuration)
    ----------
    sample_count : int
        ``k``; ``(k+1)^2`` particles per pixel and iteration.
    iterations : int
        Number of unrolled iterations.
    temperature : float
        Softmax temperature on the mean-L1 scores (``1e10`` is practically hard).
    window : (int, int)
        ``(height, width)`` of the search window, in pixels, centred on the current offset.
    patch_size : int
        Side of the default neighbourhood features (ignored by custom ``features``).
    evaluation : {"soft", "hard"}
        Softmax-weighted offset, or the argmax candidate.
    reference_quirks : bool
        Reproduce the reference's quirks: B sampled with coordinates normalised by A's size (and
        ``align_corners=False``), missing neighbours propagate offset 0, base y clamped with the
        width, offset range ``[-Wa, Wa] x [-Ha, Ha]``, same noise for x and y samples.
    materialize : bool
        Evaluate exactly as the reference: build the features of B and ``grid_sample`` them per
        particle (``K x F x H x W`` memory). Default: the fused (default features) or tiled path.
    features : nn.Module, optional
        Maps ``(N, C, H, W)`` images to ``(N, F, H, W)`` features; default
        :class:`NeighbourhoodFeatures` ``(patch_size)``.
    keep_current : bool
        Also keep the current offset as a candidate after the first iteration (not in the reference).

    Shape:
        - a: ``(N, C, Ha, Wa)``; b: ``(N, C, Hb, Wb)``, same device and dtype
        - output: ``(N, 2, Ha, Wa)``: absolute ``(y, x)`` pixel coordinates in B

    Conventions (defaults): B is searched at its own size. A pixel's offset range is the set of
    offsets whose match lies in B (``x - dx in [0, Wb - 1]``, ``y - dy in [0, Hb - 1]``), initially all
    of B, then ``offset +/- window / 2`` intersected with it; evaluated points are clamped to B and
    the returned positions are the evaluated points. Propagation's border rule: a missing neighbour
    is replaced by the pixel's own particles. See ``docs/diff_pm.md``.
    """

    def __init__(self, *, sample_count: int = 1, iterations: int = 21, temperature: float = 1e10,
                 window: tuple[int, int] = (100, 100), patch_size: int = 7, evaluation: str = "soft",
                 reference_quirks: bool = False, materialize: bool = False, features: nn.Module | None = None,
                 keep_current: bool = False):
        super().__init__()
        if int(iterations) != iterations or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations}")
        if len(tuple(window)) != 2 or min(window) <= 0:
            raise ValueError(f"window must be two positive numbers (height, width), got {window}")
        if int(patch_size) != patch_size or patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd integer, got {patch_size}")
        if features is not None and not isinstance(features, nn.Module):
            raise ValueError(f"features must be an nn.Module, got {type(features).__name__}")
        self.iterations = int(iterations)
        self.window = (float(window[0]), float(window[1]))
        self.reference_quirks = bool(reference_quirks)
        self.materialize = bool(materialize)
        self.keep_current = bool(keep_current)
        self.features = features if features is not None else NeighbourhoodFeatures(patch_size)
        self._fused = type(self.features) is NeighbourhoodFeatures and not self.materialize
        scoring = "patch" if self._fused else ("materialize" if self.materialize else "tiled")
        # the fused scorer may share work between the three pixels that receive each propagated particle
        self._share = self._fused and not self.reference_quirks
        self.sampler = ParticleSampler(sample_count, shared_noise=self.reference_quirks)
        particles = (int(sample_count) + 1) ** 2 + int(self.keep_current)
        self.propagation = Propagation(particles, border="zeros" if self.reference_quirks else "replicate")
        self.evaluation = Evaluation(temperature=temperature, mode=evaluation, scoring=scoring,
                                     patch_size=getattr(self.features, "patch_size", patch_size),
                                     reference_quirks=self.reference_quirks)

    def _bounds(self, size_a, size_b, like):
        """Per-pixel offset bounds ``(min_x, max_x, min_y, max_y)``, each broadcastable to (N, 1, Ha, Wa).

        Default: the offsets whose match lies inside B, ``x - dx in [0, Wb - 1]``, ``y - dy in [0, Hb - 1]``.
        Quirks: the reference's ``[-Wa, Wa] x [-Ha, Ha]``.
        """
        (ha, wa), (hb, wb) = size_a, size_b
        if self.reference_quirks:
            return -wa, wa, -ha, ha
        x, y = pixel_grid(ha, wa, like=like)
        return x - (wb - 1), x, y - (hb - 1), y

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, generator=None,
                callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Match every pixel of ``a`` to a position in ``b``.

        Parameters
        ----------
        a, b : Tensor, ``(N, C, Ha, Wa)`` and ``(N, C, Hb, Wb)``
        generator : torch.Generator or sequence of N generators, optional
            The only source of randomness (on the inputs' device); one per batch item makes each
            item's result independent of the batch. ``None``: torch's default generator.
        callback : callable, optional
            ``callback(iteration, positions)`` after every iteration (1-based), positions as returned.

        Returns
        -------
        Tensor, ``(N, 2, Ha, Wa)``: ``(y, x)`` pixel positions in B.
        """
        check_image(a, "a")
        check_image(b, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must have the same batch size, got {a.shape[0]} and {b.shape[0]}")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"a and b must have the same number of channels, got {a.shape[1]} and {b.shape[1]}")
        if a.device != b.device or a.dtype != b.dtype:
            raise ValueError(f"a and b must share device and dtype, got {a.device}/{a.dtype} and {b.device}/{b.dtype}")
        gens = [] if generator is None else ([generator] if isinstance(generator, torch.Generator) else list(generator))
        if not isinstance(generator, (type(None), torch.Generator)) and len(gens) != a.shape[0]:
            raise ValueError(f"generator must be a torch.Generator or one per batch item ({a.shape[0]}), got {len(gens)}")
        for g in gens:
            if not isinstance(g, torch.Generator) or torch.device(g.device).type != a.device.type:
                raise ValueError(f"generator must be a torch.Generator on {a.device.type}, got {g!r}")
        n, _, ha, wa = a.shape
        size_a, size_b = (ha, wa), tuple(b.shape[-2:])
        if self._fused:
            feat_a, feat_b = a, b
        else:
            feat_a, feat_b = self.features(a), self.features(b)
            if feat_a.dim() != 4 or feat_a.shape[-2:] != a.shape[-2:] or feat_b.shape[-2:] != b.shape[-2:]:
                raise ValueError(f"features must map (N, C, H, W) to (N, F, H, W), got {tuple(feat_a.shape)}")
        min_x, max_x, min_y, max_y = self._bounds(size_a, size_b, a)
        zeros = a.new_zeros(n, 1, ha, wa)
        lo_x, hi_x, lo_y, hi_y = zeros + min_x, zeros + max_x, zeros + min_y, zeros + max_y
        half_y, half_x = self.window[0] / 2, self.window[1] / 2
        dx = dy = None
        for iteration in range(1, self.iterations + 1):
            px, py = self.sampler(lo_x, hi_x, lo_y, hi_y, generator=generator)
            if self.keep_current and dx is not None:
                px, py = torch.cat((px, dx), 1), torch.cat((py, dy), 1)
            cx, cy = self.propagation(px, py, "horizontal")
            dx, dy = self.evaluation(feat_a, feat_b, cx, cy, source=(px, py, "horizontal") if self._share else None)
            cx, cy = self.propagation(dx, dy, "vertical")
            dx, dy = self.evaluation(feat_a, feat_b, cx, cy, source=(dx, dy, "vertical") if self._share else None)
            lo_x = torch.clamp(dx - half_x, min_x, max_x)
            hi_x = torch.clamp(dx + half_x, min_x, max_x)
            lo_y = torch.clamp(dy - half_y, min_y, max_y)
            hi_y = torch.clamp(dy + half_y, min_y, max_y)
            if callback is not None:
                callback(iteration, self.positions(dx, dy, size_a, size_b))
        return self.positions(dx, dy, size_a, size_b)

    def positions(self, dx, dy, size_a, size_b) -> torch.Tensor:
        """Offsets ``(N, 1, Ha, Wa)`` -> positions ``(N, 2, Ha, Wa)`` ``(y, x)`` in B (the evaluated point)."""
        bx, by = particle_positions(dx, dy, size_a, size_b, reference_quirks=self.reference_quirks)
        return torch.cat((by, bx), dim=1)
