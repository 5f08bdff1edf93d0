"""One engine for ``compare`` and ``sweep``: the registry, units, the skip rule, the vocabulary.

A toy method registered here exists everywhere at once: in ``compare`` (``--methods``), in a
study, in the results tables, in the reports and in the figures; and the same unit gives the
same numbers through ``compare``'s runner and through a study's worker.
"""
from __future__ import annotations

import inspect
import time

import numpy as np
import pandas as pd
import pytest

from experiments.devices import thread_scope
from experiments.errors import UserError
from experiments.methods import registry
from experiments.methods.registry import (EXACT_MAX_PIXELS, Method, Param, exact_skip_reason,
                                          signature_defaults)
from experiments.methods.timed import MethodRun, classic_vote
from experiments.options import COUNT, PATCH, Kind, arg, grid
from experiments.run import parse_spec_dict, plan, run_sweep

QUALITY = ["psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px"]


# --------------------------------------------------------------------------- a toy method
def shift_match(a, b, *, offset: int = 3, patch_size: int = 7):
    """Every pixel of A matched to the pixel ``offset`` columns to its right, clamped into B."""
    h, w = a.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([np.minimum(ys, b.shape[0] - 1),
                     np.clip(xs + offset, 0, b.shape[1] - 1)], axis=-1).astype(np.float32)


TOY_PARAMS = {"offset": Param(Kind("int", minimum=0), "columns to the right"),
              "patch_size": Param(PATCH, "voting patch side")}


def _prepare_toy(params, options, ctx):
    def run(pair, *, seed=None, progress=None):
        with thread_scope(ctx.threads) as used:
            t0 = time.perf_counter()
            nnf = shift_match(pair.a, pair.b, offset=params["offset"])
            dt = time.perf_counter() - t0
        if progress is not None:
            progress()
        return MethodRun("toy", [1], [max(dt, 1e-9)], [nnf],
                         classic_vote(pair.b, int(params["patch_size"])), used)

    return run


@pytest.fixture
def toy():
    """The toy method ``toy`` registered for one test (one registration, nothing else)."""
    method = registry.register(Method("toy", "toy shift", TOY_PARAMS, _prepare_toy,
                                      lambda: signature_defaults(shift_match, TOY_PARAMS), seeded=False,
                                      reports=lambda params: [1]))
    yield method
    registry.unregister("toy")


def test_toy_method_exists_in_compare_sweep_tables_reports_and_figures(toy, tmp_path, capsys):
    from experiments.cli import main
    from experiments.report.sweep import write_report

    out = tmp_path / "compare"
    code = main(["compare", "--data", "chelsea", "--max-size", "32", "--methods", "toy,pm",
                 "--pm-iterations", "2", "--threads", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    df = pd.read_csv(out / "metrics.csv")
    assert list(dict.fromkeys(df["method"])) == ["pm", "toy"]  # registry order
    toy_rows = df[df["method"] == "toy"]
    assert list(toy_rows["iteration"]) == [1] and toy_rows[QUALITY].notna().all(axis=None)
    assert toy_rows["seed"].isna().all()  # the toy takes no seed
    # the toy's matches are what the metrics scored: its EPE against the pair's ground truth
    from experiments.data import builtin_pair
    from experiments.report.metrics import epe

    pair = builtin_pair("chelsea", max_size=32)
    assert toy_rows["epe"].iloc[0] == pytest.approx(epe(shift_match(pair.a, pair.b), pair.gt, pair.valid))
    report = (out / "REPORT.md").read_text()
    assert "`toy`: offset=3, patch_size=7" in report and "toy shift (toy)" in report
    assert "toy" in set(pd.read_csv(out / "summary.csv")["method"])
    assert (out / "artifacts" / "chelsea__toy.npz").exists() and (out / "grid.png").stat().st_size > 10_000

    spec = parse_spec_dict({"max_size": 32, "seeds": [0, 1], "repeats": 1, "device": "cpu",
                            "data": {"sources": ["chelsea"]},
                            "methods": {"toy": {"offset": [1, 2]}, "pm": {"iterations": 2}}},
                           base=tmp_path)
    p = plan(spec)
    assert sorted(p.labels.values()) == ["pm", "toy offset=1", "toy offset=2"]
    assert sum(u.method == "toy" for u in p.units) == 2  # no seed: one unit per setting
    res = run_sweep(spec, out=tmp_path / "sweep", scheduler="synchronous", log=lambda m: None,
                    report=write_report)
    assert (res.done, res.failed) == (4, 0)
    toy_rows = res.results[res.results["method"] == "toy"]
    assert sorted(toy_rows["offset"]) == [1, 2] and toy_rows["psnr"].notna().all()
    assert "toy offset=1" in res.report.read_text()
    assert (tmp_path / "sweep" / "quality_time_psnr.png").exists()


def test_a_unit_gives_the_same_numbers_through_compare_and_a_study(tmp_path):
    """compare's runner and a study's worker run a unit through the same steps: same quality."""
    from experiments.data import PairSource, builtin_pair
    from experiments.run import RunSettings, Runner, load_pairs

    settings = RunSettings(pairs=("coffee",), origins=(("coffee", "built-in coffee"),), max_size=32,
                           methods=("pm", "dpm-keep"), pm_iterations=3, dpm_iterations=3,
                           patch_size=7, seeds=(2,), device="cpu", threads=1, exact_max_pixels=0,
                           out=str(tmp_path / "c"))
    src = PairSource("coffee", "built-in coffee", lambda m: builtin_pair("coffee", max_size=m))
    runner = Runner(settings, load_pairs([src], max_size=32, patch_size=7), log=lambda m: None)
    runner.prepare_output()
    local = runner.run()
    spec = parse_spec_dict({"max_size": 32, "seeds": 2, "repeats": 1, "device": "cpu",
                            "data": {"sources": ["coffee"]},
                            "methods": {"pm": {"iterations": 3}, "dpm-keep": {"iterations": 3}}},
                           base=tmp_path)
    study = run_sweep(spec, out=tmp_path / "s", scheduler="synchronous", log=lambda m: None).results
    assert sorted(set(study["method"])) == ["dpm-keep", "pm"]  # a named setting keeps its name
    key = ["method", "iteration"]
    a = local.sort_values(key).reset_index(drop=True)
    b = study.sort_values(key).reset_index(drop=True)
    # equal up to metrics.csv's 10 significant digits (a study's Parquet keeps every bit)
    pd.testing.assert_frame_equal(a[key + QUALITY], b[key + QUALITY], check_exact=False, rtol=1e-9,
                                  atol=0, check_dtype=False)


# --------------------------------------------------------------------------- the skip rule
def test_exact_skip_rule_worked_by_hand():
    """sqrt(pixels of A x pixels of B) against the limit: the device's default when none is given,
    0 means never; the same rule for compare and studies."""
    assert exact_skip_reason((100, 400), (100, 400), max_pixels=None, device="cpu") is None  # 40000
    assert "40400 > max_pixels 40000" in exact_skip_reason((101, 400), (101, 400), max_pixels=None,
                                                            device="cpu")
    assert exact_skip_reason((101, 400), (101, 400), max_pixels=None, device="cuda") is None
    assert EXACT_MAX_PIXELS["cuda"] > EXACT_MAX_PIXELS["cpu"]
    # A and B may differ: sqrt(50 * 80 * 100 * 160) = 8000
    assert exact_skip_reason((50, 80), (100, 160), max_pixels=8000, device="cpu") is None
    assert "8000 > max_pixels 7999" in exact_skip_reason((50, 80), (100, 160), max_pixels=7999, device="cpu")
    assert "disabled" in exact_skip_reason((8, 8), (8, 8), max_pixels=0, device="cuda")


# --------------------------------------------------------------------------- the vocabulary
@pytest.mark.parametrize("kind, value, expected", [
    (COUNT, 3, 3), (PATCH, 5, 5), (Kind("float", minimum=0), 2, 2.0),
    (Kind("float", minimum=0, inclusive=True), 0, 0.0), (Kind("bool"), False, False),
    (Kind("choice", choices=("a", "b")), "b", "b"), (Kind("window"), 25, (25, 25)),
    (Kind("window"), [10, 30.5], (10, 30.5)), (Kind("names", choices=("x", "y")), ["y", "x", "y"], ("x", "y")),
    (Kind("size", minimum=8), "native", None), (Kind("size", minimum=8), 64, 64),
])
def test_kind_accepts_and_normalises(kind, value, expected):
    assert kind.check(value, "k") == expected


@pytest.mark.parametrize("kind, value, message", [
    (COUNT, 0, "k: expected an integer >= 1, got 0"), (COUNT, True, "k: expected an integer >= 1, got True"),
    (PATCH, 4, "k: expected an integer >= 1 (odd), got 4"), (Kind("float", minimum=0), 0, "k: expected a number > 0"),
    (Kind("float", minimum=0), float("inf"), "got inf"), (Kind("bool"), 1, "k: expected true or false, got 1"),
    (Kind("choice", choices=("a", "b")), "c", "k: expected one of 'a', 'b', got 'c'"),
    (Kind("window"), [1, 2, 3], "k: expected a window"), (Kind("window"), 0, "k: expected a window"),
    (Kind("names", choices=("x",), noun="quirk"), ["z"], "k: unknown quirk 'z'; choose from x"),
    (Kind("size", minimum=8), 4, 'k: expected an integer >= 8 or "native", got 4'),
])
def test_kind_refuses_in_one_line(kind, value, message):
    with pytest.raises(UserError) as err:
        kind.check(value, "k")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_command_line_and_a_spec_share_the_kinds(tmp_path):
    import argparse

    parse = arg(COUNT)
    assert parse("4") == 4
    for text, message in (("0", "expected an integer >= 1, got 0"), ("x", "expected an integer >= 1, got 'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)
    assert arg(Kind("size", minimum=8))("native") is None
    assert grid(COUNT, [2, 3, 2], "g") == [2, 3]  # distinct, in order
    with pytest.raises(UserError, match=r"^g: expected an integer >= 1 \(or a list of them\), got 0"):
        grid(COUNT, [1, 0], "g")
    with pytest.raises(UserError, match="empty grid"):
        grid(COUNT, [], "g")
    # the registry declares its parameters with these kinds; a spec refuses what they refuse
    assert registry.METHODS["pm"].params["iterations"].kind == COUNT
    with pytest.raises(UserError, match=r"methods\.pm\.iterations: expected an integer >= 1"):
        parse_spec_dict({"methods": {"pm": {"iterations": 0}}}, base=tmp_path)


def test_defaults_are_read_from_the_libraries():
    """The registry's defaults are the library functions' own (so a changed default is a new unit)."""
    import classic_pm
    import diff_pm

    sig = inspect.signature(classic_pm.patchmatch).parameters
    assert registry.METHODS["pm"].defaults() == {k: sig[k].default for k in ("patch_size", "iterations",
                                                                               "refine_radius")}
    dpm = registry.METHODS["dpm"].defaults()
    sig = inspect.signature(diff_pm.DifferentiablePatchMatch.__init__).parameters
    assert dpm["window"] == tuple(sig["window"].default) and dpm["iterations"] == sig["iterations"].default
    assert set(dpm) == set(registry.DPM_PARAMS) - {"checkpoint"}  # every DPM option but the suite's own


def test_study_plots_encode_varied_parameters():
    """The first parameter varied among a method's settings gives the colour, the second the line
    style, the third the marker; a setting alone keeps its method's own colour."""
    import pandas as pd

    from experiments.report.plotting import colour
    from experiments.report.sweep_figures import parse_label, styles

    labels = [f"dpm window={w} keep_current={k} sample_count={s}"
              for w in ("25x25", "100x100") for k in ("false", "true") for s in (1, 2)] + ["pm", "exact"]
    methods = ["dpm"] * 8 + ["pm", "exact"]
    look, handles = styles(pd.Series(labels), pd.Series(methods))
    assert parse_label(labels[0]) == ("dpm", {"window": "25x25", "keep_current": "false", "sample_count": "1"})
    dpm = [look[lab] for lab in labels[:8]]
    assert len({s.colour for s in dpm[:4]}) == 1 and dpm[0].colour != dpm[4].colour  # window -> colour
    assert [s.linestyle for s in dpm[:4]] == ["-", "-", "--", "--"]  # keep_current -> line style
    assert [s.marker for s in dpm[:4]] == ["o", "s", "o", "s"]  # sample_count -> marker
    assert look["pm"].colour == colour("pm") and look["exact"].colour == colour("exact")
    # one legend entry per value, not per setting: 2 + 2 + 2 for dpm, one each for pm and exact
    assert len(handles) == 8 and "dpm window=25x25" in [h.get_label() for h in handles]
