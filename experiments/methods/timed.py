"""Timed runs of each method's library function, one NNF per iteration, and its reconstruction.

Timing contract: ``time_s`` of iteration i is the wall-clock time between the stamps of
iterations i-1 and i taken in the method's own per-iteration callback (iteration 1 includes the
random initialisation; the stamp before iteration 1 is taken just before the call). CUDA work is
synchronised before each stamp. The callback's own work (copying the NNF out, updating the
progress bar) is measured and subtracted, so it never counts. JIT compilation is excluded by
:func:`warm_up` (and a run of the unit's own setting on :func:`tiny_pair`), which every engine
calls before a setting's first timed run; reconstructions and metrics are computed after it.

Threads: every method runs under :func:`experiments.devices.thread_scope` (``threads`` CPU threads
for numba *and* torch, restored afterwards; the scope is entered before the clock starts) and
records the counts in force in :attr:`MethodRun.threads`.

Every method returns a :class:`MethodRun`: NNFs as float32 ``(Ha, Wa, 2)`` absolute (y, x)
positions in B (the classic NNF's int32 values converted exactly), the method's own reconstruction,
and the matches its NNFs stand for (DPM's positions clamped as its evaluation clamps them).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.images import to_8bit
from ..data.pairs import Pair, round_nnf, warp_matrix, warp_pair
from ..devices import ThreadCounts, thread_scope


@dataclass
class MethodRun:
    """Result of one timed run.

    Attributes
    ----------
    method : str
    iterations : list of int
        1-based iteration numbers (``[0]`` for the exact NNF).
    times : list of float
        Seconds of compute per iteration (see the module docstring).
    nnfs : list of ndarray, shape (Ha, Wa, 2), float32
        Absolute (y, x) positions in B after each iteration.
    reconstruct : callable
        ``reconstruct(nnf) -> (Ha, Wa, 3) float32``, the method's own voting reconstruction.
    matches : callable
        ``matches(nnf) -> (Ha, Wa, 2) float32``: the points of B the method compared (what the
        metrics score); identity for the classic NNF.
    threads : ThreadCounts
        torch and numba threads in force during the timed run.
    extra : dict
        Facts for the record (e.g. the torch device).
    """

    method: str
    iterations: list[int]
    times: list[float]
    nnfs: list[np.ndarray]
    reconstruct: Callable[[np.ndarray], np.ndarray]
    threads: ThreadCounts
    extra: dict = field(default_factory=dict)
    matches: Callable[[np.ndarray], np.ndarray] = lambda nnf: nnf


class _Stamps:
    """Per-iteration clock that subtracts the callback's own overhead."""

    def __init__(self, sync: Callable[[], None] = lambda: None):
        self.sync = sync
        self.overhead = 0.0
        self.marks: list[float] = []
        self.t0 = 0.0

    def start(self) -> None:
        self.sync()
        self.t0 = time.perf_counter()

    def mark(self) -> float:
        """Stamp now; return the start of the overhead window (call :meth:`done` after)."""
        self.sync()
        t = time.perf_counter()
        self.marks.append(t - self.t0 - self.overhead)
        return t

    def done(self, t: float) -> None:
        self.overhead += time.perf_counter() - t

    def times(self) -> list[float]:
        return list(np.diff([0.0] + self.marks))


def classic_vote(b: np.ndarray, patch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """``recon(nnf)``: ``classic_pm.vote`` at the rounded, clipped matches (any NNF)."""
    import classic_pm  # deferred: imports numba (as every classic_pm import of this module)

    def recon(nnf: np.ndarray) -> np.ndarray:
        return np.asarray(classic_pm.vote(b, round_nnf(nnf, b.shape), patch_size=patch_size),
                          np.float32)

    return recon


def _matched(pair: Pair, features, match_patch, patch_size: int):
    """``(a, b, patch)``: the arrays a matcher compares (the pair's images, or ``features`` of them:
    see :mod:`.featured`) and its patch side (``match_patch``, default ``patch_size``; 1 for features)."""
    if features is None:
        a, b = pair.a, pair.b
        patch = patch_size if match_patch is None else match_patch
    else:
        a, b = features(pair.a), features(pair.b)
        patch = 1 if match_patch is None else match_patch
    return np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32), int(patch)


def _nnf_recorder(clock, progress):
    """``(callback, iterations, nnfs)``: the callback of a classic run, which records each
    iteration's number and a copy of its NNF, outside the timed time of ``clock``."""
    its: list[int] = []
    nnfs: list[np.ndarray] = []

    def callback(iteration: int, nnf: np.ndarray) -> None:
        t = clock.mark()
        its.append(int(iteration))
        nnfs.append(np.array(nnf, dtype=np.float32, copy=True))
        if progress is not None:
            progress()
        clock.done(t)

    return callback, its, nnfs


def run_pm(pair: Pair, *, iterations: int, patch_size: int, seed: int, threads: int,
           progress: Callable[[], None] | None = None,
           refine_radius: int | None = None, features: Callable[[np.ndarray], np.ndarray] | None = None,
           match_patch: int | None = None) -> MethodRun:
    """Classic PatchMatch (``classic_pm.patchmatch``), NNF copied after every iteration.

    ``threads`` is both PatchMatch's band count and the scope's thread count.
    ``refine_radius``: ``classic_pm.patchmatch``'s option (None: its default).
    ``features``: ``features(image (H, W, 3)) -> (H, W, F)`` (:mod:`.featured`): PatchMatch then
    matches the features of A and B (computed inside the timed region, in iteration 1) with
    ``match_patch`` x ``match_patch`` patches (default 1), and the reconstruction still votes RGB
    ``patch_size`` x ``patch_size`` patches of B at the matches.
    """
    import classic_pm  # deferred: imports numba

    options = {} if refine_radius is None else dict(refine_radius=refine_radius)
    b_rgb = np.ascontiguousarray(pair.b, np.float32)
    clock = _Stamps()
    callback, its, nnfs = _nnf_recorder(clock, progress)
    with thread_scope(threads) as used:
        clock.start()
        a, b, patch = _matched(pair, features, match_patch, patch_size)
        classic_pm.patchmatch(a, b, patch_size=patch, iterations=iterations, seed=seed,
                              threads=threads, callback=callback, **options)
    return MethodRun("pm", its, clock.times(), nnfs, classic_vote(b_rgb, patch_size), used)


def run_kd(pair: Pair, *, patch_size: int, seed: int, threads: int,
           progress: Callable[[], None] | None = None, **options) -> MethodRun:
    """The kd-tree NNF (``classic_pm.kd_nnf``), its NNF copied after every stage (query, then each
    PatchMatch polish pass), stage k reported as iteration k. ``options``: ``kd_nnf``'s ``dims``,
    ``leaf_size``, ``rerank``, ``passes``."""
    import classic_pm  # deferred: imports numba

    a = np.ascontiguousarray(pair.a, np.float32)
    b = np.ascontiguousarray(pair.b, np.float32)
    clock = _Stamps()
    callback, its, nnfs = _nnf_recorder(clock, progress)  # stage k of kd_nnf reported as iteration k
    with thread_scope(threads) as used:
        clock.start()
        classic_pm.kd_nnf(a, b, patch_size=patch_size, seed=seed, threads=threads, callback=callback,
                          **options)
    return MethodRun("pm-kd", its, clock.times(), nnfs, classic_vote(b, patch_size), used)


def _torch_sync(device: str) -> Callable[[], None]:
    import torch  # deferred: heavy import (as every torch import of this module)

    if str(device).startswith("cuda"):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def to_torch(image: np.ndarray, device: str):
    """``(H, W, C)`` numpy -> ``(1, C, H, W)`` float32 torch tensor on ``device``."""
    import torch  # deferred: heavy import

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)


def run_dpm(model, pair: Pair, *, device: str, seed: int, patch_size: int = 7, method: str = "dpm",
            threads: int | None = None, progress: Callable[[], None] | None = None,
            features: Callable[[np.ndarray], np.ndarray] | None = None) -> MethodRun:
    """Differentiable PatchMatch (any configured ``diff_pm.DifferentiablePatchMatch``).

    ``patch_size`` is the side of the voting reconstruction, done by the model's own
    ``reconstruct`` (its conventions: the reference's with ``reference_quirks=True``).
    ``threads``: CPU threads of torch and of DPM's numba scoring kernels (None: as they are).
    ``features``: ``features(image (H, W, 3)) -> (H, W, F)`` (:mod:`.featured`): the model then runs
    on the feature maps of A and B (computed inside the timed region) instead of the images, and
    the reconstruction still votes RGB patches of B.
    """
    import torch  # deferred: heavy imports (torch, and numba through diff_pm)

    a_t, b_t = to_torch(pair.a, device), to_torch(pair.b, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    clock = _Stamps(_torch_sync(device))
    nnfs: list[np.ndarray] = []
    its: list[int] = []

    def callback(iteration: int, positions) -> None:
        t = clock.mark()
        its.append(int(iteration))
        nnfs.append(positions[0].detach().permute(1, 2, 0).to("cpu", torch.float32).numpy().copy())
        if progress is not None:
            progress()
        clock.done(t)

    def as_numpy(t) -> np.ndarray:
        return t[0].permute(1, 2, 0).to("cpu", torch.float32).numpy()

    def recon(nnf: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return as_numpy(model.reconstruct(b_t, to_torch(nnf, device), patch_size=patch_size))

    def matches(nnf: np.ndarray) -> np.ndarray:
        return as_numpy(model.matches(to_torch(nnf, device), pair.b.shape[:2]))

    model = model.to(device).eval()
    with torch.no_grad(), thread_scope(threads) as used:
        clock.start()
        if features is None:
            a_in, b_in = a_t, b_t
        else:
            a_in, b_in = to_torch(features(pair.a), device), to_torch(features(pair.b), device)
        model(a_in, b_in, generator=gen, callback=callback)
    return MethodRun(method, its, clock.times(), nnfs, recon, used, dict(device=str(device)), matches)


def run_exact(pair: Pair, *, patch_size: int, device: str,
              threads: int | None = None, features: Callable[[np.ndarray], np.ndarray] | None = None,
              match_patch: int | None = None) -> MethodRun:
    """Exhaustive NNF (``classic_pm.exact_nnf``), one timed call, reported as iteration 0.

    ``threads``: CPU threads of torch's matrix products (None: as they are).
    ``features``, ``match_patch``: as :func:`run_pm` (the exact NNF of the features).
    """
    import classic_pm  # deferred: imports numba

    b_rgb = np.ascontiguousarray(pair.b, np.float32)
    sync = _torch_sync(device)
    with thread_scope(threads) as used:
        sync()
        t0 = time.perf_counter()
        a, b, patch = _matched(pair, features, match_patch, patch_size)
        nnf = classic_pm.exact_nnf(a, b, patch_size=patch, device=device)
        sync()
        dt = time.perf_counter() - t0
    return MethodRun("exact", [0], [dt], [np.asarray(nnf, np.float32)],
                     classic_vote(b_rgb, patch_size), used)


def baseline_matches(shape_a, shape_b, *, kind: str, seed: int | None = None) -> np.ndarray:
    """The trivial baselines' matches, float32 ``(Ha, Wa, 2)`` absolute (y, x) positions in B.

    ``kind="zero"``: each pixel matched to its own coordinate, clamped into B (no motion);
    ``kind="random"``: a uniform random pixel of B per pixel of A, from
    ``numpy.random.default_rng(seed)`` (the same seed, the same matches).
    """
    ha, wa = shape_a[:2]
    hb, wb = shape_b[:2]
    if kind == "zero":
        ys, xs = np.mgrid[0:ha, 0:wa]
        return np.stack([np.minimum(ys, hb - 1), np.minimum(xs, wb - 1)], axis=-1).astype(np.float32)
    if kind == "random":
        rng = np.random.default_rng(seed)
        return np.stack([rng.integers(0, hb, (ha, wa)), rng.integers(0, wb, (ha, wa))],
                        axis=-1).astype(np.float32)
    raise ValueError(f"kind must be 'zero' or 'random', got {kind!r}")


def run_baseline(pair: Pair, *, kind: str, patch_size: int = 7, seed: int | None = None,
                 threads: int | None = None) -> MethodRun:
    """A trivial baseline (:func:`baseline_matches`) as a timed run, reported as iteration 0,
    reconstructed by ``classic_pm.vote`` like the classic NNF."""
    with thread_scope(threads) as used:
        t0 = time.perf_counter()
        nnf = baseline_matches(pair.a.shape, pair.b.shape, kind=kind, seed=seed)
        dt = time.perf_counter() - t0
    return MethodRun(kind, [0], [dt], [nnf], classic_vote(pair.b, patch_size), used)


def sampled_exact_gap(pair: Pair, matches: np.ndarray, *, patch_size: int, samples: int = 1000,
                      seed: int = 0, threads: int = 1) -> dict:
    """How far a match field's energy is from the exact NNF's, estimated on a seeded sample of A's
    interior pixels (``classic_pm.sampled_exact_energy``; for pairs too large for the exhaustive
    NNF): ``gap`` (relative energy excess on the sample), ``gap_se``, ``samples``,
    ``exact_fraction`` (sampled pixels already at the exact minimum)."""
    import classic_pm  # deferred: imports numba

    nnf = round_nnf(matches, pair.b.shape)
    est = classic_pm.sampled_exact_energy(np.ascontiguousarray(pair.a, np.float32),
                                          np.ascontiguousarray(pair.b, np.float32), nnf,
                                          patch_size=patch_size, samples=samples, seed=seed, threads=threads)
    return dict(gap=float(est.gap), gap_se=float(est.gap_se), samples=int(est.samples),
                exact_fraction=float(est.exact_fraction))


def tiny_pair(*, eight_bit: bool = True) -> Pair:
    """The small seeded pair (24 x 28) on which every code path is compiled and warmed up:
    8-bit data (``classic_pm``'s exact path, that of every built-in pair) or float data (its
    float path): warm up with the kind of the pairs to time."""
    rng = np.random.default_rng(0)
    img = rng.random((24, 28, 3)).astype(np.float32)
    if eight_bit:
        img = to_8bit(img)
    return warp_pair(img, warp_matrix((24, 28), rotation=3.0), rng=0, name="warmup")


def warm_up(*, patch_size: int, threads: int, device: str, eight_bit: bool = True) -> float:
    """Compile / warm the common code paths on a tiny pair so no timed run pays for JIT. Returns s.

    Classic PatchMatch with its voting and energy, and DPM in its default configuration, twice
    (the second round catches lazily compiled paths), under ``thread_scope(threads)``, the threads
    of the timed runs (numba compiles and starts its thread pool here, not in a timed run), on
    8-bit or float data (``eight_bit``: the kind of the pairs to time). A setting's own paths are
    warmed by one run of it on :func:`tiny_pair` (see the engines).
    """
    import classic_pm  # deferred: heavy imports (numba; torch)
    import diff_pm

    t0 = time.perf_counter()
    tiny = tiny_pair(eight_bit=eight_bit)
    with thread_scope(threads):
        for _ in range(2):
            run = run_pm(tiny, iterations=2, patch_size=patch_size, seed=0, threads=threads)
            run.reconstruct(run.nnfs[-1])
            classic_pm.energy(tiny.a, tiny.b, round_nnf(run.nnfs[-1], tiny.b.shape),
                              patch_size=patch_size)
            model = diff_pm.DifferentiablePatchMatch(iterations=2, patch_size=patch_size)
            dpm = run_dpm(model, tiny, device=device, seed=0, patch_size=patch_size, threads=threads)
            dpm.reconstruct(dpm.nnfs[-1])
    return time.perf_counter() - t0
