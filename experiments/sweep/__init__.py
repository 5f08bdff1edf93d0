"""Studies: ``python -m experiments sweep SPEC.toml`` runs a grid of units on Dask.

A study is a grid (pairs x method settings x image sizes x seeds) read from a TOML spec
(:mod:`.spec`); each cell is a *unit* whose key hashes everything that defines its numbers.
Units run as tasks on Dask ``distributed`` (:mod:`.engine`): an embedded ``LocalCluster`` by
default, any existing cluster by address, or Dask's synchronous scheduler. Workers compute
(:mod:`.worker`) and return rows; the client writes one Parquet file per finished unit
(:mod:`.store`), so a rerun resumes and a lost worker loses nothing. The report (:mod:`.report`)
shows quality against time (Pareto front per dataset), against iteration (seed bands) and
against image size, and the best setting of each method at equal time budgets.
"""
from .engine import SYNCHRONOUS, SweepOutcome, plan, run_sweep
from .spec import METHOD_PARAMS, Spec, Unit, load_spec, parse_spec_dict
from .store import result_columns

__all__ = ["run_sweep", "plan", "load_spec", "parse_spec_dict", "Spec", "Unit", "SweepOutcome",
           "METHOD_PARAMS", "SYNCHRONOUS", "result_columns"]
