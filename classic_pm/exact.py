"""Exact nearest-neighbour field by exhaustive search: the quality limit of PatchMatch.

:func:`exact_nnf` searches every pixel (torch matrix products, CUDA when present);
:func:`sampled_exact_energy` searches a seeded sample of pixels (numba, exact SSD) and estimates
an NNF's energy gap to the optimum with a confidence interval where the full search is too slow.

Same conventions as :mod:`classic_pm.core` (float32 ``(H, W, C)`` images, int32 ``(Ha, Wa, 2)``
NNF of absolute (y, x) centres in B, edge-replicated borders, SSD patch distance). The search
runs in torch (CUDA when present) as chunked matrix products, so memory stays bounded.
"""

import dataclasses
import math

import numpy as np

from .core import _check_int, _check_nnf, _check_pair, _parallel_context, _stored_pair

__all__ = ["exact_nnf", "sampled_exact_energy", "SampledEnergy"]

# Memory caps: one distance block, and B's patches kept across A chunks.
_EXACT_BLOCK_BYTES = 64 * 2 ** 20
_EXACT_CACHE_BYTES = 512 * 2 ** 20


def exact_nnf(a, b, *, patch_size=7, device=None):
    """Exact nearest-neighbour field by exhaustive search (the quality limit of PatchMatch).

    SSDs come from ``|a|^2 + |b|^2 - 2 a.b`` with one matrix product per chunk of A's and B's
    patches, so memory stays bounded (about 64 MB per distance block plus the patch chunks)
    whatever the image size. Images are centred by B's mean colour first (SSD is unchanged, the
    rounding error shrinks). Small problems (at most 2e9 multiply-adds) run in float64, larger
    ones in float32. Ties go to the lowest row-major index in B (earlier B chunks win ties,
    ``torch.min`` takes the first minimum within a chunk), so the result is deterministic on a
    given device.

    Parameters
    ----------
    a, b, patch_size :
        As for :func:`patchmatch`.
    device : str or torch.device, keyword-only
        None picks CUDA when available, else CPU.

    Returns
    -------
    nnf : ndarray, int32, shape (Ha, Wa, 2)
    """
    import torch  # deferred: torch is heavy and only the exact search needs it
    import torch.nn.functional as F

    a, b, p = _check_pair(a, b, patch_size)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    Ha, Wa, C = a.shape
    Hb, Wb = b.shape[:2]
    D = p * p * C
    Na, Nb = Ha * Wa, Hb * Wb
    dtype = torch.float64 if Na * Nb * D <= 2e9 else torch.float32
    item = 8 if dtype == torch.float64 else 4
    r = p // 2
    mean = b.reshape(-1, C).mean(axis=0, dtype=np.float64)

    def padded(img):
        x = np.pad(img - mean, ((r, r), (r, r), (0, 0)), mode="edge")
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).to(device, dtype)

    def patches(pad, y0, y1):
        """Patches centred on rows y0..y1-1, as (n, D) rows in row-major pixel order."""
        return F.unfold(pad[None, :, y0:y1 + 2 * r], p)[0].T.contiguous()

    pa, pb = padded(a), padded(b)
    block = _EXACT_BLOCK_BYTES // item  # elements of one distance block
    # B chunks of about block / 1024 patches, so that A chunks hold about 1024 patches.
    rows_b = max(1, min(Hb, block // (1024 * Wb)))
    rows_a = max(1, min(Ha, block // (rows_b * Wb * Wa)))
    b_starts = list(range(0, Hb, rows_b))

    def b_chunk(y0):
        pbc = patches(pb, y0, min(Hb, y0 + rows_b))
        return pbc, (pbc * pbc).sum(1)

    # Keeping all of B's patches costs Nb * D elements; beyond the cap they are rebuilt per A chunk.
    cached = [b_chunk(y0) for y0 in b_starts] if Nb * D * item <= _EXACT_CACHE_BYTES else None

    out = np.empty((Na,), np.int64)
    for ya in range(0, Ha, rows_a):
        pac = patches(pa, ya, min(Ha, ya + rows_a))
        best_val = torch.full((pac.shape[0],), float("inf"), dtype=dtype, device=device)
        best_idx = torch.zeros((pac.shape[0],), dtype=torch.int64, device=device)
        for i, y0 in enumerate(b_starts):
            pbc, nb = cached[i] if cached is not None else b_chunk(y0)
            start = y0 * Wb
            d = torch.addmm(nb[None, :], pac, pbc.T, beta=1.0, alpha=-2.0)
            val, idx = torch.min(d, dim=1)
            better = val < best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + start, best_idx)
        out[ya * Wa:ya * Wa + pac.shape[0]] = best_idx.cpu().numpy()
    nnf = np.empty((Ha, Wa, 2), np.int32)
    nnf[..., 0] = (out // Wb).reshape(Ha, Wa)
    nnf[..., 1] = (out % Wb).reshape(Ha, Wa)
    return nnf


@dataclasses.dataclass(frozen=True)
class SampledEnergy:
    """Result of :func:`sampled_exact_energy`; costs and energies on the [0, 1] scale.

    Attributes
    ----------
    samples : int
        Number of sampled pixels n.
    energy, energy_exact : float
        Mean SSD per pixel and channel over the sample: of the given NNF, of the exact NNF.
    gap : float
        ``energy / energy_exact - 1``: the relative energy gap on the sample (a ratio of means,
        the estimate of the whole interior's ``energy(nnf) / energy(exact) - 1``).
    gap_se : float
        Its standard error (delta method for a ratio of paired means).
    gap_ci95 : tuple of float
        ``gap -/+ 1.96 * gap_se``: normal 95% confidence interval.
    exact_fraction : float
        Fraction of sampled pixels whose match already has the exact minimum SSD.
    pixels : ndarray, int64, shape (n, 2)
        The sampled (y, x) pixels of A, row-major order.
    matches, matches_exact : ndarray, int32, shape (n, 2)
        The given NNF at those pixels, and a centre of B that attains the minimum SSD.
    cost, cost_exact : ndarray, float64, shape (n,)
        SSD of ``matches`` and of ``matches_exact``.
    """

    samples: int
    energy: float
    energy_exact: float
    gap: float
    gap_se: float
    gap_ci95: tuple
    exact_fraction: float
    pixels: np.ndarray
    matches: np.ndarray
    matches_exact: np.ndarray
    cost: np.ndarray
    cost_exact: np.ndarray


def sampled_exact_energy(a, b, nnf, *, patch_size=7, samples=1000, seed=0, threads=1):
    """Energy gap of an NNF to the exact NNF, estimated on a seeded sample of pixels of A.

    Draws ``samples`` distinct interior pixels of A (patch wholly inside A, as
    ``energy(interior=True)``) uniformly with ``numpy.random.default_rng(seed)``, searches all
    of B exhaustively for each (numba, the library's SSD: exact for 8-bit inputs; each search is
    bounded by the given match's cost, so a good NNF makes it fast), and compares, pixel by
    pixel, the given NNF's cost with the exact minimum.

    The gap is a ratio of paired means, ``mean(cost) / mean(cost_exact) - 1``, not a mean of
    per-pixel ratios (a pixel whose exact cost is 0 has no finite ratio); its standard error
    comes from the delta method, ``sd(cost - (1 + gap) * cost_exact) / (sqrt(n) *
    mean(cost_exact))``, and the 95% interval is ``gap -/+ 1.96 se`` (normal approximation; with
    n = 1000 the sampling error of the mean dominates). The full interior ``energy`` of the NNF
    is a separate, exact number: this function estimates only how far it is from the optimum.

    Parameters
    ----------
    a, b, patch_size :
        As for :func:`patchmatch`.
    nnf : ndarray, int, shape (Ha, Wa, 2)
        The NNF to assess, absolute (y, x) centres in B.
    samples : int, keyword-only
        Pixels to sample (>= 2; all interior pixels if fewer).
    seed : int, keyword-only
        Seed of the sample (numpy ``default_rng``).
    threads : int, keyword-only
        Sampled pixels searched in parallel with this many numba threads.

    Returns
    -------
    SampledEnergy
    """
    st = _stored_pair(a, b, patch_size)
    samples = _check_int(samples, "samples", 2)
    seed = _check_int(seed, "seed", 0)
    threads = _check_int(threads, "threads", 1)
    nnf = _check_nnf(nnf, st.a_shape, st.b_shape)
    p, r = st.p, st.p // 2
    Ha, Wa = st.a_shape[:2]
    Hb, Wb = st.b_shape[:2]
    hi, wi = Ha - 2 * r, Wa - 2 * r
    if hi * wi < 2:
        raise ValueError(f"a has only {max(0, hi) * max(0, wi)} interior pixel(s) for "
                         f"patch_size {p}, need at least 2")
    n = min(samples, hi * wi)
    flat = np.sort(np.random.default_rng(seed).choice(hi * wi, size=n, replace=False))
    ys = (flat // wi + r).astype(np.int64)
    xs = (flat % wi + r).astype(np.int64)
    given = nnf[ys, xs]
    cost = _sample_costs(st, ys, xs, given)
    my = given[:, 0].astype(np.int64)
    mx = given[:, 1].astype(np.int64)
    best = cost.copy()
    search = st.kernels.exact_at_serial if threads == 1 else st.kernels.exact_at_parallel
    with _parallel_context(threads):
        search(st.A2, st.B2, st.mask, ys, xs, p, st.C, Hb, Wb, best, my, mx)
    c = st.to_unit(cost)
    e = st.to_unit(best)
    denom = p * p * st.C
    mean_c, mean_e = float(c.mean()), float(e.mean())
    gap = mean_c / mean_e - 1 if mean_e > 0 else (0.0 if mean_c == 0 else math.inf)
    if mean_e > 0:
        resid = c - (1 + gap) * e
        se = float(resid.std(ddof=1) / math.sqrt(n) / mean_e)
    else:
        se = 0.0 if mean_c == 0 else math.inf
    return SampledEnergy(
        samples=n, energy=mean_c / denom, energy_exact=mean_e / denom, gap=gap, gap_se=se,
        gap_ci95=(gap - 1.96 * se, gap + 1.96 * se), exact_fraction=float(np.mean(best == cost)),
        pixels=np.stack([ys, xs], axis=1), matches=given.astype(np.int32),
        matches_exact=np.stack([my, mx], axis=1).astype(np.int32), cost=c, cost_exact=e)


def _sample_costs(st, ys, xs, matches):
    """Storage-scale SSD (float32, (n,)) between A's patches at (ys, xs) and B's at ``matches``."""
    out = np.empty(ys.shape[0], np.float32)
    st.kernels.costs_at(st.A2, st.B2, st.mask, ys, xs, matches[:, 0].astype(np.int64),
                        matches[:, 1].astype(np.int64), st.p, st.C, out)
    return out
