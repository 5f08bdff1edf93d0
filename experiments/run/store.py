"""Where results go: ``compare``'s metrics.csv and a study's one Parquet file per unit.

* :class:`MetricsStore`: ``metrics.csv`` (:data:`~experiments.run.execute.COLUMNS`), one row per
  (pair, method, iteration), appended and flushed as measured; a torn last line of an interrupted
  write is dropped on reading.
* :class:`UnitStore`: a study's output folder ``OUT/``:

  * ``units/<key>.parquet``: the rows of one finished unit (one per iteration), written to a
    temporary name and renamed, so a file is either complete or absent. A unit is done when its
    file exists: a rerun skips it.
  * ``failed/<key>.json``: a unit that raised: its one-line reason, where it ran, when. Removed
    when the unit later succeeds (a rerun tries failed units again).
  * ``results.parquet``, ``results.csv``: every row of the spec's finished units
    (:func:`result_columns`), plus the presentation columns of the current spec (``dataset``,
    ``setting``).
  * ``failures.csv``, ``sweep.json``, ``spec.toml``, ``REPORT.md`` and figures.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from ..errors import UserError
from .execute import COLUMNS, SPREAD_COLUMNS
from .units import Unit, param_columns

#: Columns of a study's results after :data:`COLUMNS`: which unit, its setting, how it was timed.
UNIT_COLUMNS = ["setting", "unit", "setting_key", "origin", "max_size", "repeats",
                *SPREAD_COLUMNS, "repeats_agree",
                "timing", "timing_locked", "host", "worker", "host_cores", "concurrent_units",
                "concurrent_max", "concurrent_timed", "load_avg_1m", "warmup_s", "finished", "code"]


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


def result_columns() -> list[str]:
    """Every column of ``results.parquet`` / ``results.csv``, in order."""
    return [*COLUMNS, *UNIT_COLUMNS, *param_columns()]


class UnitStore:
    """``OUT/units/`` and ``OUT/failed/`` (see the module docstring)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.units = self.out / "units"
        self.failed = self.out / "failed"

    def prepare(self, *, fresh: bool = False) -> None:
        """Create the folders; ``fresh`` deletes earlier results first. Removes torn temp files.

        ``out`` must not be a file (:func:`~experiments.sweep.engine.run_sweep` checks first).
        """
        if fresh:
            for folder in (self.units, self.failed):
                for p in folder.glob("*") if folder.is_dir() else ():
                    p.unlink()
            for name in ("results.parquet", "results.csv", "failures.csv", "REPORT.md",
                         "sweep.json"):
                (self.out / name).unlink(missing_ok=True)
            for p in self.out.glob("*.png"):
                p.unlink()
        try:
            self.units.mkdir(parents=True, exist_ok=True)
            self.failed.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --out {self.out}: {exc.strerror or exc}") from None
        for p in [*self.units.glob("*.tmp"), *self.failed.glob("*.tmp")]:
            p.unlink(missing_ok=True)  # left by a client killed while writing

    def done_keys(self) -> set[str]:
        return {p.stem for p in self.units.glob("*.parquet")}

    def write_unit(self, key: str, rows: list[dict]) -> Path:
        import pandas as pd  # deferred: heavy import

        df = pd.DataFrame(rows)
        path = self.units / f"{key}.parquet"
        tmp = self.units / f"{key}.{os.getpid()}.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        (self.failed / f"{key}.json").unlink(missing_ok=True)
        return path

    def write_failure(self, unit: Unit, info: dict) -> None:
        record = dict(unit=unit.key, pair=unit.pair, method=unit.method,
                      params={k: v for k, v in unit.given}, max_size=unit.max_size,
                      seed=unit.seed, **info)
        tmp = self.failed / f"{unit.key}.tmp"
        tmp.write_text(json.dumps(record, default=list) + "\n")
        os.replace(tmp, self.failed / f"{unit.key}.json")

    def failures(self, keys: set[str] | None = None) -> list[dict]:
        out = []
        for p in sorted(self.failed.glob("*.json")):
            if keys is not None and p.stem not in keys:
                continue
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def read_units(self, keys: list[str]):
        """The rows of the finished units among ``keys`` (in that order) as one DataFrame."""
        import pandas as pd  # deferred: heavy import

        frames = [pd.read_parquet(self.units / f"{k}.parquet") for k in keys
                  if (self.units / f"{k}.parquet").exists()]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=result_columns())
        return pd.concat(frames, ignore_index=True)

    def consolidate(self, units: list[Unit], *, labels: dict[str, str],
                    datasets: dict[str, str]):
        """Write ``results.parquet`` and ``results.csv`` for ``units`` (the spec's); return them.

        ``labels``: setting key -> legend label; ``datasets``: pair -> dataset name.
        """
        df = self.read_units([u.key for u in units])
        df["dataset"] = df["pair"].map(datasets)
        df["setting"] = df["setting_key"].map(labels)
        cols = result_columns()
        for c in cols:
            if c not in df.columns:
                df[c] = None
        extra = [c for c in df.columns if c not in cols]  # a newer worker's columns: keep them
        df = df[cols + extra]
        for name, write in (("results.parquet", lambda p: df.to_parquet(p, index=False)),
                            ("results.csv", lambda p: df.to_csv(p, index=False,
                                                                float_format="%.7g"))):
            tmp = self.out / f"{name}.tmp"
            write(tmp)
            os.replace(tmp, self.out / name)
        return df
