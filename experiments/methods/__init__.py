"""The methods room: what can run, declared once.

* :mod:`.timed`: the library functions behind each method (``classic_pm.patchmatch``,
  ``diff_pm.DifferentiablePatchMatch``, ``classic_pm.exact_nnf``) run with per-iteration timing
  (:class:`MethodRun`), their reconstructions, and the JIT warm-up.
* :mod:`.featured`: feature sets, an input of every matcher (raw patches, mean/std-normalised
  patches, a checkpoint's learnt features); the timed runs take them as ``features=``.
* :mod:`.core`: the registry's parts (:class:`Param`, :class:`Method` with its role: matcher,
  limit or baseline, :class:`Named`, :class:`Context`) and the functions that fill and read it.
* :mod:`.registry`: the suite's methods in the registry (:data:`METHODS`, :data:`NAMED`): per method its parameters
  (kinds of :mod:`experiments.options`), defaults, run function, label, reconstruction, seed use,
  checks and skip rule; the named settings (``dpm-reference``, ``dpm-keep``, ``dpm-learned``,
  ``pm-learned``, ``pm-normalised``, ``exact-learned``).

May import: the foundation (:mod:`experiments.errors`, :mod:`~experiments.options`,
:mod:`~experiments.devices`), the data room, ``classic_pm`` and ``diff_pm``.
"""
from .registry import (EXACT_MAX_PIXELS, METHODS, NAMED, Context, Method, Named, Param, role,
                       exact_skip_reason, label, order, register, unregister)
from .timed import MethodRun, classic_vote, run_dpm, run_exact, run_pm, tiny_pair, to_torch, warm_up

__all__ = ["METHODS", "NAMED", "Method", "Named", "Param", "Context", "register", "unregister",
           "label", "order", "role", "exact_skip_reason", "EXACT_MAX_PIXELS", "MethodRun", "run_pm",
           "run_dpm", "run_exact", "classic_vote", "tiny_pair", "to_torch", "warm_up"]
