"""Learnt matching features with a receptive field wider than a pixel: small dilated convolution nets.

:class:`ConvFeatures` maps an image to one unit-length descriptor per pixel (three 3 x 3
convolutions with ReLUs in between, replicate padding), optionally stacks each pixel's
``match_patch x match_patch`` neighbourhood of descriptors into its feature vector (the matching
patch: a matcher comparing the stacked vectors pixel by pixel compares descriptor patches), and
scales it by a temperature (DPM's score is ``-temperature * mean |f_A - f_B|``; a global scale
changes no argmin, so the exact NNF and classic PatchMatch ignore it).

Receptive fields (:data:`NETS`): ``rf7`` (dilations 1, 1, 1: 7 x 7 pixels) and ``rf15`` (dilations
1, 2, 4: 15 x 15 pixels), the same number of weights. The *area* a feature vector sees is
``receptive_field + match_patch - 1`` pixels on a side (:attr:`ConvFeatures.area`): the side of the
normalised patches it is compared with.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NETS", "ConvFeatures", "stack_neighbourhood"]

#: Dilations of the three 3 x 3 convolutions of each net, by name.
NETS = {"rf7": (1, 1, 1), "rf15": (1, 2, 4)}


def stack_neighbourhood(features: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Each pixel's ``p x p`` neighbourhood of ``features`` stacked into channels (edge-replicated).

    Shape:
        - features: ``(N, F, H, W)``
        - output: ``(N, F*p*p, H, W)``; channel ``f*p*p + t`` is channel f at tap t (row-major)
    """
    if patch_size == 1:
        return features
    n, c, h, w = features.shape
    r = patch_size // 2
    padded = F.pad(features, (r, r, r, r), mode="replicate")
    return F.unfold(padded, patch_size).view(n, c * patch_size * patch_size, h, w)


def add_log_temperature(module: nn.Module, temperature: float, learn: bool) -> None:
    """Give ``module`` its ``log_temperature``: the log of a softmax temperature (a finite number
    > 0), a trainable parameter when ``learn``, else a fixed buffer."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    log_t = torch.tensor(math.log(temperature), dtype=torch.float32)
    if learn:
        module.log_temperature = nn.Parameter(log_t)
    else:
        module.register_buffer("log_temperature", log_t)


class ConvFeatures(nn.Module):
    """Learnt per-pixel features: ``(N, C, H, W)`` images -> ``(N, F*p*p, H, W)`` features.

    Parameters (keyword-only)
    ----------
    net : {"rf7", "rf15"}
        Receptive field (:data:`NETS`).
    in_channels : int
        Image channels (3).
    channels : int
        ``F``: descriptor channels.
    hidden : int
        Width of the two hidden layers.
    match_patch : int
        Odd side ``p`` of the stacked neighbourhood (1: the descriptor itself).
    temperature : float
        Initial scale (> 0), log-parameterised.
    learn_temperature : bool
        Whether the temperature is trained (else a fixed buffer).
    generator : torch.Generator, optional
        Source of the initial weights (He-normal, zero biases); None: torch's default generator.

    Shape:
        - input: ``(N, in_channels, H, W)`` in [0, 1]
        - :meth:`descriptors`: ``(N, F, H, W)``, unit L2 norm per pixel
        - output: ``(N, F * p * p, H, W)``, times the temperature
    """

    def __init__(self, *, net: str = "rf15", in_channels: int = 3, channels: int = 16, hidden: int = 32,
                 match_patch: int = 1, temperature: float = 1.0, learn_temperature: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"net must be one of {', '.join(NETS)}, got {net!r}")
        if match_patch < 1 or match_patch % 2 == 0:
            raise ValueError(f"match_patch must be a positive odd integer, got {match_patch}")
        if min(in_channels, channels, hidden) < 1:
            raise ValueError(f"in_channels, channels and hidden must be >= 1, got {in_channels}, {channels}, {hidden}")
        self.net, self.dilations = net, NETS[net]
        self.in_channels, self.channels, self.hidden = int(in_channels), int(channels), int(hidden)
        self.match_patch = int(match_patch)
        widths = (self.in_channels, self.hidden, self.hidden, self.channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, padding=d, dilation=d, padding_mode="replicate")
            for i, d in enumerate(self.dilations))
        add_log_temperature(self, temperature, learn_temperature)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """He-normal weights (std ``sqrt(2 / fan_in)``), zero biases."""
        for conv in self.convs:
            fan_in = conv.in_channels * 9
            conv.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            conv.bias.zero_()

    @property
    def receptive_field(self) -> int:
        """Side (px) of the image area one descriptor depends on: ``1 + 2 * sum(dilations)``."""
        return 1 + 2 * sum(self.dilations)

    @property
    def area(self) -> int:
        """Side (px) of the image area one feature vector depends on (descriptor patch included)."""
        return self.receptive_field + self.match_patch - 1

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().exp())

    def descriptors(self, image: torch.Tensor) -> torch.Tensor:
        """Unit-length descriptors ``(N, F, H, W)`` (no stacking, no temperature)."""
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"image must have shape (N, {self.in_channels}, H, W), got {tuple(image.shape)}")
        h = image - 0.5
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        return F.normalize(h, dim=1, eps=1e-6)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = stack_neighbourhood(self.descriptors(image), self.match_patch)
        return out * self.log_temperature.exp().to(out.dtype)

    def config(self) -> dict:
        """Constructor arguments (plain types, for the checkpoint)."""
        return dict(kind="conv", net=self.net, in_channels=self.in_channels, channels=self.channels,
                    hidden=self.hidden, match_patch=self.match_patch,
                    learn_temperature=isinstance(self.log_temperature, nn.Parameter))

    def extra_repr(self) -> str:
        return (f"net={self.net!r} (receptive field {self.receptive_field}), channels={self.channels}, "
                f"hidden={self.hidden}, match_patch={self.match_patch}")
