"""Training and held-out data of the learnt DPM features.

Training pairs are made on the fly: a random crop (random scale, flip, colour-channel order) of one
of :data:`TRAIN_IMAGES`, warped by :func:`experiments.data.make_warped_pair` (random rotation,
scale, translation, perspective, gain, bias and noise; exact ground truth). The held-out pairs are
the built-in pairs of ``compare`` (``motorcycle`` and the synthetic ``astronaut``, ``coffee``,
``chelsea``, ``rocket``); :func:`check_disjoint` verifies, by pixel content, that no training image
is one of their source images (``skimage.data.cat`` *is* ``chelsea``, so names are not enough).
"""
from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np

from experiments.errors import UserError
from experiments.data import (BUILTIN_PAIRS, Pair, builtin_pair, builtin_sources, make_warped_pair,
                               to_rgb_float)

__all__ = ["TRAIN_IMAGES", "load_sample", "heldout_sources", "heldout_pairs", "check_disjoint",
           "PairSampler", "stack_pairs"]

#: scikit-image sample images used for training (all shipped with scikit-image, no download).
#: Disjoint from every held-out image (checked by content in :func:`check_disjoint`).
TRAIN_IMAGES = ("camera", "immunohistochemistry", "hubble_deep_field", "colorwheel", "retina",
                "brick", "grass", "gravel", "coins", "moon")


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


def check_disjoint(train: dict[str, np.ndarray], heldout: dict[str, np.ndarray] | None = None) -> None:
    """Raise :class:`UserError` if a training image is (pixel for pixel, or by name) a held-out image."""
    heldout = heldout_sources() if heldout is None else heldout
    prints = {_fingerprint(v): k for k, v in heldout.items()}
    for name, img in train.items():
        clash = prints.get(_fingerprint(img)) or (name if name in heldout else None)
        if clash is not None:
            raise UserError(f"training image {name!r} is the held-out image {clash!r}; held-out pairs must "
                            "never be trained on (drop it from --images)")


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
