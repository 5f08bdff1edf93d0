"""Feature sets: what a matcher compares, as an input of every matcher.

A *feature set* maps an image ``(H, W, 3)`` to per-pixel features ``(H, W, F)`` (float32); a
matcher (classic PatchMatch, the exact NNF, DPM) then compares features instead of RGB patches,
while the reconstruction always votes RGB patches of B at the matches (so PSNR compares across
feature sets). The feature sets of the suite:

* ``raw``: the RGB image itself, matched with ``p x p`` patches (the classic ``pm``);
* ``normalised``: every pixel's ``s x s`` RGB neighbourhood (edge-replicated at the border) as one
  vector of ``s*s*3`` values, minus its mean, divided by its standard deviation plus ``eps``
  (:func:`normalised_patches`); matched pixel by pixel (patch 1), so the matcher sees an ``s x s``
  area. Invariant to a gain and bias change of the image (exactly when ``eps = 0``): the
  hand-crafted control for photometric changes;
* ``learned``: the features of a checkpoint (any ``torch.nn.Module`` mapping ``(N, 3, H, W)`` to
  ``(N, F, H, W)``; :func:`module_features`), matched pixel by pixel. The module says which area it
  sees (:func:`feature_area`: its ``area`` attribute, e.g. the receptive field plus the stacked
  matching patch), so ``normalised`` can be given the same area.

:func:`feature_function` builds the function of a named feature set; the timed runs of
:mod:`experiments.methods.timed` take it as ``features=`` (computed inside the timed region: the
features are part of the method's cost).

May import: the foundation, ``classic_pm``/``diff_pm`` through :mod:`.timed`, torch (deferred).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import UserError

__all__ = ["FEATURE_SETS", "NORMALISED_EPS", "normalised_patches", "module_features", "feature_area",
           "feature_function"]

#: The named feature sets of the registry's ``features`` parameter.
FEATURE_SETS = ("raw", "normalised", "learned")
#: ``eps`` of :func:`normalised_patches`: about the noise level of the synthetic pairs (std 0.01),
#: so that flat patches (pure noise) are shrunk instead of blown up to unit variance.
NORMALISED_EPS = 0.01


def normalised_patches(image: np.ndarray, *, size: int, eps: float = NORMALISED_EPS) -> np.ndarray:
    """Mean/std-normalised ``size x size`` patches of every pixel, stacked into channels.

    Parameters
    ----------
    image : ndarray, shape (H, W, C), float
    size : int
        Odd side of the patch (the area the matcher sees).
    eps : float
        Added to the standard deviation (>= 0); 0 makes the result exactly invariant to
        ``gain * image + bias`` for any gain > 0 (flat patches then divide by zero: use eps > 0).

    Returns
    -------
    ndarray, shape (H, W, size*size*C), float32
        Channel ``c * size*size + t`` is channel c of tap t (row-major in the patch) of the
        edge-replicated image, minus the patch's mean over all taps and channels, divided by
        (their standard deviation + eps).
    """
    import torch  # deferred: heavy import
    import torch.nn.functional as F

    size = int(size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W, C), got {image.shape}")
    h, w, c = image.shape
    r = size // 2
    t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
    if r:
        t = F.pad(t.double(), (r, r, r, r), mode="replicate")
    cols = F.unfold(t.double(), size)[0]                         # (C*size*size, H*W)
    cols = cols - cols.mean(0, keepdim=True)
    cols = cols / (cols.pow(2).mean(0, keepdim=True).sqrt() + eps)
    return np.ascontiguousarray(cols.T.reshape(h, w, c * size * size).numpy().astype(np.float32))


def module_features(module, *, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """``features(image) -> (H, W, F)`` float32 of a torch module ``(N, 3, H, W) -> (N, F, H, W)``
    (run in eval mode without gradients on ``device``)."""
    import torch  # deferred: heavy import

    module = module.to(device).eval()

    def features(image: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(image, np.float32).transpose(2, 0, 1)))[None]
        with torch.no_grad():
            out = module(t.to(device))
        return np.ascontiguousarray(out[0].permute(1, 2, 0).to("cpu", torch.float32).numpy())

    return features


def feature_area(module) -> int:
    """The side (pixels) of the square area of the image that one feature vector of ``module``
    depends on: its ``area`` attribute (learnt features declare it)."""
    area = getattr(module, "area", None)
    if area is None:
        raise ValueError(f"{type(module).__name__} does not declare the area its features see (attribute 'area')")
    return int(area)


def feature_function(kind: str, *, module=None, area: int | None = None, patch_size: int = 7,
                     device: str = "cpu", eps: float = NORMALISED_EPS):
    """The function of a named feature set (:data:`FEATURE_SETS`), or None for ``raw``.

    ``module``: the learnt features (``learned``; for ``normalised`` it gives the default area).
    ``area``: side of the normalised patches (default: the module's area, else ``patch_size``).
    Returns ``(function, area)``: ``function(image) -> (H, W, F)`` and the side of the area it
    sees (``patch_size`` for raw patches). Raises :class:`UserError` for a set that cannot be built.
    """
    if kind == "raw":
        return None, int(patch_size)
    if kind == "learned":
        if module is None:
            raise UserError("features='learned' needs a checkpoint (the learnt features)")
        return module_features(module, device=device), feature_area(module)
    if kind == "normalised":
        side = int(area) if area else (feature_area(module) if module is not None else int(patch_size))
        if side < 1 or side % 2 == 0:
            raise UserError(f"area must be a positive odd integer, got {side}")
        return (lambda image: normalised_patches(image, size=side, eps=eps)), side
    raise UserError(f"features must be one of {', '.join(FEATURE_SETS)}, got {kind!r}")
