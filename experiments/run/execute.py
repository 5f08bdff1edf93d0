"""Running one unit, wherever it runs: prepare, warm up, time, and turn the runs into rows.

Both engines call these: ``compare``'s local runner (:mod:`.local`) and a study's Dask workers
(:mod:`.worker`). :func:`unit_rows` is the one builder of result rows (:data:`COLUMNS` and the
timing spread over repeats); :func:`failure_rows` the NaN rows of a unit that failed.

Timing follows :mod:`experiments.methods.timed`: a setting's JIT compilation is paid by
:func:`warm` (once per process: the common warm-up, then one run of the setting itself on a tiny
pair) before its first timed run; the timed runs are repeated ``unit.repeats`` times; metrics and
reconstructions are computed afterwards, on one thread, and never timed.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np

from ..data.images import is_8bit
from ..data.pairs import Pair, dataset_of
from ..devices import ThreadCounts, thread_scope
from ..methods.registry import METHODS, Context
from ..data.writers import upscale_matches
from ..methods.timed import MethodRun, classic_vote, tiny_pair, warm_up
from ..report.metrics import DATASET_COLUMNS, iteration_metrics
from .units import Unit

#: The columns of ``compare``'s metrics.csv, and the first columns of a study's results.
COLUMNS = [
    "pair", "dataset", "method", "iteration", "time_s", "cum_time_s",
    "psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px", "within_3px", "within_5px",
    *DATASET_COLUMNS,
    "device", "threads", "torch_threads", "numba_threads",
    "height", "width", "height_b", "width_b", "patch_size", "seed",
]
#: The spread of the timed repeats, in every row (a study's results keep them).
SPREAD_COLUMNS = ["time_min_s", "time_max_s", "cum_time_min_s", "cum_time_max_s"]

_WARM: dict[tuple, float] = {}  # warm-ups done in this process -> seconds they took


def skip_reason(unit: Unit, pair: Pair, device: str) -> str | None:
    """Why the unit does not run on this pair (the method's own rule; None: it runs)."""
    rule = METHODS[unit.method].skip
    return None if rule is None else rule(unit.params, pair, device)


def prepare(unit: Unit, ctx: Context) -> Callable[..., MethodRun]:
    """``run(pair, *, seed, progress=None) -> MethodRun``: one timed run of the unit's setting."""
    return METHODS[unit.method].prepare(unit.params, unit.options, ctx)


def warm(unit: Unit, ctx: Context, run: Callable[..., MethodRun], pair: Pair) -> float:
    """The warm-ups this unit needs in this process before timing ``pair`` (none when done
    before), on data of the pair's kind (8-bit or float: ``classic_pm`` compiles a kernel set for
    each). Returns seconds."""
    spent = 0.0
    kind = is_8bit(pair.a) and is_8bit(pair.b)
    base = ("base", unit.patch_size, ctx.threads, ctx.device, kind)
    if base not in _WARM:
        _WARM[base] = warm_up(patch_size=unit.patch_size, threads=ctx.threads, device=ctx.device,
                              eight_bit=kind)
        spent += _WARM[base]
    own = ("setting", unit.setting_key, ctx.threads, ctx.device, kind)
    if own not in _WARM:
        t0 = time.perf_counter()
        tiny = tiny_pair(eight_bit=kind)
        with thread_scope(ctx.threads):
            done = run(tiny, seed=0)
            done.reconstruct(done.nnfs[-1])
            done.matches(done.nnfs[-1])
        _WARM[own] = time.perf_counter() - t0
        spent += _WARM[own]
    return spent


def timed_runs(unit: Unit, pair: Pair, run: Callable[..., MethodRun], *,
               progress: Callable[[], None] | None = None) -> list[MethodRun]:
    """``unit.repeats`` timed runs (``progress`` is called per iteration of the first)."""
    seed = 0 if unit.seed is None else unit.seed
    runs = [run(pair, seed=seed, progress=progress if i == 0 else None) for i in range(unit.repeats)]
    expected = unit.iterations
    for r in runs:
        if r.iterations != runs[0].iterations or (expected is not None and r.iterations != expected):
            raise RuntimeError(f"{unit.name} reported iterations {r.iterations}, expected "
                               f"{expected or runs[0].iterations}")
    return runs


def setting_columns(unit: Unit, pair: Pair, device: str, threads: ThreadCounts | None) -> dict:
    """The columns of a row that describe where and how it ran (device, threads, sizes ...).

    ``threads``: the counts in force during the timed run (None: no timed run finished).
    """
    return dict(device=device, threads=unit.threads,
                torch_threads=None if threads is None else threads.torch,
                numba_threads=None if threads is None else threads.numba,
                height=pair.a.shape[0], width=pair.a.shape[1], height_b=pair.b.shape[0],
                width_b=pair.b.shape[1], patch_size=unit.patch_size, seed=unit.seed)


def unit_rows(unit: Unit, pair: Pair, runs: list[MethodRun], *, device: str,
              native: Pair | None = None) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """The rows of a finished unit, one per iteration, as they are measured.

    Yields ``(row, recon, matches)``: the row (:data:`COLUMNS` and :data:`SPREAD_COLUMNS`; times
    are the median over the repeats, quality that of the first run), the reconstruction of A
    (clipped into [0, 1]) and the matches the metrics scored. Metrics run on one thread.

    ``native``: the pair at its native resolution, to score there (``--score-at native``): each
    iteration's matches are brought back to native size
    (:func:`~experiments.data.writers.upscale_matches`) and every method's reconstruction is the
    voting of native B's patches at them (``classic_pm.vote``), so numbers compare with published
    full-resolution tables. The yielded reconstruction and matches are then the native ones.
    """
    first = runs[0]
    times = np.array([r.times for r in runs], np.float64)  # (repeats, iterations)
    cums = np.cumsum(times, axis=1)
    median = np.median(times, axis=0)
    cum = np.cumsum(median)
    where = setting_columns(unit, pair, device, first.threads)
    with thread_scope(1):  # not timed: one thread avoids a 2-thread pool's stalls on a busy CPU
        scored = pair if native is None else native
        vote = None if native is None else classic_vote(native.b, unit.patch_size)
        for j, (it, nnf) in enumerate(zip(first.iterations, first.nnfs)):
            match = first.matches(nnf)
            if native is None:
                recon = np.clip(first.reconstruct(nnf), 0.0, 1.0)
            else:
                match = upscale_matches(match, pair.a.shape, pair.b.shape, native.a.shape, native.b.shape)
                recon = np.clip(vote(match), 0.0, 1.0)
            row = dict(pair=pair.name, dataset=dataset_of(pair), method=unit.name, iteration=int(it),
                       time_s=float(median[j]),
                       cum_time_s=float(cum[j]),
                       **iteration_metrics(scored, match, recon, patch_size=unit.patch_size),
                       **where, time_min_s=float(times[:, j].min()),
                       time_max_s=float(times[:, j].max()), cum_time_min_s=float(cums[:, j].min()),
                       cum_time_max_s=float(cums[:, j].max()))
            yield row, recon, match


def failure_rows(unit: Unit, pair: Pair, device: str) -> list[dict]:
    """NaN rows of a failed unit, one per expected iteration (times, metrics, threads empty;
    none when only a run could tell its iterations)."""
    return [dict(pair=pair.name, dataset=dataset_of(pair), method=unit.name, iteration=it,
                 **setting_columns(unit, pair, device, None)) for it in (unit.iterations or [])]
