"""The run room: units, and the two ways of running them.

* :mod:`.units`: :class:`Setting` and :class:`Unit` (pair, size, method setting with its defaults
  filled in, seed), their keys, labels and parameter columns.
* :mod:`.spec`: a study's TOML parsed into a plain :class:`Spec` (nothing resolved).
* :mod:`.planning`: a spec resolved into units, once: defaults, checks, checkpoints, data.
* :mod:`.execute`: one unit, wherever it runs: skip rule, preparation, warm-up, timed runs, and
  the one row builder (:data:`COLUMNS`).
* :mod:`.settings`, :mod:`.local`: ``compare``, a fixed study (:class:`RunSettings`,
  :func:`compare_spec`) run in this process (:class:`Runner`; CSV as it goes, resumable).
* :mod:`.sweep`, :mod:`.cluster`, :mod:`.worker`: a study on Dask (client, executors, the task).
* :mod:`.store`: ``compare``'s metrics.csv and a study's Parquet units.

May import: the foundation, the data and methods rooms, and the report room's metrics and
artifacts (a run measures its units and keeps what the figures need); never :mod:`learning`
(checkpoint models come through a loader the command line hands in).
"""
from .execute import COLUMNS
from .local import Runner
from .settings import RunSettings, compare_spec, load_pairs
from .planning import Plan, plan
from .spec import Spec, load_spec, parse_spec_dict
from .store import result_columns
from .sweep import SweepOutcome, run_sweep
from .units import Setting, Unit

__all__ = ["COLUMNS", "RunSettings", "Runner", "compare_spec", "load_pairs", "Plan", "plan", "Spec",
           "load_spec", "parse_spec_dict", "result_columns", "SweepOutcome", "run_sweep", "Setting",
           "Unit"]
