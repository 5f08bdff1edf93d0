"""The ``compare`` run: every method, per iteration, on every pair; CSV as it goes; resumable.

Output folder layout (see README.md (section "Experiments")):

* ``metrics.csv``: one row per (pair, method, iteration), appended as produced (:data:`COLUMNS`).
* ``summary.csv``: each (pair, method)'s last iteration.
* ``config.json``: full configuration, package versions, device, threads, seed, git commit,
  warm-up time, skipped work and why.
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
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .pairs import Pair, PairSource, check_pair

COLUMNS = [
    "pair", "method", "iteration", "time_s", "cum_time_s",
    "psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px",
    "device", "threads", "height", "width", "height_b", "width_b", "patch_size", "seed",
]
# Settings that define the numbers; a resumed run must match them exactly.
RUN_KEYS = ("pairs", "max_size", "pm_iterations", "dpm_iterations", "patch_size", "seed",
            "device", "threads", "exact_max_pixels", "checkpoint", "dpm_keep_current")
STRIP_COLUMNS = 6  # reconstructions kept per method for iterations_<pair>.png
METHOD_ORDER = ("pm", "dpm", "dpm-keep", "dpm-learned", "exact")
OUTPUT_FILES = ("metrics.csv", "summary.csv", "config.json", "REPORT.md", "grid.png",
                "convergence.png")


@dataclass
class Unit:
    pair: str
    method: str
    iterations: list[int]

    @property
    def key(self) -> str:
        return f"{self.pair}__{self.method}"


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


# --------------------------------------------------------------------------- metadata
def git_commit() -> dict:
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD") or "unknown"
        # uncommitted changes to the code (not to reports or docs)
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "classic_pm",
                         "diff_pm", "experiments", "pyproject.toml"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", None
    return dict(commit=commit, dirty=dirty)


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("numpy", "numba", "torch", "scikit-image", "opencv-python-headless", "pandas",
                 "matplotlib", "tqdm", "patchmatch-bench"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: str, threads: int) -> dict:
    import numba
    import torch

    info = dict(device=device, cpu=cpu_name(), cpu_count=os.cpu_count(), threads=threads,
                torch_threads=torch.get_num_threads(), numba_threads=numba.get_num_threads(),
                platform=platform.platform())
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# --------------------------------------------------------------------------- CSV store
class MetricsStore:
    """``metrics.csv`` with append-as-you-go and repair of interrupted runs."""

    def __init__(self, path: Path):
        self.path = path

    def read(self):
        import pandas as pd

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
class Runner:
    """One ``compare`` run (see the module docstring).

    Parameters
    ----------
    config : dict
        Resolved settings (keys of :data:`RUN_KEYS` plus ``command``, ``out`` ...).
    sources : list of PairSource
    out : Path
    fresh : bool
        Discard earlier results in ``out`` instead of resuming.
    """

    def __init__(self, config: dict, sources: list[PairSource], out: Path, *, fresh: bool,
                 log=print):
        self.config = config
        self.sources = sources
        self.out = out
        self.fresh = fresh
        self.log = log
        self.store = MetricsStore(out / "metrics.csv")
        self.art_dir = out / "artifacts"
        self.pairs: dict[str, Pair] = {}
        self.skipped: dict[str, str] = {}
        self.meta: dict = {}
        self.resumed = False
        self.learned = self.learned_info = None

    # ---- preparation (cheap, before torch/numba are imported) --------------------------
    def load_checkpoint(self) -> None:
        """Load ``--checkpoint`` (if any) before anything in ``out`` is touched."""
        if self.config["checkpoint"]:
            self.learned, self.learned_info = load_learned(
                self.config["checkpoint"], self.config["device"],
                iterations=self.config["dpm_iterations"])

    def load_pairs(self) -> None:
        """Decode and check every pair up front, so bad input fails before any compute."""
        for src in self.sources:
            pair = src.load(self.config["max_size"])
            check_pair(pair, self.config["patch_size"])
            self.pairs[pair.name] = pair

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
                new = {k: self.config[k] for k in RUN_KEYS}
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
            run={k: self.config[k] for k in RUN_KEYS},
            config=self.config,
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
        cfg = self.config
        units = [Unit(pair.name, "pm", list(range(1, cfg["pm_iterations"] + 1))),
                 Unit(pair.name, "dpm", list(range(1, cfg["dpm_iterations"] + 1)))]
        if cfg.get("dpm_keep_current"):
            units.append(Unit(pair.name, "dpm-keep", list(range(1, cfg["dpm_iterations"] + 1))))
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
        limit = self.config["exact_max_pixels"]
        where = "CUDA" if self.config["device"].startswith("cuda") else "CPU"
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
        import torch
        from tqdm.auto import tqdm

        from . import methods

        cfg = self.config
        device, threads = cfg["device"], cfg["threads"]
        torch.set_num_threads(threads)
        learned, learned_info = self.learned, self.learned_info
        learned_its = learned_iterations(learned, learned_info) if learned is not None else None
        self.meta.update(device_info=device_info(device, threads), versions=package_versions(),
                         git=git_commit(), dpm_config=dpm_defaults(cfg))
        self.write_config("running", learned=learned_info)

        df = self.store.read()
        if self.store.path.exists():
            self.store.rewrite(df)  # normalise; drops a torn last line of an interrupted write
        self.log("warming up (numba JIT, torch) on a tiny pair ...")
        warm = methods.warm_up(patch_size=cfg["patch_size"], threads=threads, device=device,
                               exact=cfg["exact_max_pixels"] > 0,
                               learned=learned)
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

    def measure(self, u: Unit, pair: Pair, run) -> dict:
        """Metrics of every iteration of a finished timed run: rows appended as they come.

        Keeps the reconstructions of the figure iterations and the final NNF in the unit's
        artifact. Returns the last row.
        """
        import torch

        cfg = self.config
        p = cfg["patch_size"]
        # Metrics are not timed: one torch thread avoids the stalls of a 2-thread pool on a
        # CPU shared with other work (seconds per call under heavy load).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._measure(u, pair, run, p)
        finally:
            torch.set_num_threads(threads)

    def _measure(self, u: Unit, pair: Pair, run, p: int) -> dict:
        from tqdm.auto import tqdm

        from .metrics import energy, epe, image_metrics, within_1px

        cfg = self.config
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
                       **image_metrics(pair.a, recon),
                       energy=energy(pair.a, pair.b, match, patch_size=p),
                       epe=epe(match, pair.gt, pair.valid),
                       within_1px=within_1px(match, pair.gt, pair.valid), **self.setting_columns(pair))
            self.store.append(row)
            if it in strip or it == run.iterations[-1]:
                keep_its.append(it)
                keep_recons.append((recon * 255 + 0.5).astype(np.uint8))
        self.save_artifact(u, run.matches(run.nnfs[-1]), keep_its, keep_recons)
        return row

    def timed_run(self, u: Unit, pair: Pair, step):
        """Run one (pair, method) unit with per-iteration timing (see :mod:`.methods`)."""
        from . import methods

        cfg = self.config
        if u.method == "pm":
            run = methods.run_pm(pair, iterations=cfg["pm_iterations"],
                                 patch_size=cfg["patch_size"], seed=cfg["seed"],
                                 threads=cfg["threads"], progress=step)
        elif u.method in ("dpm", "dpm-keep", "dpm-learned"):
            model = self.learned if u.method == "dpm-learned" else methods.default_dpm(
                iterations=cfg["dpm_iterations"], patch_size=cfg["patch_size"],
                keep_current=u.method == "dpm-keep")
            run = methods.run_dpm(model, pair, method=u.method, device=cfg["device"],
                                  seed=cfg["seed"], patch_size=cfg["patch_size"], progress=step)
        else:
            run = methods.run_exact(pair, patch_size=cfg["patch_size"], device=cfg["device"])
            step()
        if run.iterations != u.iterations:
            raise RuntimeError(f"{u.method} reported iterations {run.iterations}, "
                               f"expected {u.iterations}")
        return run

    def record_failure(self, u: Unit, pair: Pair, exc: Exception) -> None:
        """A failed unit becomes NaN rows (one per expected iteration) and a logged reason.

        No artifact is written, so a resumed run tries the unit again.
        """
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.meta.setdefault("failures", {})[u.key] = msg
        self.log(f"{pair.name:>14s} {u.method:<11s} FAILED ({msg}); NaN rows written")
        for it in u.iterations:  # timing and metric columns left out: written empty (NaN)
            self.store.append(dict(pair=pair.name, method=u.method, iteration=it,
                                   **self.setting_columns(pair)))

    def setting_columns(self, pair: Pair) -> dict:
        """The columns of a metrics row that describe the setting (device, sizes, patch, seed)."""
        cfg = self.config
        return dict(device=cfg["device"], threads=cfg["threads"], height=pair.a.shape[0],
                    width=pair.a.shape[1], height_b=pair.b.shape[0], width_b=pair.b.shape[1],
                    patch_size=cfg["patch_size"], seed=cfg["seed"])

    # ---- artifacts --------------------------------------------------------------------
    def artifact(self, u: Unit) -> Path:
        return self.art_dir / f"{u.key}.npz"

    def save_artifact(self, u: Unit, nnf, its, recons) -> None:
        tmp = self.art_dir / f"{u.key}.tmp.npz"
        np.savez_compressed(tmp, nnf=np.asarray(nnf, np.float32), iterations=np.asarray(its),
                            recons=np.stack(recons))
        os.replace(tmp, self.artifact(u))


def load_artifact(out: Path, pair: str, method: str) -> dict | None:
    p = out / "artifacts" / f"{pair}__{method}.npz"
    if not p.exists():
        return None
    with np.load(p) as z:
        return {k: z[k] for k in z.files}


def dpm_defaults(cfg: dict) -> dict:
    """Constructor settings of the ``dpm`` method: the defaults of DifferentiablePatchMatch,
    with ``iterations`` and ``patch_size`` from the run (for config.json and the report)."""
    import inspect

    import diff_pm

    sig = inspect.signature(diff_pm.DifferentiablePatchMatch.__init__)
    out = {k: p.default for k, p in sig.parameters.items()
           if p.default is not inspect.Parameter.empty and k != "features"}
    out.update(iterations=cfg["dpm_iterations"], patch_size=cfg["patch_size"])
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def learned_iterations(model, info) -> int:
    """Iterations of a learnt model: ``model.iterations``, else ``info["iterations"]``."""
    its = getattr(model, "iterations", None)
    if its is None and isinstance(info, dict):
        its = info.get("iterations") or info.get("config", {}).get("iterations")
    if its is None:
        raise UserError("the checkpoint's model does not say how many iterations it runs")
    return int(its)


def load_learned(path: str, device: str, *, iterations: int | None = None):
    """Load a ``dpm-learned`` checkpoint through ``experiments.learned.load_checkpoint``.

    ``iterations`` (``--dpm-iterations``) makes the learnt DPM run as many iterations as ``dpm``,
    so that the two compare at equal iterations.
    """
    try:
        from . import learned as learned_mod
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("learned"):
            raise UserError("--checkpoint needs experiments/learned.py (the training module), "
                            "which is not installed yet") from None
        raise
    if not Path(path).is_file():
        raise UserError(f"--checkpoint {path} does not exist; train one with "
                        "`python -m experiments train` or fix the path")
    try:
        if iterations is None:
            model, info = learned_mod.load_checkpoint(path, device=device)
        else:
            model, info = learned_mod.load_checkpoint(path, device=device, iterations=iterations)
    except UserError:
        raise
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise UserError(f"--checkpoint {path} could not be loaded ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); "
                        "pass a checkpoint written by `python -m experiments train`") from None
    return model, info


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
                info=p.info)


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
