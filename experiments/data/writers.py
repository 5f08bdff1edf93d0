"""Matches written in the formats other evaluation tools read, and matches brought back to scale.

* :func:`flow_of`: a match field as displacement ``(u, v) = (x_B - x, y_B - y)``.
* :func:`write_flo`: Middlebury ``.flo`` (``PIEH``, width, height, then ``(u, v)`` float32
  little-endian, row by row), the format of Sintel's and most flow tools' ground truth.
* :func:`write_kitti_flow`: KITTI's 16-bit flow PNG (``R = u * 64 + 2^15``, ``G = v * 64 + 2^15``,
  ``B = 1`` where valid), what the KITTI development kit reads; 1/64 px resolution.
* :func:`upscale_matches`: matches found on ``--max-size`` downscaled images mapped back onto
  the native images (pixel-centre convention of :func:`~experiments.data.pairs.resize_pair`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError


def flow_of(matches: np.ndarray) -> np.ndarray:
    """Displacement ``(u, v)`` float32 ``(H, W, 2)`` (channel 0 = x) of absolute (y, x) matches."""
    h, w = matches.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([matches[..., 1] - xs, matches[..., 0] - ys], axis=-1).astype(np.float32)


def write_flo(path: str | Path, matches: np.ndarray) -> Path:
    """Write absolute (y, x) matches as a Middlebury ``.flo`` displacement file."""
    flow = flow_of(matches)
    h, w = flow.shape[:2]
    path = Path(path)
    path.write_bytes(b"PIEH" + np.array([w, h], "<i4").tobytes() + flow.astype("<f4").tobytes())
    return path


def write_kitti_flow(path: str | Path, matches: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """Write absolute (y, x) matches as a KITTI 16-bit flow PNG (``valid``: where B's channel is 1;
    default everywhere). Displacements are rounded to 1/64 px and must lie within +-512 px."""
    flow = flow_of(matches)
    coded = np.rint(flow * 64.0 + 2.0 ** 15)
    if coded.min() < 0 or coded.max() > 65535:
        raise UserError(f"{path}: a displacement exceeds KITTI's +-512 px range; not written")
    ok = np.ones(flow.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    bgr = np.dstack([ok.astype(np.uint16), coded[..., 1].astype(np.uint16), coded[..., 0].astype(np.uint16)])
    if not cv2.imwrite(str(path), bgr):  # OpenCV writes B, G, R arrays as the file's R, G, B
        raise UserError(f"cannot write {path}")
    return Path(path)


def upscale_matches(matches: np.ndarray, shape_a: tuple[int, int], shape_b: tuple[int, int],
                    native_a: tuple[int, int], native_b: tuple[int, int]) -> np.ndarray:
    """Matches between downscaled images (A of ``shape_a``, B of ``shape_b``) as matches between the
    native images: the field resampled bilinearly onto native A's pixel grid, its values mapped
    into native B (``u = (u' + 0.5) * Hb / Hb' - 0.5`` per axis), clipped into B."""
    (ha, wa), (hb, wb) = shape_a[:2], shape_b[:2]
    (nha, nwa), (nhb, nwb) = native_a[:2], native_b[:2]
    field = np.asarray(matches, np.float32)
    if (nha, nwa) != (ha, wa):
        field = cv2.resize(field, (nwa, nha), interpolation=cv2.INTER_LINEAR)
    out = np.empty_like(field)
    out[..., 0] = np.clip((field[..., 0] + 0.5) * (nhb / hb) - 0.5, 0, nhb - 1)
    out[..., 1] = np.clip((field[..., 1] + 0.5) * (nwb / wb) - 0.5, 0, nwb - 1)
    return out
