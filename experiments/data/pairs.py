"""Image pairs and their ground truth: the :class:`Pair`, resizing, warps, loadable sources.

Correspondence convention (the same as ``classic_pm``'s NNF, written down once here):
``gt[y, x] = (y_B, x_B)``, float32, the absolute pixel coordinates in B (pixel centres at
integers, (y, x) order) of the point that pixel (y, x) of A shows. ``valid[y, x]`` is False where
no ground truth exists: unknown disparity, or a match that leaves B's frame.

Images are float32 ``(H, W, 3)`` RGB in [0, 1] (:mod:`experiments.data.images`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ..errors import UserError
from .images import _scaled_shape, downscale, is_8bit, to_8bit, to_rgb_float


@dataclass
class Pair:
    """One image pair, optionally with ground-truth correspondence.

    Attributes
    ----------
    name : str
        Short name used in tables and file names (``[A-Za-z0-9_.-]``).
    a, b : ndarray, shape (Ha, Wa, 3) and (Hb, Wb, 3), float32 in [0, 1]
        Image A (rebuilt) and image B (the source of patches).
    gt : ndarray, shape (Ha, Wa, 2), float32, or None
        Absolute (y, x) position in B of each pixel of A.
    valid : ndarray, shape (Ha, Wa), bool, or None
        Where ``gt`` is defined.
    source : str
        Where the pair came from (for the report).
    info : dict
        Extra facts (warp matrix, photometric change, scale factors ...), JSON-serialisable.
        Pairs read from a standard dataset say which one in ``info["dataset"]``.
    masks : dict of str to ndarray, shape (Ha, Wa), bool
        Named pixel subsets of A given by the dataset, e.g. ``"noc"`` = not occluded in B.
    nonfinite_pixels : dict
        ``{"a": n, "b": m}``: pixels of each image file that held NaN or inf values, replaced on
        loading (see :func:`read_image`); zeros for built-in pairs.
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    gt: np.ndarray | None = None
    valid: np.ndarray | None = None
    source: str = ""
    info: dict = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    nonfinite_pixels: dict = field(default_factory=lambda: {"a": 0, "b": 0})

    @property
    def has_gt(self) -> bool:
        return self.gt is not None


#: px of round-off accepted when downscaled ground truth lands just outside B (see :func:`resize_pair`)
RESIZE_TOLERANCE = 1e-3


def dataset_of(pair: Pair) -> str:
    """The dataset a pair belongs to: ``pair.info["dataset"]`` (``built-in``, ``sintel``,
    ``kitti-flow``, ``middlebury``, ``deeppruner`` ...), ``pairs`` when it says none."""
    return pair.info.get("dataset") or "pairs"


def resize_pair(pair: Pair, max_size: int | None) -> Pair:
    """Area-downscale A and B independently to ``max_size`` and carry the ground truth along.

    The ground-truth positions are area-averaged over each output pixel of A (valid pixels only;
    an output pixel is valid when at least half of its input area was), then mapped into the downscaled B
    with the pixel-centre convention ``u' = (u + 0.5) * s - 0.5`` per axis. Each of
    ``pair.masks`` is area-downscaled like ``valid``: an output pixel is True when at least half
    of its input area was.
    """
    ha, wa = pair.a.shape[:2]
    hb, wb = pair.b.shape[:2]
    nha, nwa = _scaled_shape(ha, wa, max_size)
    nhb, nwb = _scaled_shape(hb, wb, max_size)
    if (nha, nwa, nhb, nwb) == (ha, wa, hb, wb):
        return pair
    a = downscale(pair.a, max_size)
    b = downscale(pair.b, max_size)
    gt = valid = None
    if pair.gt is not None:
        v = pair.valid.astype(np.float32)
        g = np.where(pair.valid[:, :, None], pair.gt, 0.0).astype(np.float32)
        if (nha, nwa) != (ha, wa):
            g = cv2.resize(g, (nwa, nha), interpolation=cv2.INTER_AREA)
            v = cv2.resize(v, (nwa, nha), interpolation=cv2.INTER_AREA)
        valid = v >= 0.5
        gt = g / np.maximum(v, 1e-6)[:, :, None]
        gt[..., 0] = (gt[..., 0] + 0.5) * (nhb / hb) - 0.5
        gt[..., 1] = (gt[..., 1] + 0.5) * (nwb / wb) - 0.5
        # float32 area averaging can put a border match a few 1e-7 px outside B: keep it, on the border
        valid &= _inside(gt, nhb, nwb, tol=RESIZE_TOLERANCE)
        gt[..., 0] = np.clip(gt[..., 0], 0, nhb - 1)
        gt[..., 1] = np.clip(gt[..., 1], 0, nwb - 1)
        gt = np.where(valid[:, :, None], gt, np.nan).astype(np.float32)
    masks = {key: _area_mask(m, (nha, nwa)) for key, m in pair.masks.items()}
    info = dict(pair.info, native_a=[ha, wa], native_b=[hb, wb])
    return Pair(pair.name, a, b, gt, valid, pair.source, info, masks=masks,
                nonfinite_pixels=dict(pair.nonfinite_pixels))


def _area_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-downscale a bool mask to ``shape``: True where at least half of the area was."""
    h, w = shape
    if mask.shape == (h, w):
        return mask
    m = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return m >= 0.5


def _inside(gt: np.ndarray, h: int, w: int, *, tol: float = 0.0) -> np.ndarray:
    """Finite ground-truth points inside ``[0, h-1] x [0, w-1]`` (with ``tol`` px of slack)."""
    y, x = gt[..., 0], gt[..., 1]
    with np.errstate(invalid="ignore"):
        return (np.isfinite(y) & np.isfinite(x) & (y >= -tol) & (y <= h - 1 + tol)
                & (x >= -tol) & (x <= w - 1 + tol))


def displacement_to_gt(dy: np.ndarray, dx: np.ndarray, known: np.ndarray,
                       shape_b: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth from a displacement field: ``gt[y, x] = (y + dy, x + dx)``.

    Parameters
    ----------
    dy, dx : ndarray, shape (Ha, Wa)
        Displacement in pixels (flow: ``dy = v``, ``dx = u``; disparity: ``dy = 0``, ``dx = -d``).
    known : ndarray, shape (Ha, Wa), bool
        Where the dataset gives a displacement.
    shape_b : (Hb, Wb)

    Returns
    -------
    gt : ndarray, shape (Ha, Wa, 2), float32, NaN where not valid
    valid : ndarray, shape (Ha, Wa), bool
        ``known``, finite, and inside B's frame.
    """
    h, w = known.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gt = np.stack([ys + np.asarray(dy, np.float32), xs + np.asarray(dx, np.float32)], axis=-1)
    valid = np.asarray(known, bool) & _inside(gt, *shape_b)
    gt[~valid] = np.nan
    return gt.astype(np.float32), valid


# --------------------------------------------------------------------------- warped pairs
def round_nnf(nnf: np.ndarray, shape_b: tuple[int, ...]) -> np.ndarray:
    """Integer NNF: round float (y, x) positions and clip them into B's frame.

    Parameters
    ----------
    nnf : ndarray, shape (Ha, Wa, 2)
        Absolute (y, x) positions in B (int or float).
    shape_b : tuple
        B's shape; only (Hb, Wb) are used.

    Returns
    -------
    ndarray, shape (Ha, Wa, 2), int32
    """
    hb, wb = shape_b[:2]
    out = np.rint(np.nan_to_num(np.asarray(nnf, np.float64)))
    out[..., 0] = np.clip(out[..., 0], 0, hb - 1)
    out[..., 1] = np.clip(out[..., 1], 0, wb - 1)
    return np.ascontiguousarray(out, dtype=np.int32)


def warp_matrix(shape: tuple[int, int], *, rotation: float = 0.0, scale: float = 1.0,
                translation: tuple[float, float] = (0.0, 0.0),
                perspective: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """3 x 3 homography (pixel coordinates, (x, y, 1) columns) mapping A's pixels into B.

    Parameters are in normalised coordinates: origin at the image centre, unit = half the longer
    side. ``rotation`` in degrees (counter-clockwise on screen), ``translation`` = (ty, tx),
    ``perspective`` = (py, px), the homography's last row terms.
    """
    h, w = shape
    half = max(h, w) / 2.0
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    to_norm = np.array([[1 / half, 0, -cx / half], [0, 1 / half, -cy / half], [0, 0, 1]])
    from_norm = np.linalg.inv(to_norm)
    t = np.deg2rad(rotation)
    c, s = scale * np.cos(t), scale * np.sin(t)
    ty, tx = translation
    py, px = perspective
    n = np.array([[c, s, tx], [-s, c, ty], [px, py, 1.0]])
    return from_norm @ n @ to_norm


def correspondence_from_matrix(matrix: np.ndarray, shape_a: tuple[int, int],
                               shape_b: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of a homography: ``gt`` (Ha, Wa, 2) float32 (y, x) in B and ``valid``."""
    ha, wa = shape_a
    ys, xs = np.mgrid[0:ha, 0:wa].astype(np.float64)
    pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ np.asarray(matrix, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        den = pts[..., 2]
        gt = np.stack([pts[..., 1] / den, pts[..., 0] / den], axis=-1).astype(np.float32)
    valid = _inside(gt, *shape_b) & (den > 0)
    gt[~valid] = np.nan
    return gt, valid


def warp_pair(image: np.ndarray, matrix: np.ndarray, *, gain: float = 1.0, bias: float = 0.0,
              noise_std: float = 0.0, rng: np.random.Generator | int | None = None,
              name: str = "warped", source: str = "") -> Pair:
    """Pair (A = ``image``, B = A warped by ``matrix`` + photometric change + noise) with exact GT.

    ``B(T(p)) = clip(gain * A(p) + bias + noise)`` for every pixel p of A whose match T(p) lies
    inside B (bilinear warp, reflected border for the parts of B that A does not cover). When A
    holds 8-bit data, B is rounded to 8-bit levels too (:func:`~experiments.data.images.to_8bit`),
    as an image file of it would be.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        Any dtype accepted by :func:`to_rgb_float`.
    matrix : ndarray, shape (3, 3)
        Homography from A's pixel (x, y, 1) to B's, as made by :func:`warp_matrix`.
    gain, bias : float
        Global photometric change applied to B.
    noise_std : float
        Standard deviation of the Gaussian noise added to B (in [0, 1] units).
    rng : numpy Generator or int seed
        Source of the noise.
    """
    a = to_rgb_float(image)
    rng = np.random.default_rng(rng)
    h, w = a.shape[:2]
    warped = cv2.warpPerspective(a, np.asarray(matrix, np.float64), (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT_101)
    b = gain * warped + bias
    if noise_std > 0:
        b = b + rng.normal(0.0, noise_std, size=b.shape)
    b = to_8bit(b) if is_8bit(a) else np.clip(b, 0.0, 1.0).astype(np.float32)  # stored as A is
    gt, valid = correspondence_from_matrix(matrix, (h, w), (h, w))
    info = dict(warp=np.asarray(matrix).round(8).tolist(), gain=float(gain), bias=float(bias),
                noise_std=float(noise_std))
    return Pair(name, a, b, gt, valid, source or "synthetic warp", info)


def make_warped_pair(image: np.ndarray, *, rng: np.random.Generator | int | None,
                     max_rotation: float = 10.0, scale_range: tuple[float, float] = (0.9, 1.1),
                     max_translation: float = 0.05, max_perspective: float = 0.05,
                     gain_range: tuple[float, float] = (0.9, 1.1),
                     max_bias: float = 0.05, noise_std: float = 0.01,
                     name: str = "warped") -> Pair:
    """Random warped pair from any image, with exact ground truth (for training and tests).

    Draws, from ``rng``: rotation uniform in +/- ``max_rotation`` degrees, scale uniform in
    ``scale_range``, translation uniform in +/- ``max_translation`` (normalised units, see
    :func:`warp_matrix`), perspective terms uniform in +/- ``max_perspective``, gain uniform in
    ``gain_range`` and bias uniform in +/- ``max_bias``; then calls :func:`warp_pair` with the
    same ``rng`` for the noise. Same seed, same pair.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        uint8, uint16 or float in [0, 1]; converted with :func:`to_rgb_float`.
    rng : numpy Generator or int seed

    Returns
    -------
    Pair
        ``a`` is the (converted) image, ``b`` its warped version, ``gt``/``valid`` exact.
    """
    rng = np.random.default_rng(rng)
    a = to_rgb_float(image)
    rotation = rng.uniform(-max_rotation, max_rotation)
    scale = rng.uniform(*scale_range)
    translation = tuple(rng.uniform(-max_translation, max_translation, size=2))
    perspective = tuple(rng.uniform(-max_perspective, max_perspective, size=2))
    gain = rng.uniform(*gain_range)
    bias = rng.uniform(-max_bias, max_bias)
    m = warp_matrix(a.shape[:2], rotation=rotation, scale=scale, translation=translation,
                    perspective=perspective)
    pair = warp_pair(a, m, gain=gain, bias=bias, noise_std=noise_std, rng=rng, name=name)
    pair.info.update(rotation=float(rotation), scale=float(scale),
                     translation=[float(t) for t in translation],
                     perspective=[float(p) for p in perspective])
    return pair


# --------------------------------------------------------------------------- user folders
@dataclass
class PairSource:
    """A pair that can be loaded later: ``load(max_size) -> Pair``."""

    name: str
    origin: str
    load: Callable[[int | None], Pair]


def safe_name(s: str) -> str:
    """``s`` with every run of characters outside ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "pair"


def file_stem(name: str) -> str:
    """A pair name as part of a file name: the ``/`` of dataset pair names become ``--``
    (``sintel-clean/alley_1/0001`` -> ``sintel-clean--alley_1--0001``)."""
    return name.replace("/", "--")


def check_pair(pair: Pair, patch_size: int) -> None:
    """Raise :class:`UserError` when an image of the pair is smaller than one patch."""
    for label, img in (("A", pair.a), ("B", pair.b)):
        h, w = img.shape[:2]
        if min(h, w) < patch_size:
            where = pair.info.get("file_a" if label == "A" else "file_b", "")
            raise UserError(f"pair {pair.name}: image {label} {where} is {w}x{h} pixels "
                            f"(after --max-size), smaller than the {patch_size}x{patch_size} patch;"
                            " use larger images, a larger --max-size or a smaller --patch-size")
