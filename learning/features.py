"""Learnt features for Differentiable PatchMatch, and the DPM that scores with them.

The fixed DPM features stack each pixel's 7 x 7 RGB neighbourhood into 147 channels and score a
particle by ``-mean_c |f_A - f_B|``. :class:`LearnedFeatures` keeps the same 7 x 7 receptive field
but learns what to compare:

* ``proj``: a 7 x 7 convolution 3 -> F (F = 16 by default). Initialised as a random Gaussian
  projection of the 147-dimensional neighbourhood, so that before any training the mean L1
  distance of the features is roughly proportional to the L2 distance of the raw patches
  (Johnson-Lindenstrauss); training starts from a sensible matcher, not from noise.
* a residual 1 x 1 MLP (F -> H -> F, leaky ReLU), its output layer initialised small, so the
  extractor starts close to the pure projection and learns non-linear corrections.
* ``log_temperature``: the softmax temperature, log-parameterised (always positive). The features
  are multiplied by ``exp(log_temperature)`` and DPM runs with ``temperature = 1``, which gives
  exactly DPM's ``temperature * mean_c(-|f_A - f_B|)`` scores with a learnable temperature.

About 3k parameters by default; runs on CPU. :func:`build_model` wraps them in a ready-to-run
:class:`diff_pm.DifferentiablePatchMatch`; :mod:`learning.checkpoint` stores and rebuilds it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import diff_pm

from .nets import add_log_temperature

__all__ = ["LearnedFeatures", "FeatureMapDPM", "build_model", "count_parameters", "feature_config",
           "REFERENCE_TEMPERATURE", "PATCH_SIZE"]

#: DPM's reference temperature (practically an argmax); the fixed-feature ``dpm`` runs with it.
REFERENCE_TEMPERATURE = 1e10
#: Patch side of the learnt DPM: the features' receptive field, DPM's patch and the voting
#: reconstruction of training and held-out evaluation (7, as DPM's reference).
PATCH_SIZE = 7


class LearnedFeatures(nn.Module):
    """Learnt per-pixel features for DPM: ``(N, C, H, W)`` images -> ``(N, F, H, W)`` features.

    Parameters (keyword-only)
    ----------
    in_channels : int
        Image channels (3 for RGB).
    channels : int
        ``F``, output feature channels.
    hidden : int
        Width of the residual 1 x 1 MLP (0 disables it: a purely linear projection).
    patch_size : int
        Odd side of the projection's receptive field (7, like the fixed features).
    temperature : float
        Initial softmax temperature (> 0); learnt as ``log_temperature``.
    learn_temperature : bool
        Whether ``log_temperature`` is a trainable parameter (else a fixed buffer).
    generator : torch.Generator, optional
        Source of the initial weights (CPU generator); ``None`` uses torch's default generator.

    Shape:
        - input: ``(N, in_channels, H, W)``
        - output: ``(N, channels, H, W)``, already multiplied by the temperature

    Border: the projection reads replicate-padded images (no dark frame at the border).
    """

    def __init__(self, *, in_channels: int = 3, channels: int = 16, hidden: int = 16, patch_size: int = PATCH_SIZE,
                 temperature: float = 50.0, learn_temperature: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd integer, got {patch_size}")
        if min(in_channels, channels) < 1 or hidden < 0:
            raise ValueError(f"in_channels and channels must be >= 1 and hidden >= 0, got "
                             f"{in_channels}, {channels}, {hidden}")
        self.in_channels, self.channels, self.hidden = int(in_channels), int(channels), int(hidden)
        self.patch_size = int(patch_size)
        self.proj = nn.Conv2d(in_channels, channels, patch_size, padding=patch_size // 2,
                              padding_mode="replicate")
        if hidden:
            self.mlp_in = nn.Conv2d(channels, hidden, 1)
            self.mlp_out = nn.Conv2d(hidden, channels, 1)
        add_log_temperature(self, temperature, learn_temperature)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Random projection (std ``1/sqrt(fan_in)``, zero bias); MLP in: std ``1/sqrt(F)``; MLP out: 10x smaller
        (a small residual, so the extractor starts close to the projection yet every weight gets gradient)."""
        fan_in = self.in_channels * self.patch_size ** 2
        self.proj.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
        self.proj.bias.zero_()
        if self.hidden:
            self.mlp_in.weight.normal_(0.0, 1.0 / math.sqrt(self.channels), generator=generator)
            self.mlp_in.bias.zero_()
            self.mlp_out.weight.normal_(0.0, 0.1 / math.sqrt(self.hidden), generator=generator)
            self.mlp_out.bias.zero_()

    @property
    def area(self) -> int:
        """Side (px) of the image area one feature vector depends on (the projection's receptive field)."""
        return self.patch_size

    @property
    def temperature(self) -> float:
        """Current softmax temperature ``exp(log_temperature)``."""
        return float(self.log_temperature.detach().exp())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"image must have shape (N, {self.in_channels}, H, W), got {tuple(image.shape)}")
        h = self.proj(image)
        if self.hidden:
            h = h + self.mlp_out(F.leaky_relu(self.mlp_in(h), 0.1))
        return h * self.log_temperature.exp().to(h.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, patch_size={self.patch_size}"


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def feature_config(features: LearnedFeatures) -> dict:
    """Constructor arguments of ``features`` (plain types, for the checkpoint)."""
    return dict(in_channels=features.in_channels, channels=features.channels, hidden=features.hidden,
                patch_size=features.patch_size, learn_temperature=isinstance(features.log_temperature, nn.Parameter))


#: The search of a learnt-feature model unless a checkpoint says otherwise: DPM's default search (that of
#: the fixed-feature ``dpm``, so that the two differ only in their features); saved in every checkpoint.
SEARCH_DEFAULTS = dict(sample_count=1, window=[100, 100], keep_current=False, noise="shared", search_range="full",
                       outside="clamp")


class FeatureMapDPM(nn.Module):
    """DPM on the feature maps of learnt features: ``dpm(features(a), features(b))``.

    The scores are those of ``DifferentiablePatchMatch(features=features)`` (``-mean_c |f_A - f_B|``
    over the feature channels at one point), computed by DPM's fused scoring with patch 1 on the
    maps instead of its tiled path: no ``K x F x H x W`` tiles (about 30x faster for 400-channel
    features at 200 px). ``dpm`` is a :class:`diff_pm.DifferentiablePatchMatch` with ``patch_size=1``
    and default features; its attributes (``iterations``, ``window``, ``horizontal`` ...) read
    through. :meth:`reconstruct` votes ``patch_size`` x ``patch_size`` patches (the voting patch,
    7), :meth:`matches` is the DPM's.

    Shape: as :class:`diff_pm.DifferentiablePatchMatch` (``a``, ``b``: images ``(N, 3, H, W)``).
    """

    def __init__(self, features: nn.Module, dpm, *, patch_size: int = PATCH_SIZE):
        super().__init__()
        self.features, self.dpm, self.patch_size = features, dpm, int(patch_size)

    def forward(self, a, b, *, generator=None, callback=None):
        return self.dpm(self.features(a), self.features(b), generator=generator, callback=callback)

    def matches(self, positions, size_b):
        return self.dpm.matches(positions, size_b)

    def reconstruct(self, b, positions, *, patch_size: int | None = None):
        return self.dpm.reconstruct(b, positions, patch_size=self.patch_size if patch_size is None else patch_size)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("dpm"), name)


def build_model(features: nn.Module, *, iterations: int, evaluation: str = "soft",
                temperature: float = 1.0, patch_size: int = PATCH_SIZE, **options):
    """A DPM that scores with ``features``: :class:`diff_pm.DifferentiablePatchMatch` with
    ``features=`` for :class:`LearnedFeatures` (the earlier checkpoints, unchanged), a
    :class:`FeatureMapDPM` (the same scores, DPM's fast path) for any other features.

    ``temperature`` multiplies the features' own (learnt) temperature: 1 (default) runs at the learnt
    temperature, :data:`REFERENCE_TEMPERATURE` runs practically hard like the fixed-feature ``dpm``.
    The search is :data:`SEARCH_DEFAULTS` unless ``options`` say otherwise; ``options`` may be any
    other keyword of :class:`diff_pm.DifferentiablePatchMatch` too (``quirks``, ``materialize`` ...;
    an unknown one is its ``TypeError``). Checkpoints written before ``noise``, ``search_range`` and
    ``outside`` existed do not name them and run with these defaults.
    """
    if "features" in options:
        raise TypeError("build_model() got an unexpected keyword argument 'features' (pass them first)")
    conf = {**SEARCH_DEFAULTS, **options}
    conf = dict(conf, window=tuple(conf["window"]), iterations=iterations, temperature=temperature,
                evaluation=evaluation)
    if isinstance(features, LearnedFeatures):
        return diff_pm.DifferentiablePatchMatch(patch_size=patch_size, features=features, **conf)
    return FeatureMapDPM(features, diff_pm.DifferentiablePatchMatch(patch_size=1, **conf), patch_size=patch_size)
