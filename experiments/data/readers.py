"""File readers of the standard datasets' ground truth (disparity, flow, homography, masks).

File formats are read by OpenCV (checked by writing files with known content and reading them
back, see ``tests/test_datasets.py``):

* PFM: ``cv2.imdecode(..., IMREAD_UNCHANGED)`` returns float32 rows top-to-bottom (the file
  stores them bottom-to-top; OpenCV flips them), either byte order, ``inf`` kept. OpenCV divides
  the values by ``|scale|`` of the header; Middlebury's ``pfmwrite`` writes scale -1 (no change).
* ``.flo``: ``cv2.readOpticalFlow`` returns float32 ``(H, W, 2)`` with channel 0 = u (x) and
  channel 1 = v (y); it returns ``None`` for a bad magic number or a truncated file.
* 16-bit PNG: ``IMREAD_UNCHANGED`` keeps uint16 and returns colour channels in BGR order, so the
  KITTI flow file's R, G, B are channels 2, 1, 0.

Malformed files become one-line :class:`~experiments.errors.UserError` messages naming the file.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError
from .images import decode_file


# --------------------------------------------------------------------------- file readers
def _decode(path: Path, what: str) -> np.ndarray:
    """Any image file as OpenCV decodes it (``IMREAD_UNCHANGED``: dtype kept, BGR order)."""
    img = decode_file(path)
    if img is None:
        raise UserError(f"{path} is not a readable {what} (bad header, wrong size or truncated "
                        "file); download it again")
    return img


def _describe(img: np.ndarray) -> str:
    bits = {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(img.dtype,
                                                                           str(img.dtype))
    article = "an" if bits[0] in "8aeiou" else "a"
    return f"{article} {bits} {1 if img.ndim == 2 else img.shape[2]}-channel image"


def read_pfm(path: str | Path) -> np.ndarray:
    """Single-channel PFM (``Pf``) as float32 ``(H, W)``, top row first, non-finite values kept.

    Raises :class:`UserError` naming the file when it is not a readable one-channel PFM.
    """
    path = Path(path)
    img = _decode(path, "PFM file")
    if img.ndim != 2 or img.dtype != np.float32:
        raise UserError(f"{path} is {_describe(img)}; a disparity PFM has one float channel (Pf)")
    return img


def read_flo(path: str | Path) -> np.ndarray:
    """Middlebury ``.flo`` optical flow as float32 ``(H, W, 2)``: channel 0 = u (x), 1 = v (y).

    Raises :class:`UserError` naming the file for a bad magic number or a truncated file.
    """
    path = Path(path)
    flow = cv2.readOpticalFlow(str(path))
    if flow is None or flow.size == 0:  # say why from the header
        try:
            with open(path, "rb") as f:
                head = f.read(12)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        if head[:4] != b"PIEH":
            why = f"bad magic number {head[:4]!r}, expected b'PIEH'"
        else:
            w, h = np.frombuffer(head[4:12].ljust(8, b"\0"), "<i4")
            why = f"truncated or wrong size for the {w} x {h} flow its header states"
        raise UserError(f"{path} is not a readable .flo file ({why}); download it again")
    return flow


def read_kitti_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """KITTI 16-bit flow PNG as ``flow`` float32 ``(H, W, 2)`` (u, v) and ``valid`` ``(H, W)``.

    ``u = (R - 2**15) / 64``, ``v = (G - 2**15) / 64``, valid where B is nonzero (OpenCV returns
    B, G, R). Raises :class:`UserError` naming the file unless it is 16-bit with 3 channels.
    """
    path = Path(path)
    img = _decode(path, "PNG image")
    if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
        raise UserError(f"{path} is {_describe(img)}; KITTI flow ground truth is a 16-bit "
                        "3-channel PNG (download it again; do not convert it)")
    u = (img[:, :, 2].astype(np.float32) - 2.0 ** 15) / 64.0
    v = (img[:, :, 1].astype(np.float32) - 2.0 ** 15) / 64.0
    return np.stack([u, v], axis=-1), img[:, :, 0] != 0


def read_kitti_disparity(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """KITTI 16-bit disparity PNG as ``disp`` float32 ``(H, W)`` (value / 256) and ``valid``.

    0 = no ground truth. Raises :class:`UserError` naming the file unless it is 16-bit gray.
    """
    path = Path(path)
    img = _decode(path, "PNG image")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise UserError(f"{path} is {_describe(img)}; KITTI disparity ground truth is a 16-bit "
                        "1-channel PNG (download it again; do not convert it)")
    return img.astype(np.float32) / 256.0, img > 0


def read_homography(path: str | Path) -> np.ndarray:
    """3 x 3 text matrix (HPatches ``H_1_k``) as float64; :class:`UserError` when malformed."""
    path = Path(path)
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        m = None
    if m is None or m.shape != (3, 3) or not np.isfinite(m).all():
        raise UserError(f"{path} is not a 3 x 3 homography (nine numbers in three text rows)")
    return m


def _read_mask(path: Path) -> np.ndarray:
    """8-bit mask image as uint8 ``(H, W)`` (first channel of a colour file)."""
    img = _decode(path, "mask image")
    if img.dtype != np.uint8:
        raise UserError(f"{path} is {_describe(img)}; expected an 8-bit mask")
    return img if img.ndim == 2 else img[:, :, 0]


def _check_shape(array: np.ndarray, shape: tuple[int, int], path: Path, image: Path) -> None:
    if array.shape[:2] != tuple(shape):
        raise UserError(f"{path} is {array.shape[1]} x {array.shape[0]} but {image} is "
                        f"{shape[1]} x {shape[0]}; ground truth and image must have the same size")
