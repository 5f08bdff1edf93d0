"""``compare``'s runner in-process: a failing method becomes NaN rows, the rest of the run goes on."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from experiments.cli import finish
from experiments.data import PairSource, builtin_pair, resolve_data
from experiments.methods import registry
from experiments.run import COLUMNS, RunSettings, Runner, load_pairs


def _runner(out, **kw):
    """A runner on the built-in chelsea pair at 32 px, settings overridden by ``kw``."""
    settings = dict(pairs=("chelsea",), origins=(("chelsea", "built-in"),), max_size=32,
                    methods=("pm", "dpm", "exact"), pm_iterations=2, dpm_iterations=2,
                    patch_size=7, seeds=(0,), device="cpu", threads=1, exact_max_pixels=40000,
                    out=str(out), command="test")
    settings.update(kw)
    src = PairSource("chelsea", "built-in", lambda m: builtin_pair("chelsea", max_size=m))
    return Runner(RunSettings(**settings), load_pairs([src], max_size=32, patch_size=7),
                  log=lambda m: None)


def test_failure_becomes_nan_rows(tmp_path, monkeypatch):
    real = registry.run_exact

    def broken(pair, **kwargs):
        if pair.name == "warmup":
            return real(pair, **kwargs)
        raise MemoryError("simulated out-of-memory")

    monkeypatch.setattr(registry, "run_exact", broken)
    runner = _runner(tmp_path)
    runner.prepare_output()
    df = runner.run()
    assert list(df.columns) == COLUMNS
    exact = df[df["method"] == "exact"]
    assert len(exact) == 1 and np.isnan(exact["psnr"].iloc[0])
    assert exact[["device", "threads", "height", "width", "patch_size"]].notna().all(axis=None)
    assert exact["seed"].isna().all() and (df.loc[df["method"] != "exact", "seed"] == 0).all()  # no seed
    assert exact[["torch_threads", "numba_threads"]].isna().all(axis=None)  # no timed run finished
    pm = df[df["method"] == "pm"]
    assert (pm["torch_threads"] == 1).all() and (pm["numba_threads"] == 1).all()
    assert df[df["method"] == "pm"]["psnr"].notna().all()
    finish(runner, df, 1.0)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert "simulated out-of-memory" in meta["failures"]["chelsea__exact"]
    assert "simulated out-of-memory" in (tmp_path / "REPORT.md").read_text()
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 3


def test_dpm_keep_current_method(tmp_path):
    """The named setting dpm-keep runs with dpm's iteration count (exact_max_pixels 0: no exact)."""
    runner = _runner(tmp_path, methods=("pm", "dpm", "dpm-keep", "exact"), exact_max_pixels=0)
    runner.prepare_output()
    df = runner.run()
    assert sorted(df[df["method"] == "dpm-keep"]["iteration"]) == [1, 2]
    assert set(df["method"]) == {"pm", "dpm", "dpm-keep"}


def test_run_settings_serialise_like_config_json(tmp_path):
    runner = _runner(tmp_path)
    settings = runner.settings
    d = settings.to_dict()
    # deliberately a literal: locks the schema (keys and their order) of config.json's "config"
    assert list(d) == ["pairs", "origins", "max_size", "methods", "pm_iterations", "dpm_iterations",
                       "patch_size", "seeds", "device", "threads", "exact_max_pixels",
                       "checkpoint", "score_at", "write_outputs", "out", "command"]
    assert d["pairs"] == ["chelsea"] and d["origins"] == {"chelsea": "built-in"}
    # the run settings are the config minus what does not change the numbers (where the pairs
    # come from, where the results go, how the command was spelled), with the same values
    run = settings.run_dict()
    assert set(d) - set(run) == {"origins", "write_outputs", "out", "command"} and set(run) <= set(d)
    assert all(run[k] == d[k] for k in run)
    # so a run only differing in those compares equal for resuming, and any other field does not
    other_place = dataclasses.replace(settings, origins=(("chelsea", "elsewhere"),),
                                      out=str(tmp_path / "other"), command="other command")
    assert other_place.run_dict() == run
    changes = dict(pairs=("chelsea", "motorcycle"), max_size=48, methods=("pm",), pm_iterations=3,
                   dpm_iterations=3, patch_size=9, seeds=(1,), device="cuda", threads=2,
                   exact_max_pixels=0, checkpoint="/x.pt", score_at="native")
    for key, value in changes.items():
        assert dataclasses.replace(settings, **{key: value}).run_dict() != run, key
    runner.prepare_output()
    runner.write_config("running")
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["config"] == d and meta["run"] == settings.run_dict()
    # every setting's parameters, defaults filled in: what each number comes from
    assert set(meta["settings"]) == {"pm", "dpm", "exact"}
    assert meta["settings"]["pm"]["iterations"] == 2 and meta["settings"]["dpm"]["window"] == [100, 100]


def test_nonfinite_pixel_counts_in_config_json(tmp_path, write_image):
    a = np.full((20, 24, 3), 0.5, np.float32)
    a[2, 3] = np.nan
    write_image(tmp_path / "d" / "image_1" / "x.tiff", a)
    write_image(tmp_path / "d" / "image_2" / "x.tiff", np.full((20, 24, 3), 0.4, np.float32))
    notes = []
    sources = resolve_data([str(tmp_path / "d")], log=notes.append)
    pairs = load_pairs(sources, max_size=None, patch_size=7)
    settings = RunSettings(pairs=("d-x",), origins=(("d-x", "folder"),), max_size=None,
                           methods=("pm", "dpm"), pm_iterations=1, dpm_iterations=1, patch_size=7,
                           seeds=(0,), device="cpu", threads=1, exact_max_pixels=0,
                           out=str(tmp_path / "out"))
    runner = Runner(settings, pairs, log=notes.append)
    runner.prepare_output()
    runner.write_config("running")
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["pairs_info"]["d-x"]["nonfinite_pixels"] == {"a": 1, "b": 0}
    assert len(notes) == 1 and "x.tiff: 1 pixel with NaN or inf values replaced" in notes[0]
