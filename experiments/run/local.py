"""``compare``: a fixed study, run in this process; CSV as it goes; resumable.

``compare``'s options (:class:`~experiments.run.settings.RunSettings`) describe a study in the
vocabulary of every study (:func:`~experiments.run.settings.compare_spec`), planned like any other
(:func:`experiments.run.planning.plan`) and run here, unit after unit, through the same steps as a
study's workers (:mod:`.execute`).

Output folder layout (see README.md and docs/compare.md):

* ``metrics.csv``: one row per (pair, method, seed, iteration), appended as measured
  (:data:`COLUMNS`; methods without a seed have an empty ``seed``).
* ``summary.csv``: each (pair, method, seed)'s last iteration.
* ``config.json``: full configuration (:class:`RunSettings`), every setting's parameters, the
  metadata record (:func:`experiments.provenance.record`), warm-up time, skipped work and why.
* ``artifacts/<pair>__<method>.npz``: final matches and a few reconstructions of the first seed,
  for the figures (:mod:`experiments.report.artifacts`); ``<pair>__<method>__seed<N>.npz`` for
  the other seeds.
* figures and ``REPORT.md`` (:mod:`experiments.report`).

Resuming: a (pair, method, seed) unit is done when ``metrics.csv`` has all its iterations and
its artifact exists. On restart, the rows of unfinished units are dropped (a torn last line too) and
those units run again, so the table ends with no duplicate and no missing row.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from tqdm.auto import tqdm

from .. import provenance
from ..data.pairs import Pair, PairSource, dataset_of
from ..data.writers import write_flo, write_kitti_flow
from ..devices import thread_scope
from ..errors import UserError, one_line
from ..methods.registry import Context, role
from ..methods.timed import sampled_exact_gap
from ..report.artifacts import save_artifact, strip_iterations
from .execute import COLUMNS, failure_rows, prepare, skip_reason, timed_runs, unit_rows, warm
from .planning import Plan, plan
from .settings import RUN_KEYS, RunSettings, compare_spec
from .store import MetricsStore
from .units import Unit

if TYPE_CHECKING:  # annotations only
    from pandas import DataFrame

__all__ = ["Runner", "COLUMNS"]

OUTPUT_FILES = ("metrics.csv", "summary.csv", "config.json", "REPORT.md", "grid.png",
                "convergence.png")


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
    loader : callable, optional
        ``loader(data, *, device, options) -> (model, info)`` for ``dpm-learned`` (from the
        command line, which alone may import :mod:`learning`).
    native : callable, optional
        ``native(pair name) -> Pair`` at native resolution (``score_at="native"``).

    The run is planned here (checkpoints read and checked), before ``out`` is touched.
    """

    def __init__(self, settings: RunSettings, pairs: dict[str, Pair], *, fresh: bool = False,
                 log=print, loader: Callable | None = None, native: Callable | None = None):
        self.settings = settings
        self.pairs = dict(pairs)
        self.out = Path(settings.out)
        self.fresh = fresh
        self.log = log
        self.plan: Plan = plan(compare_spec(settings), loader=loader, log=log,
                               sources=[PairSource(n, o, None) for n, o in settings.origins])
        self.ctx = Context(settings.device, settings.threads, self.plan.checkpoints, loader)
        if settings.score_at == "native" and native is None:
            raise ValueError("score_at='native' needs a loader of the native pairs (native=)")
        self.native = native
        self.store = MetricsStore(self.out / "metrics.csv")
        self.art_dir = self.out / "artifacts"
        self.out_dir = self.out / "outputs"
        self.skipped: dict[str, str] = {}
        self.meta: dict = {}
        self.resumed = False

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
                old, new = old_meta.get("run", {}), self.settings.run_dict()
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
            shutil.rmtree(self.out_dir, ignore_errors=True)
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.art_dir.mkdir(exist_ok=True)
            if self.settings.write_outputs:
                self.out_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --out {out}: {exc.strerror or exc}") from None

    def write_config(self, status: str, **extra) -> None:
        meta = dict(self.meta)
        now = _dt.datetime.now().isoformat(timespec="seconds")
        meta.setdefault("started", now)
        meta.update(run=self.settings.run_dict(), config=self.settings.to_dict(),
                    settings={s.name: dict(s.resolved) for s in self.plan.settings},
                    status=status, updated=now, exact_skipped=self.skipped,
                    pairs_info={n: _pair_meta(p) for n, p in self.pairs.items()}, **extra)
        self.meta = meta
        tmp = self.out / "config.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        os.replace(tmp, self.out / "config.json")

    # ---- the work ---------------------------------------------------------------------
    def run(self) -> DataFrame:
        s = self.settings
        with thread_scope(s.threads):  # record the thread counts the timed runs will use
            self.meta["provenance"] = provenance.record(device=s.device, threads=s.threads)
        learned = [i for i in self.plan.checkpoint_info.values()]
        self.write_config("running", learned=learned[0] if learned else None)
        self.meta["warmup_s"] = 0.0

        df = self.store.read()
        if self.store.path.exists():
            self.store.rewrite(df)  # normalise; drops a torn last line of an interrupted write
        by_pair: dict[str, list[Unit]] = {}
        for u in self.plan.units:
            by_pair.setdefault(u.pair, []).append(u)
        for pair in self.pairs.values():
            todo = []
            for u in by_pair.get(pair.name, []):
                reason = skip_reason(u, pair, s.device)
                if reason:
                    self.skipped[pair.name] = reason
                    self.log(f"{pair.name}: {reason}")
                    continue
                rows = df[self._rows_of(df, u)]
                its = sorted(rows["iteration"].dropna().astype(int))
                if not (self.artifact(u).exists() and its and its == (u.iterations or its)):
                    todo.append(u)
            native = self.native(pair.name) if todo and self.settings.score_at == "native" else None
            if todo:  # drop partial rows of the units that will run again
                mask = np.zeros(len(df), bool)
                for u in todo:
                    mask |= self._rows_of(df, u).to_numpy()
                if mask.any():
                    df = df[~mask].reset_index(drop=True)
                    self.store.rewrite(df)
            for u in todo:
                self.run_unit(u, pair, native)
            if pair.name in self.skipped:
                self.sample_exact(pair, by_pair.get(pair.name, []))
            self.write_config("running")
        return self.store.read()

    def run_unit(self, u: Unit, pair: Pair, native: Pair | None = None) -> None:
        """Time one unit and append its rows (NaN rows and a logged reason when it fails);
        ``native``: the pair at native resolution, to score there."""
        label = (f"{pair.name} {u.name}" + ("" if len(self.settings.seeds) < 2 or u.seed is None
                                            else f" seed {u.seed}") + f" ({pair.a.shape[1]}x{pair.a.shape[0]})")
        try:
            with tqdm(total=len(u.iterations or []) or None, desc=label, unit="it", leave=False,
                      dynamic_ncols=True, file=sys.stderr) as bar:
                run = prepare(u, self.ctx)
                self.meta["warmup_s"] = round(self.meta["warmup_s"] + warm(u, self.ctx, run, pair), 3)
                runs = timed_runs(u, pair, run, progress=bar.update)
        except Exception as exc:  # noqa: BLE001 - a failure becomes NaN rows
            msg = one_line(exc)
            self.meta.setdefault("failures", {})[self.artifact(u).stem] = msg
            self.log(f"{pair.name:>14s} {u.name:<11s} FAILED ({msg}); NaN rows written")
            for row in failure_rows(u, pair, self.settings.device):
                self.store.append(row)
            return  # no artifact: a resumed run tries the unit again
        t_metrics = time.perf_counter()
        strip = set(strip_iterations(len(runs[0].iterations)))  # and always the last iteration
        keep_its, keep_recons, row, match = [], [], {}, None
        measured = unit_rows(u, pair, runs, device=self.settings.device, native=native)
        first = runs[0]
        for j, (row, recon, match) in enumerate(tqdm(measured, total=len(first.iterations), leave=False,
                                                     desc=f"{pair.name} {u.name} metrics", unit="it",
                                                     dynamic_ncols=True, file=sys.stderr)):
            self.store.append(row)
            if row["iteration"] in strip or row["iteration"] == first.iterations[-1]:
                if native is not None:  # the figures show the pair at the size the method ran at
                    recon = np.clip(first.reconstruct(first.nnfs[j]), 0.0, 1.0)
                keep_its.append(row["iteration"])
                keep_recons.append((recon * 255 + 0.5).astype(np.uint8))
        # the last iteration's matches, at the run's size (and at the scoring size for the outputs)
        kept = match if native is None else first.matches(first.nnfs[-1])
        save_artifact(self.artifact(u), kept, keep_its, keep_recons)
        if self.settings.write_outputs and self.artifact(u).name == f"{u.file_key}.npz":
            self.write_outputs(u, native or pair, match)
        seed = "" if len(self.settings.seeds) < 2 or u.seed is None else f" s{u.seed}"
        self.log(f"{pair.name:>14s} {u.name + seed:<13s} it {row['iteration']:>2d}  PSNR {row['psnr']:6.2f} dB"
                 f"  energy {row['energy']:.5f}  time {row['cum_time_s']:7.2f} s  (metrics "
                 f"{time.perf_counter() - t_metrics:.1f} s)")

    def sample_exact(self, pair: Pair, units: list[Unit]) -> None:
        """Where the exhaustive NNF is skipped: each matcher's energy gap to it, estimated on a
        seeded sample of pixels (:func:`~experiments.methods.timed.sampled_exact_gap`), first seed,
        in ``config.json``'s ``sampled_exact`` and REPORT.md."""
        gaps = {}
        for u in units:
            art = self.artifact(u)
            if role(u.method) != "matcher" or not art.exists() or art.name != f"{u.file_key}.npz":
                continue
            with np.load(art) as z:
                matches = z["nnf"]
            gaps[u.name] = sampled_exact_gap(pair, matches, patch_size=u.patch_size, seed=0,
                                             threads=self.settings.threads)
            self.log(f"{pair.name:>14s} {u.name:<11s} energy {100 * gaps[u.name]['gap']:+.1f}% "
                     f"± {100 * gaps[u.name]['gap_se']:.1f}% above the exact NNF's (sampled, "
                     f"{gaps[u.name]['samples']} pixels)")
        if gaps:
            self.meta.setdefault("sampled_exact", {})[pair.name] = gaps

    def write_outputs(self, u: Unit, pair: Pair, match) -> None:
        """The unit's final matches as ``.flo`` (and a KITTI flow PNG for KITTI pairs)."""
        write_flo(self.out_dir / f"{u.file_key}.flo", match)
        if dataset_of(pair).startswith("kitti"):
            write_kitti_flow(self.out_dir / f"{u.file_key}.png", match)

    def artifact(self, u: Unit) -> Path:
        """The unit's artifact: ``<pair>__<method>.npz`` for the first seed (and methods without
        one), ``<pair>__<method>__seed<N>.npz`` for the others."""
        first = u.seed is None or u.seed == self.settings.seeds[0]
        return self.art_dir / (f"{u.file_key}.npz" if first else f"{u.file_key}__seed{u.seed}.npz")

    @staticmethod
    def _rows_of(df, u: Unit):
        """The rows of ``metrics.csv`` that belong to unit ``u`` (a boolean Series)."""
        seed = df["seed"].isna() if u.seed is None else (df["seed"] == u.seed)
        return (df["pair"] == u.pair) & (df["method"] == u.name) & seed


def _pair_meta(p: Pair) -> dict:
    return dict(source=p.source, a=list(p.a.shape), b=list(p.b.shape), has_gt=p.has_gt,
                valid_fraction=None if p.valid is None else round(float(p.valid.mean()), 4),
                nonfinite_pixels=p.nonfinite_pixels, info=p.info)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
