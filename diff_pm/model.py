"""DifferentiablePatchMatch: the unrolled recurrent network (sampling, propagation, evaluation)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._common import QUIRKS, Frame, check_choice, check_image, check_int, check_patch_size, check_quirks
from .evaluation import MODES, PropagateEvaluate
from .features import NeighbourhoodFeatures
from .reconstruction import reconstruct
from .sampling import ParticleSampler

__all__ = ["DifferentiablePatchMatch", "NOISES", "SEARCH_RANGES", "OUTSIDES"]

NOISES = ("shared", "independent")
SEARCH_RANGES = ("full", "inside")
OUTSIDES = ("clamp", "reflect")


class DifferentiablePatchMatch(nn.Module):
    """Differentiable PatchMatch (Duggal et al., DeepPruner, ICCV 2019) for a pair of images.

    One iteration: sample ``(k+1)^2`` particles in each pixel's offset range, horizontal
    propagation and evaluation, vertical propagation and evaluation; then the range becomes
    ``offset +/- window / 2``. Every step is differentiable (soft mode).

    Parameters (keyword-only; defaults are the reference configuration with its quirks fixed)
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
        Side of the default neighbourhood features (ignored by custom ``features``) and of the
        voting in :meth:`reconstruct`.
    evaluation : {"soft", "hard"}
        Softmax-weighted offset, or the argmax candidate.
    noise : {"shared", "independent"}
        ``"shared"`` (the reference, as it was run): one uniform draw per interval serves the x and the
        y sample, so the diagonal particles of the window around the current offset fall near it now
        and then (a weak memory of the current offset); ``"independent"``: separate draws.
    search_range : {"full", "inside"}
        The offset range: ``"full"`` (DESIGN, the reference): ``[-W, W] x [-H, H]`` (W, H: the larger of
        A's and B's sizes; A's with the ``a_frame`` quirk), the window ``offset +/- window / 2`` clamped
        to it; ``"inside"``: the offsets whose point lies in B, windows truncated there.
    outside : {"clamp", "reflect"}
        Sampled particles whose point lies outside B (the full range puts about three in four of
        iteration 1's there): ``"clamp"`` (the reference) evaluates them at the nearest border point;
        ``"reflect"`` (not in the reference) mirrors them into B at its border first, so every sampled
        particle is a point of B (a neighbour's, handed over by propagation, can lie a pixel outside)
        and the window stays centred. It lowers the reconstruction's L1 and
        MSE, not the end-point error (``docs/diff_pm.md``).
    quirks : collection of str
        The reference's quirks to reproduce, by name (:data:`diff_pm.QUIRKS`, ``docs/diff_pm.md``):
        ``"zero_border"`` (missing neighbours propagate offset 0), ``"y_clamp_width"`` (base y clamped
        with the width), ``"a_frame"`` (points clamped to A's extents and scaled by B's size / A's
        size), ``"half_pixel"`` (points shifted by -0.5 px, reading zeros past B's border).
    reference_quirks : bool
        Shorthand for all quirks (``quirks`` is then ignored): with the default ``noise`` and
        ``search_range`` it reproduces the reference end to end.
    materialize : bool
        Evaluate exactly as the reference: build the features of B and ``grid_sample`` them per
        particle (``K x F x H x W`` memory). Default: the fused (default features) or tiled path.
    features : nn.Module, optional
        Maps ``(N, C, H, W)`` images to ``(N, F, H, W)`` features; default
        :class:`NeighbourhoodFeatures` ``(patch_size=patch_size)``.
    keep_current : bool
        Also keep the current offset as a candidate after the first iteration (not in the reference).

    Shape:
        - a: ``(N, C, Ha, Wa)``; b: ``(N, C, Hb, Wb)``, same device and dtype
        - output: ``(N, 2, Ha, Wa)``: ``(y, x)`` pixel coordinates in B of the points the offsets
          designate (:meth:`matches` gives the points the evaluation compared; :meth:`reconstruct`
          rebuilds A from them)

    Conventions (defaults): B is searched at its own size; an offset's point is evaluated clamped to
    B. Propagation's border rule: a missing neighbour is replaced by the pixel's own particles. See
    ``docs/diff_pm.md``.
    """

    def __init__(self, *, sample_count: int = 1, iterations: int = 21, temperature: float = 1e10,
                 window: tuple[int, int] = (100, 100), patch_size: int = 7, evaluation: str = "soft",
                 noise: str = "shared", search_range: str = "full", outside: str = "clamp", quirks=(),
                 reference_quirks: bool = False,
                 materialize: bool = False,
                 features: nn.Module | None = None, keep_current: bool = False):
        super().__init__()
        self.iterations = check_int(iterations, "iterations")
        sample_count = check_int(sample_count, "sample_count")
        self.patch_size = check_patch_size(patch_size)
        check_choice(evaluation, "evaluation", MODES)
        self.noise = check_choice(noise, "noise", NOISES)
        self.search_range = check_choice(search_range, "search_range", SEARCH_RANGES)
        self.outside = check_choice(outside, "outside", OUTSIDES)
        try:
            window = tuple(window)
            ok = len(window) == 2 and all(float(w) > 0 for w in window)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"window must be two positive numbers (height, width), got {window!r}")
        if features is not None and not isinstance(features, nn.Module):
            raise ValueError(f"features must be an nn.Module, got {type(features).__name__}")
        self.quirks = frozenset(QUIRKS) if reference_quirks else check_quirks(quirks)
        self.frame = Frame.from_quirks(self.quirks)
        self.window = (float(window[0]), float(window[1]))
        self.materialize = bool(materialize)
        self.keep_current = bool(keep_current)
        self.features = features if features is not None else NeighbourhoodFeatures(patch_size=self.patch_size)
        self._fused = type(self.features) is NeighbourhoodFeatures and not self.materialize
        scoring = "patch" if self._fused else ("materialize" if self.materialize else "tiled")
        self.sampler = ParticleSampler(sample_count=sample_count, shared_noise=self.noise == "shared")
        step = dict(border="zeros" if "zero_border" in self.quirks else "replicate", temperature=temperature,
                    mode=evaluation, scoring=scoring, patch_size=getattr(self.features, "patch_size", self.patch_size),
                    quirks=self.frame_quirks)
        self.horizontal = PropagateEvaluate(direction="horizontal", **step)
        self.vertical = PropagateEvaluate(direction="vertical", **step)

    @property
    def reference_quirks(self) -> bool:
        """True when this model is the reference end to end (every quirk, shared noise, full range,
        particles outside B clamped)."""
        return (self.quirks == frozenset(QUIRKS) and self.noise == "shared" and self.search_range == "full"
                and self.outside == "clamp")

    @property
    def frame_quirks(self) -> tuple[str, ...]:
        """The quirks that change where offsets point (they apply to :meth:`reconstruct` too)."""
        return self.frame.quirks

    def _bounds(self, size_a, size_b, like):
        """Per-pixel offset bounds ``(min_x, max_x, min_y, max_y)``, each broadcastable to (N, 1, Ha, Wa).

        ``"full"``: ``[-W, W] x [-H, H]``, the larger of A's and B's sizes (A's with ``a_frame``: the
        reference's range). ``"inside"``: the offsets whose point lies in the image, ``x - dx in [0, Lx]``,
        ``ybase - dy in [0, Ly]`` (``L`` = B's size - 1; A's with ``a_frame``).
        """
        (ha, wa), (hb, wb) = size_a, size_b
        if self.search_range == "full":
            h, w = (ha, wa) if self.frame.a_frame else (max(ha, hb), max(wa, wb))
            return -w, w, -h, h
        ly, lx = self.frame.limits(size_a, size_b)
        x, y = self.frame.base(size_a, like=like)
        return x - lx, x, y - ly, y

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
            if self.outside == "reflect":
                px, py = self.frame.reflect(px, py, size_a, size_b)
            if self.keep_current and dx is not None:
                px, py = torch.cat((px, dx), 1), torch.cat((py, dy), 1)
            dx, dy = self.horizontal(feat_a, feat_b, px, py)
            dx, dy = self.vertical(feat_a, feat_b, dx, dy)
            lo_x = torch.clamp(dx - half_x, min_x, max_x)
            hi_x = torch.clamp(dx + half_x, min_x, max_x)
            lo_y = torch.clamp(dy - half_y, min_y, max_y)
            hi_y = torch.clamp(dy + half_y, min_y, max_y)
            if callback is not None:
                callback(iteration, self._positions(dx, dy, size_a, size_b))
        return self._positions(dx, dy, size_a, size_b)

    def _positions(self, dx, dy, size_a, size_b) -> torch.Tensor:
        """Offsets ``(N, 1, Ha, Wa)`` -> positions ``(N, 2, Ha, Wa)``: ``(y, x)`` points in B, not clamped."""
        bx, by = self.frame.points(dx, dy, size_a, size_b, evaluated=False)
        return torch.cat((by, bx), dim=1)

    def matches(self, positions: torch.Tensor, size_b: tuple[int, int]) -> torch.Tensor:
        """The points of B the evaluation compared: ``positions`` clamped as this model clamps them
        (to B; to A's extents mapped into B with the ``a_frame`` quirk: the reference's matches).

        Shape: positions ``(N, 2, Ha, Wa)`` -> ``(N, 2, Ha, Wa)``; ``size_b = (Hb, Wb)``.
        """
        check_image(positions, "positions", channels=2)
        size_a = tuple(positions.shape[-2:])
        bx, by = self.frame.evaluated(positions[:, 1:2], positions[:, 0:1], size_a, tuple(size_b))
        return torch.cat((by, bx), dim=1)

    def reconstruct(self, b: torch.Tensor, positions: torch.Tensor, *, patch_size: int | None = None) -> torch.Tensor:
        """Rebuild A from B by patch voting, with this model's conventions.

        :func:`diff_pm.reconstruct` with this model's frame quirks (none by default: then identical to
        ``diff_pm.reconstruct(b, positions, patch_size=...)``); with ``reference_quirks=True`` exactly the
        reference's reconstruction. ``patch_size`` defaults to the model's.

        Shape: b ``(N, C, Hb, Wb)``, positions ``(N, 2, Ha, Wa)`` -> ``(N, C, Ha, Wa)``.
        """
        return reconstruct(b, positions, patch_size=self.patch_size if patch_size is None else patch_size,
                           quirks=self.frame_quirks)

    def extra_repr(self) -> str:
        quirks = "all (reference)" if self.reference_quirks else (", ".join(sorted(self.quirks)) or "none")
        return (f"iterations={self.iterations}, window={self.window}, noise={self.noise!r}, "
                f"search_range={self.search_range!r}, outside={self.outside!r}, keep_current={self.keep_current}, "
                f"materialize={self.materialize}, quirks={quirks}")
