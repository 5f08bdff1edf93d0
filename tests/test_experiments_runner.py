"""Runner in-process: a failing method becomes NaN rows, the rest of the run goes on."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from experiments import methods
from experiments.cli import finish
from experiments.pairs import PairSource, builtin_pair
from experiments.runner import COLUMNS, RunSettings, Runner, load_pairs


def _runner(out, **kw):
    """A runner on the built-in chelsea pair at 32 px, settings overridden by ``kw``."""
    settings = dict(pairs=("chelsea",), origins=(("chelsea", "built-in"),), max_size=32,
                    pm_iterations=2, dpm_iterations=2, patch_size=7, seed=0, device="cpu",
                    threads=1, exact_max_pixels=40000, out=str(out), command="test")
    settings.update(kw)
    src = PairSource("chelsea", "built-in", lambda m: builtin_pair("chelsea", max_size=m))
    return Runner(RunSettings(**settings), load_pairs([src], max_size=32, patch_size=7),
                  log=lambda m: None)


def test_failure_becomes_nan_rows(tmp_path, monkeypatch):
    real = methods.run_exact

    def broken(pair, **kwargs):
        if pair.name == "warmup":
            return real(pair, **kwargs)
        raise MemoryError("simulated out-of-memory")

    monkeypatch.setattr(methods, "run_exact", broken)
    runner = _runner(tmp_path)
    runner.prepare_output()
    df = runner.run()
    assert list(df.columns) == COLUMNS
    exact = df[df["method"] == "exact"]
    assert len(exact) == 1 and np.isnan(exact["psnr"].iloc[0])
    assert exact[["device", "threads", "height", "width", "patch_size", "seed"]].notna().all(axis=None)
    assert df[df["method"] == "pm"]["psnr"].notna().all()
    finish(runner, df, 1.0)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert "simulated out-of-memory" in meta["failures"]["chelsea__exact"]
    assert "simulated out-of-memory" in (tmp_path / "REPORT.md").read_text()
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 3


def test_dpm_keep_current_method(tmp_path):
    """--dpm-keep-current adds dpm-keep rows with dpm's iteration count."""
    runner = _runner(tmp_path, dpm_keep_current=True, exact_max_pixels=0)
    runner.prepare_output()
    df = runner.run()
    assert sorted(df[df["method"] == "dpm-keep"]["iteration"]) == [1, 2]
    assert set(df["method"]) == {"pm", "dpm", "dpm-keep"}
