"""Classic PatchMatch (Barnes, Shechtman, Finkelstein, Goldman, SIGGRAPH 2009) on numba.

Public API: :func:`patchmatch`, :func:`vote`, :func:`exact_nnf`, :func:`patch_cost` (and
:func:`energy`). Conventions, stated once in :mod:`classic_pm.core`: float32 (H, W, C) images in
[0, 1]; NNF int32 (Ha, Wa, 2) of absolute (y, x) centres in B; every pixel is a patch centre and
patches crossing the border read the edge-replicated image (padded once by patch_size // 2, the
patch centred at (y, x) is ``padded[y:y + p, x:x + p]``).
"""

from .core import energy, exact_nnf, patch_cost, patchmatch, vote

__all__ = ["patchmatch", "vote", "exact_nnf", "patch_cost", "energy"]
