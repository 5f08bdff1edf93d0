"""Quality metrics shared by every method, so that numbers compare.

* Reconstruction vs A (float RGB in [0, 1]): :func:`l1` (mean absolute error, DeepPruner's
  "L1 error"), :func:`mse` (mean squared error, its "L2 error"), :func:`psnr` (data range 1, dB)
  and :func:`ssim` (scikit-image, ``channel_axis=-1``, data range 1).
* NNF quality: :func:`energy`, the mean squared patch difference per pixel and channel at the
  integer-rounded, clipped matches, computed by ``classic_pm.patch_cost`` for every method.
* Against ground truth: :func:`epe` (mean end-point error in pixels over valid pixels) and
  :func:`within_1px` (fraction of valid pixels with end-point error <= 1 pixel; also at 3 and 5
  px, HPatches' thresholds: :func:`within_px`); NaN without GT.
* Each standard dataset's own metric (:func:`dataset_metrics`, columns :data:`DATASET_COLUMNS`),
  in percent of valid pixels: :func:`bad_percent` (Middlebury bad-2.0), :func:`outlier_percent`
  (KITTI Fl for flow, D1 for stereo), and :func:`epe` on the non-occluded / occluded valid
  pixels where the dataset gives an occlusion mask. Thresholds are in pixels of the evaluated
  (possibly ``--max-size`` downscaled) images.
* :func:`iteration_metrics`: all of the above for one NNF of a pair, the one function behind
  every per-iteration row (``compare``'s runner and the held-out evaluation of :mod:`learning`).
"""
from __future__ import annotations

import math

import numpy as np

from ..data.pairs import round_nnf


def _check_images(a: np.ndarray, recon: np.ndarray) -> None:
    if a.shape != recon.shape:
        raise ValueError(f"image shapes differ: A {a.shape} vs reconstruction {recon.shape}")


def l1(a: np.ndarray, recon: np.ndarray) -> float:
    """Mean absolute difference over pixels and channels, ``(H, W, C)`` in [0, 1]."""
    _check_images(a, recon)
    return float(np.mean(np.abs(a.astype(np.float64) - recon.astype(np.float64))))


def mse(a: np.ndarray, recon: np.ndarray) -> float:
    """Mean squared difference over pixels and channels, ``(H, W, C)`` in [0, 1]."""
    _check_images(a, recon)
    return float(np.mean((a.astype(np.float64) - recon.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, recon: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    return psnr_of_mse(mse(a, recon), data_range=data_range)


def psnr_of_mse(m: float, *, data_range: float = 1.0) -> float:
    """PSNR in dB of a mean squared error (``inf`` for 0)."""
    return math.inf if m == 0 else float(10.0 * math.log10(data_range ** 2 / m))


def ssim(a: np.ndarray, recon: np.ndarray, *, data_range: float = 1.0) -> float:
    """Mean structural similarity (scikit-image defaults, 7 x 7 window, ``channel_axis=-1``)."""
    from skimage.metrics import structural_similarity  # deferred: heavy import

    _check_images(a, recon)
    win = min(7, *a.shape[:2])
    win -= 1 - win % 2  # odd window that fits tiny images
    return float(structural_similarity(a, recon, data_range=data_range, channel_axis=-1,
                                       win_size=win))


def energy(a: np.ndarray, b: np.ndarray, nnf: np.ndarray, *, patch_size: int = 7) -> float:
    """Mean patch SSD per pixel and channel at the rounded, clipped matches (any NNF).

    ``classic_pm.energy(a, b, round_nnf(nnf), patch_size=p)``, i.e.
    ``mean(patch_cost(a, b, round(nnf))) / (p*p*C)``: the one energy of the suite (all methods and
    the exact NNF use it), in [0, 1] units squared.
    """
    import classic_pm  # deferred: imports numba (heavy); the metrics of images need none

    return classic_pm.energy(a, b, round_nnf(nnf, b.shape), patch_size=patch_size)


def end_point_errors(nnf: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels between matches and ground truth, on valid pixels (1-D)."""
    d = np.asarray(nnf, np.float64)[valid] - np.asarray(gt, np.float64)[valid]
    return np.sqrt(np.sum(d * d, axis=-1))


def _errors(nnf: np.ndarray, gt: np.ndarray | None, valid: np.ndarray | None) -> np.ndarray | None:
    """:func:`end_point_errors`, or None without ground truth or valid pixels."""
    if gt is None or valid is None or not valid.any():
        return None
    return end_point_errors(nnf, gt, valid)


def _mean(values: np.ndarray | None, scale: float = 1.0) -> float:
    """``scale`` x the mean of ``values``; NaN for None or an empty array."""
    return math.nan if values is None or values.size == 0 else float(scale * np.mean(values))


def epe(nnf: np.ndarray, gt: np.ndarray | None, valid: np.ndarray | None) -> float:
    """Mean end-point error over valid pixels (NaN without ground truth or valid pixels)."""
    return _mean(_errors(nnf, gt, valid))


def within_1px(nnf: np.ndarray, gt: np.ndarray | None, valid: np.ndarray | None) -> float:
    """Fraction of valid pixels whose end-point error is at most 1 pixel (NaN without GT)."""
    return within_px(nnf, gt, valid, threshold_px=1.0)


def within_px(nnf: np.ndarray, gt: np.ndarray | None, valid: np.ndarray | None, *,
              threshold_px: float) -> float:
    """Fraction of valid pixels whose end-point error is at most ``threshold_px`` (NaN without GT)."""
    return _within(_errors(nnf, gt, valid), threshold_px)


def _within(err: np.ndarray | None, threshold_px: float) -> float:
    return _mean(None if err is None else err <= threshold_px)


def image_metrics(a: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    """``psnr, ssim, l1, mse`` of a reconstruction against A."""
    m = mse(a, recon)
    return dict(psnr=psnr_of_mse(m), ssim=ssim(a, recon), l1=l1(a, recon), mse=m)


def iteration_metrics(pair, nnf: np.ndarray, recon: np.ndarray, *,
                      patch_size: int) -> dict[str, float]:
    """Quality of one NNF of a pair: the metric columns of a ``metrics.csv`` row.

    Parameters
    ----------
    pair : experiments.data.pairs.Pair
        Uses ``a``, ``b``, ``gt``, ``valid`` (and, for :func:`dataset_metrics`, ``info`` and ``masks``).
    nnf : ndarray, shape (Ha, Wa, 2)
        Absolute (y, x) positions in B (int or float): the matches the method compared.
    recon : ndarray, shape (Ha, Wa, 3)
        The method's own reconstruction of A; clipped into [0, 1] here.
    patch_size : int, keyword-only
        Patch side of the energy.

    Returns
    -------
    dict
        ``psnr, ssim, l1, mse`` (reconstruction vs A), ``energy``, ``epe``, ``within_1px``,
        ``within_3px``, ``within_5px`` (NaN
        without ground truth) and the :data:`DATASET_COLUMNS`.
    """
    recon = np.clip(recon, 0.0, 1.0)
    err = _errors(nnf, pair.gt, pair.valid)  # once for every ground-truth column
    return dict(**image_metrics(pair.a, recon),
                energy=energy(pair.a, pair.b, nnf, patch_size=patch_size),
                epe=_mean(err), within_1px=_within(err, 1.0), within_3px=_within(err, 3.0),
                within_5px=_within(err, 5.0),
                **_dataset_metrics(pair, err))


# --------------------------------------------------------------------------- dataset metrics
DATASET_COLUMNS = ("bad_2_0", "fl", "d1", "epe_noc", "epe_occ")

# The own metric of each dataset kind (``pair.info["dataset"]``) that has one.
_OWN_METRIC = {"middlebury": "bad_2_0", "kitti-flow": "fl", "kitti-stereo": "d1"}


def bad_percent(nnf: np.ndarray, gt: np.ndarray | None, valid: np.ndarray | None, *,
                threshold_px: float = 2.0) -> float:
    """Percentage of valid pixels whose end-point error exceeds ``threshold_px`` (Middlebury
    bad-2.0 with the default); NaN without ground truth or valid pixels."""
    return _bad_percent(_errors(nnf, gt, valid), threshold_px)


def _bad_percent(err: np.ndarray | None, threshold_px: float = 2.0) -> float:
    return _mean(None if err is None else err > threshold_px, 100.0)


def outlier_percent(nnf: np.ndarray, gt: np.ndarray | None, valid: np.ndarray | None, *,
                    abs_px: float = 3.0, rel: float = 0.05) -> float:
    """KITTI outliers (Fl for flow, D1 for disparity) in percent of valid pixels.

    A valid pixel (y, x) is an outlier when its end-point error is greater than ``abs_px`` pixels
    and greater than ``rel`` times the true displacement ``|gt[y, x] - (y, x)|`` (the flow
    magnitude, or the disparity). NaN without ground truth or valid pixels.

    Parameters
    ----------
    nnf, gt : ndarray, shape (Ha, Wa, 2)
        Absolute (y, x) positions in B.
    valid : ndarray, shape (Ha, Wa), bool
    """
    return _outliers(_errors(nnf, gt, valid), gt, valid, abs_px=abs_px, rel=rel)


def _outliers(err: np.ndarray | None, gt, valid, *, abs_px: float = 3.0, rel: float = 0.05) -> float:
    """:func:`outlier_percent` from the end-point errors of the valid pixels."""
    if err is None:
        return math.nan
    pix = np.stack(np.nonzero(valid), axis=-1).astype(np.float64)  # row-major, as gt[valid]
    mag = np.sqrt(np.sum((np.asarray(gt, np.float64)[valid] - pix) ** 2, axis=-1))
    return _mean((err > abs_px) & (err > rel * mag), 100.0)


def dataset_metrics(pair, nnf: np.ndarray) -> dict[str, float]:
    """The dataset's own metrics of a match field, keyed by :data:`DATASET_COLUMNS`.

    Always the same keys, NaN where a metric does not apply: ``bad_2_0`` for Middlebury pairs,
    ``fl`` for KITTI flow, ``d1`` for KITTI stereo (percent of valid pixels, from
    ``pair.info["dataset"]``); ``epe_noc`` / ``epe_occ`` (pixels) on the valid pixels inside /
    outside ``pair.masks["noc"]`` where the pair has that mask.

    Parameters
    ----------
    pair : experiments.data.pairs.Pair
        Uses ``gt``, ``valid``, ``info["dataset"]`` and ``masks``.
    nnf : ndarray, shape (Ha, Wa, 2)
        Absolute (y, x) positions in B.
    """
    return _dataset_metrics(pair, _errors(nnf, pair.gt, pair.valid))


def _dataset_metrics(pair, err: np.ndarray | None) -> dict[str, float]:
    """:func:`dataset_metrics` from the end-point errors of the valid pixels (None: no ground truth)."""
    out = dict.fromkeys(DATASET_COLUMNS, math.nan)
    if err is None:
        return out
    own = _OWN_METRIC.get(pair.info.get("dataset"))
    if own == "bad_2_0":
        out[own] = _bad_percent(err)
    elif own is not None:
        out[own] = _outliers(err, pair.gt, pair.valid)
    noc = pair.masks.get("noc")
    if noc is not None:
        inside = noc[pair.valid]  # err follows gt[valid]'s row-major order
        out["epe_noc"] = _mean(err[inside])
        out["epe_occ"] = _mean(err[~inside])
    return out
