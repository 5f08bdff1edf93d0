"""The method registry: every method of the suite, declared once, read by every engine.

A :class:`Method` is one registration: its parameters (each a :class:`Param`: a kind from the one
validation vocabulary, :mod:`experiments.options`, and whether it reaches the library and the
unit key), the defaults of its library function (read from its signature, so a changed default
is a changed unit), how to prepare a timed run (``prepare(params, options, context)``, which
returns ``run(pair, *, seed, progress=None) -> MethodRun`` with the method's own reconstruction),
whether it takes a seed, and optionally a check of its options and a rule for skipping a pair.

A :class:`Named` setting is a method with some parameters fixed, under a name of its own: the
names of ``compare``'s tables and figures (``dpm-reference`` is ``dpm`` with
``reference_quirks=True``). Every method is also a named setting of itself.

``compare``, ``sweep``, the results tables, the reports and the figures read these two tables
(:data:`METHODS`, :data:`NAMED`), so :func:`register` is all a new method needs.
"""
from __future__ import annotations

import math

from ..options import COUNT, PATCH, Kind
from . import featured, timed
from .core import (METHODS, NAMED, Context, Method, Named, Param, label, name_settings, order, register, role,
                   signature_defaults, unregister)
from .timed import MethodRun, run_baseline, run_dpm, run_exact, run_kd, run_pm

__all__ = ["METHODS", "NAMED", "Context", "Method", "Named", "Param", "label", "name_settings", "order",
           "register", "role", "signature_defaults", "unregister", "EXACT_MAX_PIXELS", "exact_skip_reason"]


# --------------------------------------------------------------------------- pm
def _pm_defaults() -> dict:
    import classic_pm  # deferred: heavy import (numba)

    return signature_defaults(classic_pm.patchmatch, PM_PARAMS)


def _features(params: dict, ctx: Context):
    """The feature function of a setting's ``features`` (None: raw patches; see :mod:`.featured`)."""
    sha = params.get("checkpoint_sha256")
    module = ctx.checkpoint_model(sha, {}).features if sha else None
    return featured.feature_function(params.get("features", "raw"), module=module, area=params.get("area"),
                                     patch_size=int(params["patch_size"]), device=ctx.device)[0]


def _prepare_pm(params: dict, options: dict, ctx: Context):
    features = _features(params, ctx)

    def run(pair, *, seed: int, progress=None) -> MethodRun:
        return run_pm(pair, iterations=int(params["iterations"]), patch_size=int(params["patch_size"]),
                      seed=seed, threads=ctx.threads, refine_radius=params.get("refine_radius"),
                      progress=progress, features=features)

    return run


#: The parameters that make a matcher compare features (:mod:`.featured`) instead of RGB patches.
FEATURE_PARAMS = {
    "features": Param(Kind("choice", choices=featured.FEATURE_SETS),
                      "what is matched: raw RGB patches, mean/std-normalised patches of side `area`, or "
                      "the learnt features of `checkpoint` (matched pixel by pixel; the reconstruction "
                      "always votes RGB patches)", arg=False, earlier="raw"),
    "area": Param(Kind("int", minimum=1, odd=True), "side (px) of the normalised patches (default: the "
                                                    "area the checkpoint's features see, else patch_size)",
                  arg=False),
    "checkpoint": Param(Kind("path"), "checkpoint of the learnt features (from `train`)", arg=False, key=False),
}
PM_PARAMS = {
    "iterations": Param(COUNT, "PatchMatch iterations"),
    "patch_size": Param(PATCH, "odd patch side (px) of the matching, the reconstruction and the energy"),
    "refine_radius": Param(Kind("int", minimum=0), "second search candidate at radii 2..refine_radius "
                                                   "(0: Barnes et al.'s one per radius)"),
    **FEATURE_PARAMS,
}


# --------------------------------------------------------------------------- pm-kd
def _kd_defaults() -> dict:
    import classic_pm  # deferred: heavy import (numba)

    return signature_defaults(classic_pm.kd_nnf, KD_PARAMS)


def _prepare_kd(params: dict, options: dict, ctx: Context):
    def run(pair, *, seed: int, progress=None) -> MethodRun:
        return run_kd(pair, patch_size=int(params["patch_size"]), seed=seed, threads=ctx.threads,
                      progress=progress, **{k: int(params[k]) for k in ("dims", "leaf_size", "rerank", "passes")})

    return run


KD_PARAMS = {
    "patch_size": Param(PATCH, "odd patch side (px) of the matching, the reconstruction and the energy"),
    "dims": Param(COUNT, "PCA dimensions of the patches in the kd-tree"),
    "leaf_size": Param(COUNT, "most patches of B per leaf"),
    "rerank": Param(Kind("int", minimum=0), "tree candidates per pixel compared by exact SSD"),
    "passes": Param(Kind("int", minimum=0), "PatchMatch polishing passes after the query"),
}


# --------------------------------------------------------------------------- dpm
def _dpm_defaults() -> dict:
    import diff_pm  # deferred: heavy import (torch, numba)

    return signature_defaults(diff_pm.DifferentiablePatchMatch.__init__, DPM_PARAMS)


def _dpm_check(options: dict):
    import diff_pm  # deferred: heavy import

    return diff_pm.DifferentiablePatchMatch(**options)


def _prepare_dpm(params: dict, options: dict, ctx: Context):
    sha = params.get("checkpoint_sha256")
    model = ctx.checkpoint_model(sha, options) if sha else _dpm_check(options)
    patch = int(params.get("patch_size") or 7)

    def run(pair, *, seed: int, progress=None) -> MethodRun:
        return run_dpm(model, pair, device=ctx.device, seed=seed, patch_size=patch, threads=ctx.threads,
                       progress=progress)

    run.model = model  # what the options built (for inspection)
    return run


def _quirk_kind() -> Kind:
    import diff_pm  # deferred: heavy import; only DPM quirks need it

    return Kind("names", choices=tuple(diff_pm.QUIRKS), noun="quirk")


class _Quirks(Kind):
    """``names`` whose choices are ``diff_pm.QUIRKS``, looked up when a value is checked."""

    def check(self, value, where, *, base=None, grid=False):
        return _quirk_kind().check(value, where, base=base, grid=grid)


DPM_PARAMS = {
    "iterations": Param(COUNT, "DPM iterations"),
    "sample_count": Param(COUNT, "k: (k+1)^2 particles per pixel"),
    "window": Param(Kind("window"), "search window (height, width) in px around each offset"),
    "temperature": Param(Kind("float", minimum=0), "softmax temperature of the evaluation"),
    "evaluation": Param(Kind("choice", choices=("soft", "hard")), "soft (softmax-weighted) or hard (argmax)"),
    "keep_current": Param(Kind("bool"), "keep each pixel's current offset as a candidate"),
    "reference_quirks": Param(Kind("bool"), "every quirk of the DeepPruner reference"),
    "noise": Param(Kind("choice", choices=("shared", "independent")),
                   "one uniform draw serves a particle's x and y sample (shared, the reference) or "
                   "separate draws (independent)"),
    "search_range": Param(Kind("choice", choices=("full", "inside")),
                          "initial range: the reference's full [-W, W] x [-H, H] or the offsets inside B"),
    "outside": Param(Kind("choice", choices=("clamp", "reflect")),
                     "particles outside B: compared at B's border (clamp, the reference) or mirrored "
                     "into B (reflect)", earlier="clamp"),
    "quirks": Param(_Quirks("names", noun="quirk"), "reference quirks to reproduce (names from diff_pm.QUIRKS)"),
    "patch_size": Param(PATCH, "odd patch side (px) of the features and the voting reconstruction"),
    "checkpoint": Param(Kind("path"), "learnt DPM checkpoint (from `train`); the parameters not given "
                                      "come from the checkpoint", arg=False, key=False),
}


# --------------------------------------------------------------------------- exact
#: The exact NNF runs only when sqrt(pixels of A x pixels of B) <= this, by device, unless a
#: ``max_pixels`` is given. CPU: up to 200 x 200 pixels, several seconds per pair on 2 shared
#: cores. CUDA: about 1200 x 800 pixels, seconds on a current GPU.
EXACT_MAX_PIXELS = {"cpu": 40000, "cuda": 1_000_000}


def exact_skip_reason(shape_a, shape_b, *, max_pixels: int | None, device: str) -> str | None:
    """Why the exact NNF is not computed for images of these shapes (None: it is).

    The one size rule of every engine: it runs when sqrt(pixels of A x pixels of B) <=
    ``max_pixels`` (None: :data:`EXACT_MAX_PIXELS` of the device; 0: never).
    """
    cuda = str(device).startswith("cuda")
    limit = EXACT_MAX_PIXELS["cuda" if cuda else "cpu"] if max_pixels is None else int(max_pixels)
    size = math.sqrt(shape_a[0] * shape_a[1] * shape_b[0] * shape_b[1])
    if limit <= 0:
        return "exact NNF disabled (max_pixels 0)"
    if size <= limit:
        return None
    hint = "lower the image size" + ("" if cuda else ", or use a GPU")
    return (f"exact NNF skipped on {'CUDA' if cuda else 'CPU'}: sqrt(pixels of A x pixels of B) = "
            f"{size:.0f} > max_pixels {limit} (raise the limit, {hint})")


def _exact_defaults() -> dict:
    import classic_pm  # deferred: heavy import (numba)

    return signature_defaults(classic_pm.exact_nnf, EXACT_PARAMS)


def _prepare_exact(params: dict, options: dict, ctx: Context):
    features = _features(params, ctx)

    def run(pair, *, seed=None, progress=None) -> MethodRun:
        done = run_exact(pair, patch_size=int(params["patch_size"]), device=ctx.device, threads=ctx.threads,
                         features=features)
        if progress is not None:
            progress()
        return done

    return run


def _exact_skip(params: dict, pair, device: str) -> str | None:
    return exact_skip_reason(pair.a.shape, pair.b.shape, max_pixels=params.get("max_pixels"), device=device)


EXACT_PARAMS = {
    "patch_size": Param(PATCH, "odd patch side (px) of the matching, the reconstruction and the energy"),
    "max_pixels": Param(Kind("int", minimum=0), "run only when sqrt(pixels of A x pixels of B) <= "
                                                "max_pixels (default by device: "
                                                f"{EXACT_MAX_PIXELS['cpu']} CPU, "
                                                f"{EXACT_MAX_PIXELS['cuda']} CUDA; 0: never)",
                        arg=False, key=False, column=False),
    **FEATURE_PARAMS,
}


# --------------------------------------------------------------------------- trivial baselines
def _prepare_baseline(kind: str):
    def prepare(params: dict, options: dict, ctx: Context):
        def run(pair, *, seed=None, progress=None) -> MethodRun:
            done = run_baseline(pair, kind=kind, patch_size=int(params["patch_size"]), seed=seed,
                                threads=ctx.threads)
            if progress is not None:
                progress()
            return done

        return run

    return prepare


BASELINE_PARAMS = {
    "patch_size": Param(PATCH, "odd patch side (px) of the voting reconstruction and the energy"),
}


# --------------------------------------------------------------------------- the registrations
register(Method("pm", "classic PatchMatch", PM_PARAMS, _prepare_pm, _pm_defaults),
         Named("pm", "pm", "classic PatchMatch", marker="o", linestyle="-"))
register(Method("pm-kd", "kd-tree NNF (PCA, propagation-assisted query, exact re-rank, PatchMatch polish)",
                KD_PARAMS, _prepare_kd, _kd_defaults, reports=lambda params: list(range(1, int(params["passes"]) + 2))),
         Named("pm-kd", "pm-kd", "kd-tree NNF (classic_pm.kd_nnf)", marker="h", linestyle="-"))
register(Method("dpm", "differentiable PatchMatch", DPM_PARAMS, _prepare_dpm, _dpm_defaults,
                validate=_dpm_check, checkpoint_settings=True),
         Named("dpm", "dpm", "differentiable PatchMatch", marker="s", linestyle="--"),
         Named("dpm-reference", "dpm", "DPM as the original code (reference_quirks=True)",
               given=(("reference_quirks", True),), marker="v", linestyle=(0, (1, 1))),
         Named("dpm-keep", "dpm", "DPM, current offset kept", given=(("keep_current", True),),
               marker="D", linestyle=(0, (5, 1, 1, 1, 1, 1))),
         Named("dpm-learned", "dpm", "DPM, learnt features", needs=("checkpoint",), marker="^",
               linestyle="-."))
name_settings(Named("pm-learned", "pm", "classic PatchMatch, learnt features", given=(("features", "learned"),),
                    needs=("checkpoint",), marker="P", linestyle="-"),
              Named("pm-normalised", "pm", "classic PatchMatch, normalised patches of the learnt features' area",
                    given=(("features", "normalised"),), needs=("checkpoint",), marker="p", linestyle="--"))
register(Method("exact", "exact NNF", EXACT_PARAMS, _prepare_exact, _exact_defaults, seeded=False,
                skip=_exact_skip, reports=lambda params: [0], role="limit"),
         Named("exact", "exact", "exact NNF", marker="*", linestyle=":"),
         Named("exact-learned", "exact", "exact NNF, learnt features", given=(("features", "learned"),),
               needs=("checkpoint",), marker="*", linestyle="-."))
# What "good" means on a pair: no motion at all, and matches drawn at random.
register(Method("zero", "zero motion (baseline)", BASELINE_PARAMS, _prepare_baseline("zero"),
                lambda: signature_defaults(timed.run_baseline, BASELINE_PARAMS), seeded=False,
                reports=lambda params: [0], role="baseline"),
         Named("zero", "zero", "zero motion (baseline)", marker="x", linestyle=(0, (1, 3))))
register(Method("random", "random matches (baseline)", BASELINE_PARAMS, _prepare_baseline("random"),
                lambda: signature_defaults(timed.run_baseline, BASELINE_PARAMS), reports=lambda params: [0],
                role="baseline"),
         Named("random", "random", "random matches (baseline)", marker="+", linestyle=(0, (1, 3))))
