"""Differentiable PatchMatch (DeepPruner, ICCV 2019) in PyTorch, without the memory blow-up.

Public API: :class:`DifferentiablePatchMatch`, :func:`reconstruct`, :class:`NeighbourhoodFeatures`
(the default features; pass any ``(N, C, H, W) -> (N, F, H, W)`` module as ``features=``), the
layers as functions and modules, and :data:`QUIRKS` (the reference's behaviours the defaults fix,
by name). Conventions: see :mod:`diff_pm._common`.
"""
from ._common import FRAME_QUIRKS, QUIRKS, Frame, pixel_to_grid
from .evaluation import (Evaluation, PropagateEvaluate, evaluate, materialized_scores, particle_positions,
                         patch_scores, propagate_evaluate, propagated_scores, select_offsets, tiled_scores)
from .features import NeighbourhoodFeatures, neighbourhood_features
from .model import DifferentiablePatchMatch
from .propagation import Propagation, propagate
from .reconstruction import Reconstruction, reconstruct
from .sampling import ParticleSampler, sample_particles

__all__ = ["DifferentiablePatchMatch", "reconstruct", "Reconstruction", "NeighbourhoodFeatures",
           "neighbourhood_features", "ParticleSampler", "sample_particles", "Propagation", "propagate",
           "Evaluation", "evaluate", "PropagateEvaluate", "propagate_evaluate", "select_offsets",
           "particle_positions", "patch_scores", "propagated_scores", "tiled_scores", "materialized_scores",
           "pixel_to_grid", "Frame", "QUIRKS", "FRAME_QUIRKS"]
