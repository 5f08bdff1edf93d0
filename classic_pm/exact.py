"""Exact nearest-neighbour field by exhaustive search: the quality limit of PatchMatch.

Same conventions as :mod:`classic_pm.core` (float32 ``(H, W, C)`` images, int32 ``(Ha, Wa, 2)``
NNF of absolute (y, x) centres in B, edge-replicated borders, SSD patch distance). The search
runs in torch (CUDA when present) as chunked matrix products, so memory stays bounded.
"""

import numpy as np

from .core import _check_pair

__all__ = ["exact_nnf"]

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
