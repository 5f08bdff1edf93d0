"""The ``compare`` run: every method, per iteration, on every pair; CSV as it goes; resumable.

Output folder layout (see README.md (section "Experiments")):

* ``metrics.csv``: one row per (pair, method, iteration), appended as produced (:data:`COLUMNS`).
* ``summary.csv``: each (pair, method)'s last iteration.
* ``config.json``: full configuration (:class:`RunSettings`), package versions, device, threads,
  seed, git commit (:mod:`experiments.provenance`), warm-up time, skipped work and why.
* ``artifacts/<pair>__<method>.npz``: final NNF and a few per-iteration reconstructions, for the
  figures (regenerable; not needed to read the tables).
* figures and ``REPORT.md`` (:mod:`experiments.figures`, :mod:`experiments.report`).

Resuming: a (pair, method) unit is done when ``metrics.csv`` has all its iterations and its
artifact exists. On restart, the rows of unfinished units are dropped (a torn last line too) and
those units run again, so the table ends with no duplicate and no missing row.
"""
from __future__ import annotations

import csv
import datetime as _dt
import inspect
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import methods, provenance
from .devices import ThreadCounts, thread_scope
from .errors import UserError, one_line
from .metrics import DATASET_COLUMNS, iteration_metrics
from .data import Pair, PairSource, check_pair, file_stem

COLUMNS = [
    "pair", "method", "iteration", "time_s", "cum_time_s",
    "psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px", *DATASET_COLUMNS,
    "device", "threads", "torch_threads", "numba_threads",
    "height", "width", "height_b", "width_b", "patch_size", "seed",
]
# Settings that define the numbers; a resumed run must match them exactly.
RUN_KEYS = ("pairs", "max_size", "pm_iterations", "dpm_iterations", "patch_size", "seed",
            "device", "threads", "exact_max_pixels", "checkpoint", "dpm_keep_current",
            "dpm_reference")
STRIP_COLUMNS = 6  # reconstructions kept per method for iterations_<pair>.png
METHOD_ORDER = ("pm", "dpm", "dpm-reference", "dpm-keep", "dpm-learned", "exact")
OUTPUT_FILES = ("metrics.csv", "summary.csv", "config.json", "REPORT.md", "grid.png",
                "convergence.png")


@dataclass(frozen=True)
class RunSettings:
    """The settings of one ``compare`` run, resolved (device known, defaults filled in).

    ``config.json`` stores :meth:`to_dict` under ``config`` and the keys of :data:`RUN_KEYS` (the
    settings that define the numbers; a resumed run must match them) under ``run``.

    Attributes
    ----------
    pairs : tuple of str
        Pair names in run order.
    origins : tuple of (str, str)
        ``(pair name, where it comes from)`` for each pair.
    max_size : int or None
        ``--max-size`` (None: native resolution).
    pm_iterations, dpm_iterations : int
    patch_size : int
        Odd patch side of both methods, the reconstructions and the energy.
    seed : int
    device : str
        Resolved torch device (``cpu`` or ``cuda``).
    threads : int
        CPU threads of every timed method (numba and torch alike, see :mod:`experiments.devices`).
    exact_max_pixels : int
        Exact-NNF size limit (0: never).
    dpm_keep_current : bool
        Also run ``dpm-keep``.
    dpm_reference : bool
        Also run ``dpm-reference`` (the original code's configuration, quirks included).
    checkpoint : str or None
        Absolute path of the learnt DPM checkpoint (method ``dpm-learned``).
    out : str
        Output folder.
    command : str
        The command line, for the record.
    """

    pairs: tuple[str, ...]
    origins: tuple[tuple[str, str], ...]
    max_size: int | None
    pm_iterations: int
    dpm_iterations: int
    patch_size: int
    seed: int
    device: str
    threads: int
    exact_max_pixels: int
    dpm_keep_current: bool = False
    dpm_reference: bool = False
    checkpoint: str | None = None
    out: str = ""
    command: str = ""

    def __post_init__(self):
        if self.threads < 1 or self.patch_size < 1 or self.patch_size % 2 == 0:
            raise ValueError(f"threads must be >= 1 and patch_size odd, got threads={self.threads}"
                             f", patch_size={self.patch_size}")

    def to_dict(self) -> dict:
        """Plain JSON types, in the key order of ``config.json``'s ``config``."""
        return dict(pairs=list(self.pairs), origins=dict(self.origins), max_size=self.max_size,
                    pm_iterations=self.pm_iterations, dpm_iterations=self.dpm_iterations,
                    patch_size=self.patch_size, seed=self.seed, device=self.device,
                    threads=self.threads, exact_max_pixels=self.exact_max_pixels,
                    dpm_keep_current=self.dpm_keep_current, dpm_reference=self.dpm_reference,
                    checkpoint=self.checkpoint,
                    out=self.out, command=self.command)

    def run_dict(self) -> dict:
        """The settings that define the numbers (:data:`RUN_KEYS`), as in ``config.json``."""
        d = self.to_dict()
        return {k: d[k] for k in RUN_KEYS}


@dataclass
class Unit:
    pair: str
    method: str
    iterations: list[int]

    @property
    def key(self) -> str:
        return f"{file_stem(self.pair)}__{self.method}"


def strip_iterations(n: int, k: int = STRIP_COLUMNS) -> list[int]:
    """Up to ``k`` iterations out of 1..n, roughly log-spaced, always with the first and last."""
    if n <= k:
        return list(range(1, n + 1))
    its = sorted(set(int(round(x)) for x in np.geomspace(1, n, k)))
    extra = [i for i in range(1, n + 1) if i not in its]
    while len(its) < k and extra:
        its.append(extra.pop(len(extra) // 2))
        its.sort()
    return its


# --------------------------------------------------------------------------- CSV store
class MetricsStore:
    """``metrics.csv`` with append-as-you-go and repair of interrupted runs."""

    def __init__(self, path: Path):
        self.path = path

    def read(self):
        import pandas as pd  # deferred: heavy import, only needed once a run starts

        if not self.path.exists() or self.path.stat().st_size == 0:
            return pd.DataFrame(columns=COLUMNS)
        text = self.path.read_text()
        if not text.endswith("\n"):  # torn last line of an interrupted write
            text = text[: text.rfind("\n") + 1]
        header = text.split("\n", 1)[0].split(",")
        if header != COLUMNS:
            raise UserError(f"{self.path} has other columns than this version writes; "
                            "pass --fresh to start over or choose another --out")
        if "\n" not in text or text.count("\n") < 2:
            return pd.DataFrame(columns=COLUMNS)
        return pd.read_csv(io.StringIO(text), keep_default_na=True)

    def rewrite(self, df) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        df.to_csv(tmp, index=False, columns=COLUMNS, float_format="%.10g")
        os.replace(tmp, self.path)

    def append(self, row: dict) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(COLUMNS)
            w.writerow([_fmt(row.get(c)) for c in COLUMNS])
            fh.flush()
            os.fsync(fh.fileno())


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else ("inf" if math.isinf(v) and v > 0 else f"{v:.10g}")
    return "" if v is None else v


# --------------------------------------------------------------------------- the run
def load_pairs(sources: list[PairSource], *, max_size: int | None,
               patch_size: int) -> dict[str, Pair]:
    """Decode and check every pair up front, so bad input fails before any compute.

    Cheap: no torch or numba import. Raises :class:`UserError` for unreadable or too small images.
    """
    pairs: dict[str, Pair] = {}
    for src in sources:
        pair = src.load(max_size)
        check_pair(pair, patch_size)
        pairs[pair.name] = pair
    return pairs


class Runner:
    """One ``compare`` run (see the module docstring).

    Parameters
    ----------
    settings : RunSettings
        The resolved settings; ``settings.out`` is the output folder.
    pairs : dict of str to Pair
        The loaded pairs (:func:`load_pairs`), in run order.
    fresh : bool
        Discard earlier results in ``out`` instead of resuming.
    log : callable
        Receives one-line progress messages.
    learned_model : torch.nn.Module, optional
        A ready-to-run learnt DPM (e.g. from a checkpoint): adds the method ``dpm-learned``. It
        runs ``learned_model.iterations`` iterations (else ``learned_info["iterations"]``).
    learned_info : dict, optional
        Facts about ``learned_model`` for config.json (``learned``) and the report.
    """

    def __init__(self, settings: RunSettings, pairs: dict[str, Pair], *, fresh: bool = False,
                 log=print, learned_model=None, learned_info: dict | None = None):
        self.settings = settings
        self.pairs = dict(pairs)
        self.out = Path(settings.out)
        self.fresh = fresh
        self.log = log
        self.store = MetricsStore(self.out / "metrics.csv")
        self.art_dir = self.out / "artifacts"
        self.skipped: dict[str, str] = {}
        self.meta: dict = {}
        self.resumed = False
        self.learned, self.learned_info = learned_model, learned_info

    # ---- preparation (cheap, before torch/numba are used) ------------------------------
    def prepare_output(self) -> None:
        """Create ``out`` and decide between a new run and resuming an unfinished one.

        * nothing there, or ``--fresh``, or the run there finished (``config.json`` status
          ``complete``): start a new run (earlier outputs are replaced);
        * an unfinished run with the same settings (:data:`RUN_KEYS`): resume it;
        * an unfinished run with other settings: refuse (:class:`UserError`), keeping its rows.
        """
        out = self.out
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file; choose a folder")
        cfg_path = out / "config.json"
        start_over = self.fresh
        if not start_over and (out / "metrics.csv").exists():
            if not cfg_path.exists():
                raise UserError(f"{out} holds a metrics.csv without config.json; pass --fresh to "
                                "overwrite it or choose another --out")
            try:
                old_meta = json.loads(cfg_path.read_text())
            except (OSError, ValueError):
                raise UserError(f"{cfg_path} is unreadable; pass --fresh to start over") from None
            if old_meta.get("status") == "complete":
                self.log(f"{out} holds a finished run: replacing it with a new run")
                start_over = True
            else:
                old = old_meta.get("run", {})
                new = self.settings.run_dict()
                diff = [k for k in RUN_KEYS if old.get(k) != new[k]]
                if diff:
                    k = diff[0]
                    raise UserError(f"{out} holds an unfinished run with other settings ({k}: "
                                    f"{old.get(k)!r} there, {new[k]!r} now); rerun with the same "
                                    "options to resume it, pass --fresh to discard it, or choose "
                                    "another --out")
                self.meta = old_meta
                self.resumed = True
                self.log(f"resuming the unfinished run in {out}")
        if start_over:
            for name in OUTPUT_FILES:
                (out / name).unlink(missing_ok=True)
            for pattern in ("iterations_*.png", "nnf_*.png"):
                for p in out.glob(pattern):
                    p.unlink()
            shutil.rmtree(self.art_dir, ignore_errors=True)
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.art_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --out {out}: {exc.strerror or exc}") from None

    def write_config(self, status: str, **extra) -> None:
        meta = dict(self.meta)
        now = _dt.datetime.now().isoformat(timespec="seconds")
        meta.setdefault("started", now)
        meta.update(
            run=self.settings.run_dict(),
            config=self.settings.to_dict(),
            status=status,
            updated=now,
            exact_skipped=self.skipped,
            pairs_info={n: _pair_meta(p) for n, p in self.pairs.items()},
            **extra,
        )
        self.meta = meta
        tmp = self.out / "config.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        os.replace(tmp, self.out / "config.json")

    # ---- the work ---------------------------------------------------------------------
    def units_for(self, pair: Pair, learned_iterations: int | None) -> list[Unit]:
        s = self.settings
        units = [Unit(pair.name, "pm", list(range(1, s.pm_iterations + 1))),
                 Unit(pair.name, "dpm", list(range(1, s.dpm_iterations + 1)))]
        if s.dpm_reference:
            units.append(Unit(pair.name, "dpm-reference", list(range(1, s.dpm_iterations + 1))))
        if s.dpm_keep_current:
            units.append(Unit(pair.name, "dpm-keep", list(range(1, s.dpm_iterations + 1))))
        if learned_iterations is not None:
            units.append(Unit(pair.name, "dpm-learned", list(range(1, learned_iterations + 1))))
        reason = self.exact_skip_reason(pair)
        if reason:
            self.skipped[pair.name] = reason
        else:
            self.skipped.pop(pair.name, None)
            units.append(Unit(pair.name, "exact", [0]))
        return units

    def exact_skip_reason(self, pair: Pair) -> str | None:
        """Why the exact NNF is not computed for ``pair`` (None: it is)."""
        limit = self.settings.exact_max_pixels
        where = "CUDA" if self.settings.device.startswith("cuda") else "CPU"
        na = pair.a.shape[0] * pair.a.shape[1]
        nb = pair.b.shape[0] * pair.b.shape[1]
        size = math.sqrt(na * nb)
        if limit <= 0:
            return "exact NNF disabled (--exact-max-pixels 0)"
        if size > limit:
            hint = "lower --max-size" + (", or use a GPU" if where == "CPU" else "")
            return (f"exact NNF skipped on {where}: sqrt(pixels of A x pixels of B) = {size:.0f} "
                    f"> --exact-max-pixels {limit} (raise the limit, {hint})")
        return None

    def run(self) -> "pandas.DataFrame":  # noqa: F821
        s = self.settings
        learned, learned_info = self.learned, self.learned_info
        learned_its = learned_iterations(learned, learned_info) if learned is not None else None
        with thread_scope(s.threads):  # record the thread counts the timed runs will use
            device_info = provenance.device_info(s.device, s.threads)
        self.meta.update(device_info=device_info, versions=provenance.package_versions(),
                         git=provenance.git_state(), dpm_config=dpm_defaults(s))
        self.write_config("running", learned=learned_info)

        df = self.store.read()
        if self.store.path.exists():
            self.store.rewrite(df)  # normalise; drops a torn last line of an interrupted write
        self.log("warming up (numba JIT, torch) on a tiny pair ...")
        warm = methods.warm_up(patch_size=s.patch_size, threads=s.threads, device=s.device,
                               exact=s.exact_max_pixels > 0, learned=learned)
        self.meta["warmup_s"] = round(warm, 3)
        self.log(f"warm-up {warm:.1f} s (excluded from timings)")

        for pair in self.pairs.values():
            units = self.units_for(pair, learned_its)
            if pair.name in self.skipped:
                self.log(f"{pair.name}: {self.skipped[pair.name]}")
            todo = []
            for u in units:
                rows = df[(df["pair"] == u.pair) & (df["method"] == u.method)]
                its = sorted(rows["iteration"].astype(int).tolist())
                if not (its == u.iterations and self.artifact(u).exists()):
                    todo.append(u)
            if todo:  # drop partial rows of the units that will run again
                mask = np.zeros(len(df), bool)
                for u in todo:
                    mask |= ((df["pair"] == u.pair) & (df["method"] == u.method)).to_numpy()
                if mask.any():
                    df = df[~mask].reset_index(drop=True)
                    self.store.rewrite(df)
            for u in todo:
                label = f"{pair.name} {u.method} ({pair.a.shape[1]}x{pair.a.shape[0]})"
                try:
                    with tqdm(total=len(u.iterations), desc=label, unit="it", leave=False,
                              dynamic_ncols=True, file=sys.stderr) as bar:
                        run = self.timed_run(u, pair, bar.update)
                except Exception as exc:  # noqa: BLE001 - a failure becomes NaN rows
                    self.record_failure(u, pair, exc)
                    continue
                t_metrics = time.perf_counter()
                last = self.measure(u, pair, run)
                self.log(f"{pair.name:>14s} {u.method:<11s} it {last['iteration']:>2d}  "
                         f"PSNR {last['psnr']:6.2f} dB  energy {last['energy']:.5f}  "
                         f"time {last['cum_time_s']:7.2f} s  (metrics "
                         f"{time.perf_counter() - t_metrics:.1f} s)")
            self.write_config("running")
        return self.store.read()

    def measure(self, u: Unit, pair: Pair, run: methods.MethodRun) -> dict:
        """Metrics of every iteration of a finished timed run: rows appended as they come.

        Keeps the reconstructions of the figure iterations and the final NNF in the unit's
        artifact. Returns the last row.
        """
        # Metrics are not timed: one thread avoids the stalls of a 2-thread pool on a CPU
        # shared with other work (seconds per call under heavy load).
        with thread_scope(1):
            return self._measure(u, pair, run)

    def _measure(self, u: Unit, pair: Pair, run: methods.MethodRun) -> dict:
        p = self.settings.patch_size
        strip = set(strip_iterations(len(u.iterations))) if u.method != "exact" else {0}
        keep_its, keep_recons = [], []
        cum, row = 0.0, {}
        for it, dt, nnf in tqdm(list(zip(run.iterations, run.times, run.nnfs)),
                                desc=f"{pair.name} {u.method} metrics", leave=False, unit="it",
                                dynamic_ncols=True, file=sys.stderr):
            cum += dt
            recon = np.clip(run.reconstruct(nnf), 0.0, 1.0)
            match = run.matches(nnf)
            row = dict(pair=pair.name, method=u.method, iteration=it, time_s=dt, cum_time_s=cum,
                       **iteration_metrics(pair, match, recon, patch_size=p),
                       **self.setting_columns(pair, run.threads))
            self.store.append(row)
            if it in strip or it == run.iterations[-1]:
                keep_its.append(it)
                keep_recons.append((recon * 255 + 0.5).astype(np.uint8))
        self.save_artifact(u, match, keep_its, keep_recons)  # the last iteration's matches
        return row

    def timed_run(self, u: Unit, pair: Pair, step) -> methods.MethodRun:
        """Run one (pair, method) unit with per-iteration timing (see :mod:`.methods`).

        Every method runs under ``settings.threads`` threads for numba and torch alike.
        """
        s = self.settings
        if u.method == "pm":
            run = methods.run_pm(pair, iterations=s.pm_iterations, patch_size=s.patch_size,
                                 seed=s.seed, threads=s.threads, progress=step)
        elif u.method in ("dpm", "dpm-reference", "dpm-keep", "dpm-learned"):
            model = self.learned if u.method == "dpm-learned" else methods.default_dpm(
                iterations=s.dpm_iterations, patch_size=s.patch_size,
                keep_current=u.method == "dpm-keep", reference_quirks=u.method == "dpm-reference")
            run = methods.run_dpm(model, pair, method=u.method, device=s.device, seed=s.seed,
                                  patch_size=s.patch_size, threads=s.threads, progress=step)
        else:
            run = methods.run_exact(pair, patch_size=s.patch_size, device=s.device,
                                    threads=s.threads)
            step()
        if run.iterations != u.iterations:
            raise RuntimeError(f"{u.method} reported iterations {run.iterations}, "
                               f"expected {u.iterations}")
        return run

    def record_failure(self, u: Unit, pair: Pair, exc: Exception) -> None:
        """A failed unit becomes NaN rows (one per expected iteration) and a logged reason.

        No artifact is written, so a resumed run tries the unit again.
        """
        msg = one_line(exc)
        self.meta.setdefault("failures", {})[u.key] = msg
        self.log(f"{pair.name:>14s} {u.method:<11s} FAILED ({msg}); NaN rows written")
        for it in u.iterations:  # timing, metric and thread-count columns left empty (NaN)
            self.store.append(dict(pair=pair.name, method=u.method, iteration=it,
                                   **self.setting_columns(pair, None)))

    def setting_columns(self, pair: Pair, threads: ThreadCounts | None) -> dict:
        """The columns of a metrics row that describe the setting (device, threads, sizes ...).

        ``threads``: the counts in force during the timed run (None: no timed run finished).
        """
        s = self.settings
        return dict(device=s.device, threads=s.threads,
                    torch_threads=None if threads is None else threads.torch,
                    numba_threads=None if threads is None else threads.numba,
                    height=pair.a.shape[0], width=pair.a.shape[1], height_b=pair.b.shape[0],
                    width_b=pair.b.shape[1], patch_size=s.patch_size, seed=s.seed)

    # ---- artifacts --------------------------------------------------------------------
    def artifact(self, u: Unit) -> Path:
        return self.art_dir / f"{u.key}.npz"

    def save_artifact(self, u: Unit, nnf, its, recons) -> None:
        tmp = self.art_dir / f"{u.key}.tmp.npz"
        np.savez_compressed(tmp, nnf=np.asarray(nnf, np.float32), iterations=np.asarray(its),
                            recons=np.stack(recons))
        os.replace(tmp, self.artifact(u))


def load_artifact(out: Path, pair: str, method: str) -> dict | None:
    p = out / "artifacts" / f"{file_stem(pair)}__{method}.npz"
    if not p.exists():
        return None
    with np.load(p) as z:
        return {k: z[k] for k in z.files}


def dpm_defaults(settings: RunSettings) -> dict:
    """Constructor settings of the ``dpm`` method: the defaults of DifferentiablePatchMatch,
    with ``iterations`` and ``patch_size`` from the run (for config.json and the report)."""
    import diff_pm  # deferred: heavy import (torch, numba)

    sig = inspect.signature(diff_pm.DifferentiablePatchMatch.__init__)
    out = {k: p.default for k, p in sig.parameters.items()
           if p.default is not inspect.Parameter.empty and k != "features"}
    out.update(iterations=settings.dpm_iterations, patch_size=settings.patch_size)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def learned_iterations(model, info) -> int:
    """Iterations of a learnt model: ``model.iterations``, else ``info["iterations"]``."""
    its = getattr(model, "iterations", None)
    if its is None and isinstance(info, dict):
        its = info.get("iterations") or info.get("config", {}).get("iterations")
    if its is None:
        raise UserError("the checkpoint's model does not say how many iterations it runs")
    return int(its)


def summary_table(df):
    """Each (pair, method)'s last iteration (the ``summary.csv`` rows), in method order."""
    if df.empty:
        return df
    last = df.loc[df.groupby(["pair", "method"], sort=False)["iteration"].idxmax()]
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    pairs = {p: i for i, p in enumerate(dict.fromkeys(df["pair"]))}
    key = last["pair"].map(pairs) * 10 + last["method"].map(lambda m: order.get(m, 9))
    return last.assign(_k=key).sort_values("_k").drop(columns="_k").reset_index(drop=True)


def _pair_meta(p: Pair) -> dict:
    return dict(source=p.source, a=list(p.a.shape), b=list(p.b.shape), has_gt=p.has_gt,
                valid_fraction=None if p.valid is None else round(float(p.valid.mean()), 4),
                nonfinite_pixels=p.nonfinite_pixels, info=p.info)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
