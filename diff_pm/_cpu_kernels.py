"""Compiled CPU forward kernel for the fused neighbourhood scores (placeholder: not yet enabled)."""
from __future__ import annotations


def available(t) -> bool:
    return False


def patch_scores(a, b, bx, by, patch_size):  # pragma: no cover
    raise NotImplementedError
