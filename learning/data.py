"""The data of learnt features, in three disjoint splits: training, validation and test images.

* Training pairs are made on the fly: a random crop (random scale, flip, colour-channel order) of
  one of :data:`TRAIN_IMAGES`, warped by :func:`experiments.data.make_warped_pair` (random rotation,
  scale, translation, perspective, gain, bias and noise; exact ground truth).
* Validation pairs (:func:`validation_pairs`): :func:`motion_pair` warps (real motion, the kind of
  the built-in pairs) of :data:`VALIDATION_IMAGES`; every choice of a study is made on them.
* Test pairs (:func:`test_pairs`): the built-in pairs of ``compare`` (``motorcycle``, the Middlebury
  stereo pair, and the synthetic ``astronaut``, ``coffee``, ``chelsea``, ``rocket``) plus more
  :func:`motion_pair` warps of the same four source images.

:func:`check_splits` verifies by pixel content that no image is in two splits
(``skimage.data.cat`` *is* ``chelsea``, so names are not enough); :func:`texture_class` is the
stated rule that splits pairs into low-texture and textured ones.
"""
from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np

from experiments.errors import UserError
from experiments.data import (BUILTIN_PAIRS, Pair, builtin_pair, builtin_sources, make_warped_pair,
                               to_rgb_float, warp_matrix, warp_pair)
from experiments.data.images import downscale

__all__ = ["TRAIN_IMAGES", "VALIDATION_IMAGES", "TEST_SOURCES", "load_sample", "heldout_sources", "heldout_pairs",
           "check_splits", "motion_pair", "validation_pairs", "test_pairs", "texture_class",
           "LOW_TEXTURE_STD", "LOW_TEXTURE_FRACTION", "PairSampler", "stack_pairs"]

#: scikit-image sample images used for training (all shipped with scikit-image, no download).
#: Disjoint from the validation and test images (checked by content in :func:`check_splits`).
TRAIN_IMAGES = ("camera", "immunohistochemistry", "hubble_deep_field", "colorwheel", "brick", "grass",
                "gravel", "moon", "page", "cell")
#: scikit-image sample images of the validation pairs (never trained on, never tested on).
VALIDATION_IMAGES = ("clock", "coins", "retina")
#: The synthetic built-in pairs' source images, warped again for more test pairs.
TEST_SOURCES = ("astronaut", "coffee", "chelsea", "rocket")
#: Texture rule (:func:`texture_class`): a pair is low-texture when at least
#: ``LOW_TEXTURE_FRACTION`` of A's valid pixels have a 7 x 7 luminance standard deviation below
#: ``LOW_TEXTURE_STD`` (about twice the synthetic pairs' noise).
LOW_TEXTURE_STD = 0.02
LOW_TEXTURE_FRACTION = 0.3


def load_sample(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as float RGB; :class:`UserError` when there is no such image."""
    import skimage.data  # deferred: heavy import (this module is imported by the CLI parser)

    fn = getattr(skimage.data, name, None)
    if fn is None or not callable(fn):
        raise UserError(f"--images: scikit-image has no sample image {name!r} (e.g. {', '.join(TRAIN_IMAGES[:4])})")
    try:
        return to_rgb_float(fn())
    except Exception as exc:  # noqa: BLE001 - e.g. an image that needs a download (no internet)
        raise UserError(f"--images: skimage.data.{name}() could not be loaded ({type(exc).__name__}); "
                        "choose images shipped with scikit-image") from None


def heldout_sources() -> dict[str, np.ndarray]:
    """Every image the held-out built-in pairs are made from, by name (float RGB)."""
    return builtin_sources()


def heldout_pairs(max_size: int) -> list[Pair]:
    """The built-in pairs of ``compare`` at ``max_size`` (never trained on)."""
    return [builtin_pair(name, max_size=max_size) for name in BUILTIN_PAIRS]


def _fingerprint(image: np.ndarray) -> str:
    small = np.ascontiguousarray((np.asarray(image, np.float32) * 255 + 0.5).astype(np.uint8))
    return hashlib.sha1(small.tobytes() + str(small.shape).encode()).hexdigest()


def check_splits(**splits: dict[str, np.ndarray]) -> None:
    """Raise :class:`UserError` if one image (pixel for pixel, or by name) is in two splits.

    ``splits``: split name -> {image name: image}, e.g. ``training=..., validation=..., test=...``.
    """
    seen: dict[str, tuple[str, str]] = {}
    for split, images in splits.items():
        for name, img in images.items():
            for key in (_fingerprint(img), "name:" + name):
                other = seen.get(key)
                if other is not None and other[0] != split:
                    raise UserError(f"{split} image {name!r} is the {other[0]} image {other[1]!r}; training, "
                                    "validation and test images must never overlap")
                seen[key] = (split, name)


def motion_pair(image: np.ndarray, *, rng: np.random.Generator | int, max_size: int | None,
                name: str) -> Pair:
    """A random warp with real motion, of the kind of the built-in pairs, at ``max_size``.

    The image is downscaled first, then warped (exact ground truth at every size): rotation
    uniform in +/- 8 degrees, scale in [0.92, 1.1], translation of each axis 0.2-0.35 half sides
    (random sign: a fifth of the image on average, as the built-in pairs), perspective terms in
    +/- 0.05, gain in [0.94, 1.06], bias in +/- 0.02, Gaussian noise of std 0.01. Same seed, same pair.
    """
    rng = np.random.default_rng(rng)
    a = downscale(to_rgb_float(image), max_size)
    translation = tuple(rng.choice([-1.0, 1.0], 2) * rng.uniform(0.2, 0.35, 2))
    m = warp_matrix(a.shape[:2], rotation=rng.uniform(-8, 8), scale=rng.uniform(0.92, 1.1),
                    translation=translation, perspective=tuple(rng.uniform(-0.05, 0.05, 2)))
    pair = warp_pair(a, m, gain=rng.uniform(0.94, 1.06), bias=rng.uniform(-0.02, 0.02), noise_std=0.01,
                     rng=rng, name=name, source=f"a random warp ({name})")
    pair.info.update(dataset="warps")
    return pair


def _warps(images: dict[str, np.ndarray], per_image: int, *, max_size: int, seed: int, first: int = 0) -> list[Pair]:
    return [motion_pair(img, rng=[seed, i, k], max_size=max_size, name=f"{name}-w{k}")
            for i, (name, img) in enumerate(images.items()) for k in range(first, first + per_image)]


def validation_pairs(max_size: int, *, per_image: int = 3, seed: int = 0) -> list[Pair]:
    """``per_image`` :func:`motion_pair` warps of each of :data:`VALIDATION_IMAGES` (names ``clock-w0`` ...)."""
    return _warps({n: load_sample(n) for n in VALIDATION_IMAGES}, per_image, max_size=max_size, seed=seed)


def test_pairs(max_size: int, *, extra_per_image: int = 2, seed: int = 1) -> list[Pair]:
    """The built-in pairs at ``max_size``, then ``extra_per_image`` :func:`motion_pair` warps of
    each of :data:`TEST_SOURCES` (names ``astronaut-w1`` ...; seeds apart from validation's)."""
    sources = builtin_sources()
    extra = _warps({n: sources[n] for n in TEST_SOURCES}, extra_per_image, max_size=max_size, seed=seed, first=1)
    return heldout_pairs(max_size) + extra


def texture_class(pair: Pair) -> str:
    """``"low-texture"`` or ``"textured"`` by the stated rule (:data:`LOW_TEXTURE_STD`,
    :data:`LOW_TEXTURE_FRACTION`): the fraction of A's valid pixels whose 7 x 7 luminance
    (mean of the channels) standard deviation is below ``LOW_TEXTURE_STD``."""
    lum = pair.a.mean(axis=2).astype(np.float64)
    mean = cv2.blur(lum, (7, 7), borderType=cv2.BORDER_REPLICATE)
    sq = cv2.blur(lum * lum, (7, 7), borderType=cv2.BORDER_REPLICATE)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    mask = pair.valid if pair.valid is not None else np.ones(lum.shape, bool)
    flat = float((std[mask] < LOW_TEXTURE_STD).mean()) if mask.any() else 0.0
    return "low-texture" if flat >= LOW_TEXTURE_FRACTION else "textured"


class PairSampler:
    """Random training pairs: crop (random scale, flip, channel order) + :func:`make_warped_pair`.

    Parameters
    ----------
    images : list of ndarray, shape (H, W, 3), float32
    crop : int
        Side of the square crops.
    rng : numpy.random.Generator
        The only source of randomness.
    """

    def __init__(self, images, crop: int, rng: np.random.Generator):
        self.images = [np.ascontiguousarray(i, np.float32) for i in images]
        small = [i for i in self.images if min(i.shape[:2]) < crop]
        if small:
            raise UserError(f"--crop {crop} is larger than a training image ({small[0].shape[1]}x{small[0].shape[0]})")
        self.crop, self.rng = int(crop), rng

    def crop_image(self) -> np.ndarray:
        rng, c = self.rng, self.crop
        img = self.images[rng.integers(len(self.images))]
        h, w = img.shape[:2]
        # region side between the crop itself (native resolution) and 3/4 of the shorter side
        hi = max(c, 0.75 * min(h, w))
        side = int(round(math.exp(rng.uniform(math.log(c), math.log(hi)))))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        region = img[y:y + side, x:x + side]
        if side != c:
            region = cv2.resize(region, (c, c), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            region = region[:, ::-1]
        return np.ascontiguousarray(region[:, :, rng.permutation(3)])

    def pair(self) -> Pair:
        return make_warped_pair(self.crop_image(), rng=self.rng, name="train")

    def batch(self, n: int, device: str):
        """``a, b`` (N, 3, c, c), ``gt`` (N, 2, c, c) (0 where invalid) and ``valid`` (N, 1, c, c) float."""
        return stack_pairs([self.pair() for _ in range(n)], device)


def stack_pairs(pairs, device: str):
    """Torch batch of same-size pairs with ground truth (see :meth:`PairSampler.batch`)."""
    import torch  # deferred: heavy import (this module is imported by the CLI parser)

    a = np.stack([p.a.transpose(2, 0, 1) for p in pairs])
    b = np.stack([p.b.transpose(2, 0, 1) for p in pairs])
    gt = np.stack([np.nan_to_num(p.gt).transpose(2, 0, 1) for p in pairs])
    valid = np.stack([p.valid[None] for p in pairs]).astype(np.float32)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)  # noqa: E731
    return t(a), t(b), t(gt), t(valid)
