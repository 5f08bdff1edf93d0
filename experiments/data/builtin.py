"""The built-in pairs: no download, scikit-image ships the images.

* ``motorcycle``: the Middlebury 2014 stereo pair (A = left, B = right) with its ground-truth
  disparity d: ``x_B = x_A - d``, ``y_B = y_A``; non-finite disparities are invalid.
* ``astronaut``, ``coffee``, ``chelsea``, ``rocket``: B is A under a fixed, known warp
  (similarity or homography) plus a global gain/bias change and seeded Gaussian noise. The warps
  move pixels by about a fifth of the image's longer side on average (translations of 0.3 half
  sides, plus rotation, scale and perspective), so that matching, not the prior of zero motion,
  decides the end-point error: predicting no motion scores several times worse than PatchMatch.
* ``astronaut-small`` ... ``rocket-small``: the earlier warps (a few percent of the image), kept
  under their own names for results made with them; not among the default pairs.

The training images (``camera``, ``immunohistochemistry``, ``hubble_deep_field`` ...) are kept out
of the built-in pairs so that they stay held-out for learnt features.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..errors import UserError
from .images import downscale, to_rgb_float
from .pairs import Pair, displacement_to_gt, resize_pair, warp_matrix, warp_pair


# Fixed warps of the synthetic built-in pairs, in normalised coordinates (origin at the image
# centre, unit = half the longer side), so that a pair looks the same at every --max-size.
# rotation in degrees, translation (ty, tx) in normalised units, perspective (py, px).
_SYNTHETIC = {
    "astronaut": dict(source="astronaut", rotation=4.0, scale=1.06, translation=(0.3, -0.3),
                      perspective=(0.0, 0.0), gain=1.04, bias=-0.015, noise_std=0.01),
    "coffee": dict(source="coffee", rotation=-3.0, scale=0.95, translation=(-0.3, 0.3),
                   perspective=(0.04, -0.05), gain=0.96, bias=0.01, noise_std=0.01),
    "chelsea": dict(source="chelsea", rotation=-7.0, scale=1.0, translation=(0.3, 0.3),
                    perspective=(0.0, 0.0), gain=1.025, bias=0.005, noise_std=0.01),
    "rocket": dict(source="rocket", rotation=2.0, scale=1.1, translation=(-0.3, -0.3),
                   perspective=(-0.05, 0.03), gain=0.975, bias=0.015, noise_std=0.01),
    # the warps of the built-in pairs before real motion (up to 5% of the half side)
    "astronaut-small": dict(source="astronaut", rotation=4.0, scale=1.06, translation=(0.03, -0.04),
                            perspective=(0.0, 0.0), gain=1.08, bias=-0.03, noise_std=0.01),
    "coffee-small": dict(source="coffee", rotation=-3.0, scale=0.95, translation=(-0.02, 0.03),
                         perspective=(0.04, -0.05), gain=0.92, bias=0.02, noise_std=0.01),
    "chelsea-small": dict(source="chelsea", rotation=-7.0, scale=1.0, translation=(0.02, 0.05),
                          perspective=(0.0, 0.0), gain=1.05, bias=0.01, noise_std=0.01),
    "rocket-small": dict(source="rocket", rotation=2.0, scale=1.1, translation=(-0.03, -0.02),
                         perspective=(-0.05, 0.03), gain=0.95, bias=0.03, noise_std=0.01),
}

#: The default pairs (``compare``, a study's default ``[data]``, learning's held-out pairs).
BUILTIN_PAIRS = ("motorcycle", "astronaut", "coffee", "chelsea", "rocket")
#: Every built-in pair name: the default ones and the ``-small`` warps.
ALL_BUILTIN_PAIRS = ("motorcycle",) + tuple(_SYNTHETIC)


# --------------------------------------------------------------------------- built-in pairs
def _skimage_image(name: str) -> np.ndarray:
    import skimage.data  # deferred: heavy import, only built-in pairs need it

    return getattr(skimage.data, name)()


def builtin_sources() -> dict[str, np.ndarray]:
    """Every image the built-in pairs are made from, by name (float RGB, native size).

    The synthetic pairs' source images under their ``skimage.data`` names, and the motorcycle
    pair's two views as ``motorcycle_left`` and ``motorcycle_right``.
    """
    import skimage.data  # deferred: heavy import

    names = dict.fromkeys(spec["source"] for spec in _SYNTHETIC.values())
    out = {name: to_rgb_float(_skimage_image(name)) for name in names}
    left, right, _ = skimage.data.stereo_motorcycle()
    out["motorcycle_left"], out["motorcycle_right"] = to_rgb_float(left), to_rgb_float(right)
    return out


def motorcycle_pair() -> Pair:
    """The Middlebury stereo pair shipped with scikit-image, native size (500 x 741)."""
    import skimage.data  # deferred: heavy import

    left, right, disp = skimage.data.stereo_motorcycle()
    a, b = to_rgb_float(left), to_rgb_float(right)
    known = np.isfinite(disp)
    gt, valid = displacement_to_gt(np.zeros_like(disp), -np.where(known, disp, 0), known, b.shape[:2])
    return Pair("motorcycle", a, b, gt, valid,
                "skimage.data.stereo_motorcycle (Middlebury 2014, A = left, B = right)",
                dict(dataset="built-in", gt="disparity: x_B = x_A - d, y_B = y_A"))


def builtin_pair(name: str, *, max_size: int | None = None) -> Pair:
    """Build a built-in pair (see :data:`BUILTIN_PAIRS`), downscaled to ``max_size``.

    Synthetic pairs are built at the target size (the source image is downscaled first, then
    warped), so their ground truth is exact at every size; their noise uses a fixed seed per pair.
    """
    if name == "motorcycle":
        return resize_pair(motorcycle_pair(), max_size)
    if name not in _SYNTHETIC:
        raise UserError(f"unknown built-in pair {name!r}; choose from {', '.join(ALL_BUILTIN_PAIRS)}")
    spec = dict(_SYNTHETIC[name])
    src = spec.pop("source")
    image = downscale(to_rgb_float(_skimage_image(src)), max_size)
    m = warp_matrix(image.shape[:2], rotation=spec["rotation"], scale=spec["scale"],
                    translation=spec["translation"], perspective=spec["perspective"])
    pair = warp_pair(image, m, gain=spec["gain"], bias=spec["bias"], noise_std=spec["noise_std"],
                     rng=zlib.crc32(name.encode()), name=name,
                     source=f"skimage.data.{src}() warped by a known "
                            f"{'homography' if any(spec['perspective']) else 'similarity'}")
    pair.info.update(dataset="built-in", rotation=spec["rotation"], scale=spec["scale"],
                     translation=list(spec["translation"]), perspective=list(spec["perspective"]))
    return pair
