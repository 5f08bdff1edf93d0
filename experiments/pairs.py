"""Image pairs for the experiments: built-in pairs, user folders, random warped pairs.

Correspondence convention (the same as ``classic_pm``'s NNF, written down once here):
``gt[y, x] = (y_B, x_B)``, float32, the absolute pixel coordinates in B (pixel centres at
integers, (y, x) order) of the point that pixel (y, x) of A shows. ``valid[y, x]`` is False where
no ground truth exists: unknown disparity, or a match that leaves B's frame.

Images are float32 ``(H, W, 3)`` RGB in [0, 1]. User files are converted explicitly by
:func:`load_image`: 8-bit / 255, 16-bit / 65535, float clipped to [0, 1] (non-finite values
replaced: NaN and -inf by 0, +inf by 1; :func:`read_image` also counts the pixels concerned and
folder pairs report them); gray is replicated to RGB; an alpha channel is dropped (colour kept as
stored, not composited).

Built-in pairs (no download; scikit-image ships the images):

* ``motorcycle``: the Middlebury 2014 stereo pair (A = left, B = right) with its ground-truth
  disparity d: ``x_B = x_A - d``, ``y_B = y_A``; non-finite disparities are invalid.
* ``astronaut``, ``coffee``, ``chelsea``, ``rocket``: B is A under a fixed, known warp
  (similarity or homography) plus a global gain/bias change and seeded Gaussian noise.

The training images (``camera``, ``immunohistochemistry``, ``hubble_deep_field`` ...) are kept out
of the built-in pairs so that they stay held-out for learnt features.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import UserError


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

# Fixed warps of the synthetic built-in pairs, in normalised coordinates (origin at the image
# centre, unit = half the longer side), so that a pair looks the same at every --max-size.
# rotation in degrees, translation (ty, tx) in normalised units, perspective (py, px).
_SYNTHETIC = {
    "astronaut": dict(source="astronaut", rotation=4.0, scale=1.06, translation=(0.03, -0.04),
                      perspective=(0.0, 0.0), gain=1.08, bias=-0.03, noise_std=0.01),
    "coffee": dict(source="coffee", rotation=-3.0, scale=0.95, translation=(-0.02, 0.03),
                   perspective=(0.04, -0.05), gain=0.92, bias=0.02, noise_std=0.01),
    "chelsea": dict(source="chelsea", rotation=-7.0, scale=1.0, translation=(0.02, 0.05),
                    perspective=(0.0, 0.0), gain=1.05, bias=0.01, noise_std=0.01),
    "rocket": dict(source="rocket", rotation=2.0, scale=1.1, translation=(-0.03, -0.02),
                   perspective=(-0.05, 0.03), gain=0.95, bias=0.03, noise_std=0.01),
}
BUILTIN_PAIRS = ("motorcycle",) + tuple(_SYNTHETIC)


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


# --------------------------------------------------------------------------- image helpers
def to_rgb_float(image: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Convert an RGB-ordered array to float32 ``(H, W, 3)`` in [0, 1] (the one dtype policy).

    uint8 / 255, uint16 / 65535, bool to {0, 1}, float clipped to [0, 1] with NaN and -inf
    replaced by 0 and +inf by 1 (silently: count them first with :func:`nonfinite_pixels`);
    ``(H, W)`` and ``(H, W, 1)`` gray replicated to RGB; ``(H, W, 2)`` gray + alpha and
    ``(H, W, 4)`` RGBA lose their alpha channel.
    """
    x = np.asarray(image)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif x.dtype == np.uint16:
        x = x.astype(np.float32) / 65535.0
    elif x.dtype == np.bool_:
        x = x.astype(np.float32)
    elif np.issubdtype(x.dtype, np.floating):
        x = np.clip(np.nan_to_num(x.astype(np.float32)), 0.0, 1.0)
    else:
        raise UserError(f"{what} has sample type {x.dtype}; use 8-bit, 16-bit or float images")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"{what} has shape {x.shape}; expected gray, gray+alpha, RGB or RGBA")
    if x.shape[2] in (1, 2):
        x = np.repeat(x[:, :, :1], 3, axis=2)
    elif x.shape[2] == 4:
        x = x[:, :, :3]
    return np.ascontiguousarray(x, dtype=np.float32)


def nonfinite_pixels(image: np.ndarray) -> int:
    """Pixels of an image array (as :func:`to_rgb_float` takes it) with a NaN or inf colour value.

    The alpha channel of gray + alpha and RGBA images is not counted (it is dropped anyway).
    """
    x = np.asarray(image)
    if not np.issubdtype(x.dtype, np.floating):
        return 0
    if x.ndim == 3 and x.shape[2] in (2, 4):
        x = x[:, :, :-1]
    if x.ndim not in (2, 3):
        return 0  # not an image: to_rgb_float refuses it
    bad = ~np.isfinite(x)
    return int((bad if bad.ndim == 2 else bad.any(axis=2)).sum())


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file into float32 ``(H, W, 3)`` RGB in [0, 1] (see :func:`read_image`)."""
    return read_image(path)[0]


def read_image(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an image file: float32 ``(H, W, 3)`` RGB in [0, 1] and the count of replaced pixels.

    PNG, JPEG, TIFF (also BMP, WebP); 8- or 16-bit or float; gray, gray+alpha, RGB or RGBA
    (see :func:`to_rgb_float` for the conversions). The count is the number of pixels whose
    colour held NaN or inf (float files only), replaced by :func:`to_rgb_float`. Raises
    :class:`UserError` when the file is not a readable image.
    """
    path = Path(path)
    img = decode_file(path)
    if img is None:
        raise UserError(f"{path} is not a readable image (PNG, JPEG or TIFF expected); "
                        "remove it from the folder or convert it")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, [2, 1, 0, 3]]  # BGRA -> RGBA
    return to_rgb_float(img, what=str(path)), nonfinite_pixels(img)


def decode_file(path: Path) -> np.ndarray | None:
    """A file as OpenCV decodes it (``IMREAD_UNCHANGED``: dtype kept, BGR order), or None when
    OpenCV cannot decode it (OpenCV's own log silenced: callers report the problem in one line).
    Raises :class:`UserError` when the file cannot be read at all."""
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    finally:
        cv2.utils.logging.setLogLevel(level)


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write float ``(H, W, 3)`` RGB in [0, 1] as an 8-bit image (format from the suffix)."""
    img8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)[:, :, ::-1]
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix if path.suffix else ".png", img8)
    if not ok:
        raise UserError(f"cannot encode {path} (unsupported suffix {path.suffix!r})")
    buf.tofile(str(path))


def _scaled_shape(h: int, w: int, max_size: int | None) -> tuple[int, int]:
    if max_size is None or max(h, w) <= max_size:
        return h, w
    s = max_size / max(h, w)
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


def downscale(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """Area-downscale so that the longer side is at most ``max_size`` (never upscales)."""
    h, w = image.shape[:2]
    nh, nw = _scaled_shape(h, w, max_size)
    if (nh, nw) == (h, w):
        return image
    out = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out.reshape(nh, nw, *image.shape[2:])


#: px of round-off accepted when downscaled ground truth lands just outside B (see :func:`resize_pair`)
RESIZE_TOLERANCE = 1e-3


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
    inside B (bilinear warp, reflected border for the parts of B that A does not cover).

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
    b = np.clip(b, 0.0, 1.0).astype(np.float32)
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

    out = {spec["source"]: to_rgb_float(_skimage_image(spec["source"])) for spec in _SYNTHETIC.values()}
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
                dict(gt="disparity: x_B = x_A - d, y_B = y_A"))


def builtin_pair(name: str, *, max_size: int | None = None) -> Pair:
    """Build a built-in pair (see :data:`BUILTIN_PAIRS`), downscaled to ``max_size``.

    Synthetic pairs are built at the target size (the source image is downscaled first, then
    warped), so their ground truth is exact at every size; their noise uses a fixed seed per pair.
    """
    if name == "motorcycle":
        return resize_pair(motorcycle_pair(), max_size)
    if name not in _SYNTHETIC:
        raise UserError(f"unknown built-in pair {name!r}; choose from {', '.join(BUILTIN_PAIRS)}")
    spec = dict(_SYNTHETIC[name])
    src = spec.pop("source")
    image = downscale(to_rgb_float(_skimage_image(src)), max_size)
    m = warp_matrix(image.shape[:2], rotation=spec["rotation"], scale=spec["scale"],
                    translation=spec["translation"], perspective=spec["perspective"])
    pair = warp_pair(image, m, gain=spec["gain"], bias=spec["bias"], noise_std=spec["noise_std"],
                     rng=zlib.crc32(name.encode()), name=name,
                     source=f"skimage.data.{src}() warped by a known "
                            f"{'homography' if any(spec['perspective']) else 'similarity'}")
    pair.info.update(rotation=spec["rotation"], scale=spec["scale"],
                     translation=list(spec["translation"]), perspective=list(spec["perspective"]))
    return pair


# --------------------------------------------------------------------------- user folders
@dataclass
class PairSource:
    """A pair that can be loaded later: ``load(max_size) -> Pair``."""

    name: str
    origin: str
    load: Callable[[int | None], Pair]


def _is_image_candidate(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".")


def scan_folder(base: str | Path) -> list[tuple[Path, Path]]:
    """Pairs of a DeepPruner demo folder: ``BASE/image_1/*`` with ``BASE/image_2/*`` by sorted name.

    Checks the layout only (no decoding). Hidden files are ignored; every other file must have an
    image suffix. Raises :class:`UserError` on a missing or empty folder or unequal counts.
    """
    base = Path(base)
    if not base.is_dir():
        raise UserError(f"data folder {base} does not exist; pass a built-in pair name "
                        f"({', '.join(BUILTIN_PAIRS)}) or a folder with image_1/ and image_2/")
    lists = []
    for sub in ("image_1", "image_2"):
        d = base / sub
        if not d.is_dir():
            raise UserError(f"{base} has no {sub}/ folder; put A images in {base}/image_1/ and "
                            f"B images in {base}/image_2/ (paired by sorted file name)")
        files = sorted((p for p in d.iterdir() if _is_image_candidate(p)), key=lambda p: p.name)
        if not files:
            raise UserError(f"{d} is empty; add images (PNG, JPEG or TIFF)")
        for p in files:
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"{p} is not an image file (suffix {p.suffix or 'none'}); "
                                f"remove it, or use one of {', '.join(IMAGE_SUFFIXES)}")
        lists.append(files)
    if len(lists[0]) != len(lists[1]):
        raise UserError(f"{base}: image_1/ has {len(lists[0])} images but image_2/ has "
                        f"{len(lists[1])}; every A needs exactly one B (paired by sorted name)")
    return list(zip(*lists))


def name_mismatch_note(base: str | Path, pairs: list[tuple[Path, Path]]) -> str | None:
    """One-line note when paired files have different stems (pairing is by sorted order)."""
    bad = [(a, b) for a, b in pairs if a.stem != b.stem]
    if not bad:
        return None
    a, b = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return (f"note: {base}: image_1/{a.name} is paired with image_2/{b.name}{more}; file names "
            "differ, pairing is by sorted order")


def safe_name(s: str) -> str:
    """``s`` with every run of characters outside ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "pair"


def file_stem(name: str) -> str:
    """A pair name as part of a file name: the ``/`` of dataset pair names become ``--``
    (``sintel-clean/alley_1/0001`` -> ``sintel-clean--alley_1--0001``)."""
    return name.replace("/", "--")


def nonfinite_note(path: Path, count: int) -> str:
    """The one-line note printed when an image file held non-finite values."""
    return (f"note: {path}: {count} pixel{'s' if count != 1 else ''} with NaN or inf values "
            "replaced (NaN and -inf by 0, +inf by 1)")


def folder_pair(path_a: Path, path_b: Path, name: str, max_size: int | None, *,
                log: Callable[[str], None] | None = None) -> Pair:
    """Load one user pair (no ground truth) and downscale it.

    ``log`` receives a one-line note (:func:`nonfinite_note`) for each image file whose
    non-finite values were replaced; the counts are kept in ``Pair.nonfinite_pixels``.
    """
    a, b, bad = read_pair_images(path_a, path_b, log=log)
    pair = Pair(name, a, b, None, None, f"{path_a} | {path_b}",
                dict(file_a=path_a.name, file_b=path_b.name), nonfinite_pixels=bad)
    return resize_pair(pair, max_size)


def read_pair_images(path_a: Path, path_b: Path, *, log: Callable[[str], None] | None = None):
    """Both images of a pair (:func:`read_image`) and ``{"a": n, "b": m}``, the pixels of each that
    held NaN or inf; ``log`` gets a one-line note (:func:`nonfinite_note`) per such file."""
    (a, bad_a), (b, bad_b) = read_image(path_a), read_image(path_b)
    for path, count in ((path_a, bad_a), (path_b, bad_b)):
        if count and log is not None:
            log(nonfinite_note(path, count))
    return a, b, {"a": bad_a, "b": bad_b}


def check_pair(pair: Pair, patch_size: int) -> None:
    """Raise :class:`UserError` when an image of the pair is smaller than one patch."""
    for label, img in (("A", pair.a), ("B", pair.b)):
        h, w = img.shape[:2]
        if min(h, w) < patch_size:
            where = pair.info.get("file_a" if label == "A" else "file_b", "")
            raise UserError(f"pair {pair.name}: image {label} {where} is {w}x{h} pixels "
                            f"(after --max-size), smaller than the {patch_size}x{patch_size} patch;"
                            " use larger images, a larger --max-size or a smaller --patch-size")
