"""Classic PatchMatch (Barnes, Shechtman, Finkelstein, Goldman, SIGGRAPH 2009) on numba.

Public API: :func:`patchmatch`, :func:`vote`, :func:`patch_cost`, :func:`energy` (module
:mod:`classic_pm.core`), :func:`kd_nnf` (near-exact kd-tree NNF, :mod:`classic_pm.kd`),
:func:`exact_nnf` and :func:`sampled_exact_energy` (module :mod:`classic_pm.exact`). Conventions,
stated once in :mod:`classic_pm.core`: float32 (H, W, C) images in [0, 1] (uint8 read as k / 255;
8-bit data compared exactly on the 0-255 scale); NNF int32 (Ha, Wa, 2) of absolute (y, x)
centres in B; every pixel is a patch centre and patches crossing the border read the
edge-replicated image (padded once by patch_size // 2, the patch centred at (y, x) is
``padded[y:y + p, x:x + p]``).
"""

from .core import energy, patch_cost, patchmatch, vote
from .exact import SampledEnergy, exact_nnf, sampled_exact_energy
from .kd import kd_nnf

__all__ = ["patchmatch", "kd_nnf", "vote", "exact_nnf", "sampled_exact_energy", "SampledEnergy",
           "patch_cost", "energy"]
