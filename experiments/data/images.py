"""Image files and arrays: the one dtype policy, reading, writing and downscaling.

Images are float32 ``(H, W, 3)`` RGB in [0, 1]. User files are converted explicitly by
:func:`load_image`: 8-bit / 255, 16-bit / 65535, float clipped to [0, 1] (non-finite values
replaced: NaN and -inf by 0, +inf by 1; :func:`read_image` also counts the pixels concerned and
folder pairs report them); gray is replicated to RGB; an alpha channel is dropped (colour kept as
stored, not composited).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


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


def is_8bit(image: np.ndarray) -> bool:
    """Whether every value of a float image is an 8-bit level ``float32(k) / 255`` (what
    :func:`to_rgb_float` makes of uint8 data)."""
    x = np.asarray(image)
    return x.dtype == np.float32 and np.array_equal(to_8bit(x), x)


def to_8bit(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] rounded to the nearest 8-bit levels, float32 ``k / 255``: the values
    an 8-bit file of it would hold (and that classic PatchMatch compares exactly, on every CPU)."""
    k = np.rint(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * np.float32(255.0))
    return k.astype(np.float32) / np.float32(255.0)


def downscale(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """Area-downscale so that the longer side is at most ``max_size`` (never upscales). An 8-bit
    image (:func:`is_8bit`) stays 8-bit: the result is rounded to 8-bit levels, as a resized 8-bit
    file would be, so matching it is exact on every CPU (``classic_pm``'s 8-bit path)."""
    h, w = image.shape[:2]
    nh, nw = _scaled_shape(h, w, max_size)
    if (nh, nw) == (h, w):
        return image
    out = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    out = out.reshape(nh, nw, *image.shape[2:])
    return to_8bit(out) if is_8bit(image) else out
