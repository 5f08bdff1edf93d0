"""File readers of the standard datasets' ground truth (disparity, flow, homography, masks).

Each format is read by its own definition, checked against files written byte by byte the way
the datasets' tools write them (``tests/test_datasets.py``):

* PFM (:func:`read_pfm`, parsed here): a header ``Pf`` (one channel) or ``PF`` (three), the width
  and height, and a scale whose *sign* gives the byte order (negative: little-endian) while its
  magnitude is ignored, as Middlebury's SDK and the optical-flow projects read it (OpenCV instead
  divides the values by it: a MiddEval3 file with scale -1/255 would come out 255 times too
  large); then float32 rows, bottom row first. ``inf`` (unknown disparity) is kept.

Other formats are read by OpenCV:

* ``.flo``: ``cv2.readOpticalFlow`` returns float32 ``(H, W, 2)`` with channel 0 = u (x) and
  channel 1 = v (y); it returns ``None`` for a bad magic number or a truncated file.
* 16-bit PNG: ``IMREAD_UNCHANGED`` keeps uint16 and returns colour channels in BGR order, so the
  KITTI flow file's R, G, B are channels 2, 1, 0.

Malformed files become one-line :class:`~experiments.errors.UserError` messages naming the file.
"""
from __future__ import annotations

import re
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


_PFM_HEADER = re.compile(rb"(P[Ff])\s+(\d+)\s+(\d+)\s+([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s")


def read_pfm(path: str | Path, *, channels: int = 1) -> np.ndarray:
    """A PFM file as float32, top row first, non-finite values kept (see the module docstring).

    ``channels=1`` (a disparity map, ``Pf``): shape ``(H, W)``; ``channels=3`` (``PF``):
    ``(H, W, 3)``. Raises :class:`UserError` naming the file when it is not a readable PFM with
    that many channels (bad header, zero scale, truncated data).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    m = _PFM_HEADER.match(raw)
    if m is None:
        raise UserError(f"{path} is not a readable PFM file (bad header {raw[:20]!r}; expected "
                        "'Pf' or 'PF', width, height and scale); download it again")
    kind, w, h, scale = m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4))
    found = 1 if kind == b"Pf" else 3
    if found != channels:
        raise UserError(f"{path} is a {found}-channel PFM ({kind.decode()}); "
                        f"{'a disparity map' if channels == 1 else 'this file'} needs "
                        f"{channels} channel{'s' if channels > 1 else ''} "
                        f"({'Pf' if channels == 1 else 'PF'})")
    if scale == 0:
        raise UserError(f"{path} is not a readable PFM file (scale 0: its sign must give the byte order)")
    n = w * h * found
    data = raw[m.end():]
    if len(data) < 4 * n:
        raise UserError(f"{path} is not a readable PFM file (truncated: {len(data)} bytes of data for "
                        f"the {w} x {h} x {found} values its header states); download it again")
    values = np.frombuffer(data, "<f4" if scale < 0 else ">f4", count=n)
    img = values.reshape((h, w) if found == 1 else (h, w, found))[::-1]
    return np.ascontiguousarray(img, dtype=np.float32)


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
