"""``python -m experiments sweep``: spec checks, unit keys, Dask execution, resume, lost workers.

Tiny studies (32-px built-in pairs, few iterations) so that every test stays short on a loaded
2-core machine; nothing here asserts a timing. Runs that need separate processes go through the
command line (``conftest.run_cli``); the in-process ones use Dask's synchronous scheduler.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO
from experiments.errors import UserError
from experiments.methods import registry
from experiments.run import load_spec, parse_spec_dict, plan, result_columns, run_sweep
from experiments.run import planning as plan_mod
from experiments.run import worker as worker_mod
from experiments.run.execute import prepare
from experiments.run.units import setting_key
from experiments.options import Kind

QUALITY = ["psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px", "bad_2_0", "fl", "d1",
           "epe_noc", "epe_occ"]
ROW_KEY = ["pair", "setting_key", "seed", "iteration"]

# 2 pairs x 2 settings x 2 seeds at 32 px: 8 units.
TINY = """
title = "tiny"
max_size = 32
seeds = [0, 1]
repeats = 2
device = "cpu"
threads = 1

[data]
sources = ["chelsea", "coffee"]

[methods.pm]
iterations = 3

[methods.dpm]
iterations = 4
window = 20
"""
# Long enough (24 units, 3 repeats) to be caught mid-sweep.
LONGER = TINY.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3, 4, 5]").replace(
    "repeats = 2", "repeats = 3").replace("iterations = 4", "iterations = 15")


def _write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _env(tmp_path: Path) -> dict:
    """Child environment: unbuffered output, a private host registry (other sweeps on this
    host would otherwise count as contention)."""
    return dict(os.environ, PYTHONUNBUFFERED="1",
                PATCHMATCH_SWEEP_REGISTRY=str(tmp_path / "registry"))


def _sweep(tmp_path: Path, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", "sweep", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=_env(tmp_path))


def _popen(tmp_path: Path, log: Path, *args) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "experiments", "sweep", *map(str, args)],
                            cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=_env(tmp_path))


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _finished_units(log: Path) -> int:
    return sum(1 for ln in log.read_text().splitlines() if ln.startswith("["))


def _worker_pids(log: Path) -> list[int]:
    for ln in log.read_text().splitlines():
        if ln.startswith("LocalCluster:") and "pids " in ln:
            return [int(p) for p in ln.split("pids ")[1].rstrip(")").split(", ")]
    return []


def _assert_complete(out: Path, n_units: int) -> pd.DataFrame:
    """Every unit exactly once: one file each, no temp file, no duplicate row."""
    files = sorted((out / "units").iterdir())
    assert len(files) == n_units and all(f.suffix == ".parquet" for f in files), files
    df = pd.read_parquet(out / "results.parquet")
    assert df["unit"].nunique() == n_units
    assert not df.duplicated(["unit", "iteration"]).any()
    assert sorted(set(df["unit"])) == sorted(f.stem for f in files)
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == len(df) and list(csv.columns) == list(df.columns)
    return df


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie child of a dead parent counts as gone
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0
    except OSError:
        return True


# --------------------------------------------------------------------------- the spec
BASE = {"max_size": 32, "methods": {"pm": {"iterations": 2}}}


def _with(**changes) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw.update(changes)
    return raw


@pytest.mark.parametrize("raw, message", [
    (_with(methods={"sift": {}}), r"^methods\.sift: unknown method; choose from pm, pm-kd, dpm, dpm-reference, "),
    (_with(methods={"dpm-keep": {"keep_current": False}}),
     r"^methods\.dpm-keep\.keep_current: fixed by dpm-keep \(keep_current = True\)"),
    (_with(methods={"dpm-learned": {"window": 20}}), r"^methods\.dpm-learned: dpm-learned needs checkpoint"),
    (_with(methods={"dpm": {"windw": 50}}), r"^methods\.dpm\.windw: unknown parameter of dpm"),
    (_with(methods={"dpm": {"window": []}}), r"^methods\.dpm\.window: empty grid"),
    (_with(methods={"dpm": {"quirks": []}}), r"^methods\.dpm\.quirks: empty grid.*\[\[\]\]"),
    (_with(methods={"pm": {"iterations": "3"}}),
     r"^methods\.pm\.iterations: expected an integer >= 1 .*got '3'"),
    (_with(methods={"pm": {"iterations": [2, 0]}}),
     r"^methods\.pm\.iterations: expected an integer >= 1 .*got 0"),
    (_with(methods={"pm": {"patch_size": 6}}), r"^methods\.pm\.patch_size: .*\(odd\).*got 6"),
    (_with(methods={"dpm": {"keep_current": 1}}),
     r"^methods\.dpm\.keep_current: expected true or false .*got 1"),
    (_with(methods={"dpm": {"window": [[10, 20, 30]]}}), r"^methods\.dpm\.window: expected a window"),
    (_with(methods={"dpm": {"evaluation": "medium"}}),
     r"^methods\.dpm\.evaluation: expected one of 'soft', 'hard'"),
    (_with(methods={"dpm": {"quirks": [["zero_border", "nope"]]}}),
     r"^methods\.dpm\.quirks: unknown quirk 'nope'"),
    (_with(methods={"dpm": {"checkpoint": "no/such/file.pt"}}),
     r"^methods\.dpm\.checkpoint: no/such/file\.pt is not a file"),
    (_with(methods={"dpm": [{"iterations": 2}, {"sample_count": 0}]}),
     r"^methods\.dpm\[1\]\.sample_count: expected an integer >= 1"),
    (_with(methods={"exact": [{"max_pixels": 100, "patch_size": 5},
                              {"max_pixels": 99999, "patch_size": 7}]}),
     r"^methods\.exact\[1\]\.max_pixels: 99999 differs from methods\.exact\[0\]\.max_pixels = "
     r"100; .*all exact tables must give the same max_pixels$"),
    (_with(methods={}), r"^methods: no method"),
    (_with(max_size=[4]), r"^max_size: expected an integer >= 8 or \"native\".*got 4"),
    (_with(seeds=[]), r"^seeds: empty grid"),
    (_with(seeds=[1.5]), r"^seeds: expected an integer >= 0 .*got 1\.5"),
    (_with(repeats=0), r"^repeats: expected an integer >= 1, got 0"),
    (_with(device="tpu"), r"^device: expected one of 'auto', 'cpu', 'cuda'"),
    (_with(timing="polite"), r"^timing: expected one of 'shared', 'exclusive'"),
    (_with(sizes=[32]), r"^sizes: unknown key"),
    (_with(data={"sources": []}), r"^data\.sources: empty grid"),
    (_with(data={"sources": ["chelsea"], "limt": 2}), r"^data\.limt: unknown key"),
])
def test_malformed_spec_names_the_key(raw, message, tmp_path):
    with pytest.raises(UserError, match=message):
        parse_spec_dict(raw, base=tmp_path)


def test_exact_max_pixels_is_one_limit_for_every_exact_table(tmp_path):
    """``max_pixels`` given alike in several ``[[methods.exact]]`` tables (or in one) is the limit of
    every exact setting; none given: the device's default, decided where the unit runs."""
    for tables, limit in [([{"max_pixels": 100, "patch_size": 5},
                            {"max_pixels": 100, "patch_size": 7}], 100),
                          ([{"patch_size": 5}, {"max_pixels": 100, "patch_size": 7}], 100),
                          ([{"patch_size": 5}, {"patch_size": 7}], None)]:
        spec = parse_spec_dict(_with(methods={"exact": tables}), base=tmp_path)
        given = [(("patch_size", p),) + ((("max_pixels", limit),) if limit else ()) for p in (5, 7)]
        assert [s.given for s in spec.settings] == given
        # the limit is no part of the keys: the same units whatever it is
        assert len({u.setting_key for u in plan(spec).units}) == 2
    keys = {u.key for u in plan(parse_spec_dict(_with(methods={"exact": {"max_pixels": 1}}), base=tmp_path)).units}
    assert keys == {u.key for u in plan(parse_spec_dict(_with(methods={"exact": {}}), base=tmp_path)).units}


def test_limit_without_a_dataset_is_refused(tmp_path):
    """``data.limit`` / ``data.select`` pick dataset items; with built-in pairs only they are refused."""
    spec = parse_spec_dict(_with(data={"sources": ["chelsea", "rocket"], "limit": 1}), base=tmp_path)
    with pytest.raises(UserError, match=r"^data\.sources: data\.limit picks pairs of a dataset"):
        plan_mod.resolve_sources(spec)


def test_spec_file_errors_say_which_file(tmp_path):
    with pytest.raises(UserError, match=r"bad\.toml is not valid TOML"):
        load_spec(_write(tmp_path, "max_size = [32\n", "bad.toml"))
    with pytest.raises(UserError, match=r"wrong\.toml: methods\.pm\.refine_radius: expected"):
        load_spec(_write(tmp_path, "[methods.pm]\nrefine_radius = -1\n", "wrong.toml"))
    with pytest.raises(UserError, match=r"missing\.toml does not exist"):
        load_spec(tmp_path / "missing.toml")


def test_dpm_options_pass_through_a_declared_schema(tmp_path, monkeypatch):
    """A DPM option is declared by one schema line; one that diff_pm lacks is refused by name."""
    monkeypatch.setitem(registry.METHODS["dpm"].params, "bogus_option",
                        registry.Param(Kind("int", minimum=0), "not an option of diff_pm"))
    spec = parse_spec_dict(_with(methods={"dpm": {"bogus_option": [1, 2]}}), base=tmp_path)
    assert [dict(s.given) for s in spec.settings] == [{"bogus_option": 1}, {"bogus_option": 2}]
    with pytest.raises(UserError, match=r"^methods\.dpm\.bogus_option: this differentiable PatchMatch "
                                        r"\(dpm\) has no option 'bogus_option'"):
        plan(spec)
    # a value that the schema lets through and the constructor refuses: before any work too
    monkeypatch.setitem(registry.METHODS["dpm"].params, "sample_count",
                        registry.Param(Kind("int", minimum=0), "looser than diff_pm"))
    bad = parse_spec_dict(_with(methods={"dpm": {"sample_count": [1, 0]}}), base=tmp_path)
    with pytest.raises(UserError, match=r"^methods\.dpm \(sample_count=0\): sample_count must "
                                        r"be an integer >= 1, got 0"):
        plan(bad)


def test_cli_bad_spec_is_one_line_before_any_work(tmp_path, cli):
    spec = _write(tmp_path, "max_size = 32\n[methods.dpm]\nsample_count = [1, 'two']\n")
    out = tmp_path / "out"
    res = cli("sweep", spec, "--out", out)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr
    assert "methods.dpm.sample_count" in lines[0] and "'two'" in lines[0]
    assert not out.exists()
    res = cli("sweep", spec, "--workers", "2", "--scheduler", "synchronous")
    assert res.returncode == 2 and "not allowed with argument" in res.stderr


# --------------------------------------------------------------------------- units and keys
def test_units_grid_and_keys(tmp_path, monkeypatch):
    raw = _with(max_size=[32, "native"], seeds=[0, 1, 2],
                data={"sources": ["chelsea", "coffee"]},
                methods={"pm": {"iterations": [2, 4]},
                         "dpm": [{"window": [20, [10, 30]], "keep_current": [False, True]},
                                 {"window": 20, "keep_current": False}],  # a duplicate setting
                         "exact": {}})
    p = plan(parse_spec_dict(raw, base=tmp_path))
    settings = 2 + 4  # pm iterations; dpm window x keep_current (the duplicate joins)
    assert len(p.units) == 2 * 2 * (settings * 3 + 1)  # pairs x sizes x (seeded + exact)
    keys = [u.key for u in p.units]
    assert len(set(keys)) == len(keys)
    assert {u.seed for u in p.units if u.method == "exact"} == {None}
    assert sorted(set(p.labels.values())) == sorted([
        "pm iterations=2", "pm iterations=4", "exact",
        "dpm window=20x20 keep_current=false", "dpm window=20x20 keep_current=true",
        "dpm window=10x30 keep_current=false", "dpm window=10x30 keep_current=true"])
    # the key sees the defaults: same spec, same keys; a changed DPM default, new DPM keys
    again = plan(parse_spec_dict(raw, base=tmp_path))
    assert [u.key for u in again.units] == keys
    dpm = registry.METHODS["dpm"]

    def changed():
        d = dpm.defaults()
        d["sample_count"] = d["sample_count"] + 1
        return d

    monkeypatch.setitem(registry.METHODS, "dpm", dataclasses.replace(dpm, defaults=changed))
    moved = plan(parse_spec_dict(raw, base=tmp_path))
    for old, new in zip(p.units, moved.units):
        assert (old.key == new.key) == (old.method != "dpm")
    # the dpm parameters reach the constructor as given, the rest at their defaults
    u = next(u for u in p.units if u.method == "dpm" and dict(u.given)["window"] == (10, 30))
    assert u.options == {"keep_current": False, "window": (10, 30)}
    assert u.params["iterations"] == dpm.defaults()["iterations"]


def test_later_parameters_keep_the_keys_of_earlier_studies():
    """reports/example-sweep was run before DPM's ``outside`` existed: its spec still plans the same
    setting and unit keys (``outside="clamp"``, the earlier behaviour, is left out of the keys), so a
    resume would run nothing again; another value is a new setting."""
    example = REPO / "reports" / "example-sweep"
    stored = pd.read_csv(example / "results.csv", usecols=["setting_key", "unit", "method"])
    done = set(stored["setting_key"])
    units = plan(load_spec(example / "spec.toml")).units
    skipped = set(json.loads((example / "sweep.json").read_text())["skipped"])  # exact above its limit
    # every method: the units planned today are exactly the study's finished and skipped ones
    assert skipped and {u.key for u in units} == set(stored["unit"]) | skipped
    of_dpm = stored["method"].map(lambda m: registry.NAMED[m].method) == "dpm"  # dpm and dpm-reference
    assert {u.key for u in units if u.method == "dpm"} == set(stored.loc[of_dpm, "unit"])
    spec = load_spec(example / "spec.toml")
    settings, _, _ = plan_mod.resolve_settings(spec.settings)
    dpm = [s for s in settings if s.method == "dpm"]
    assert dpm and all(dict(s.resolved)["outside"] == "clamp" for s in dpm)
    assert {setting_key(s) for s in dpm} <= done
    moved = dataclasses.replace(dpm[0], resolved=tuple((k, "reflect" if k == "outside" else v)
                                                       for k, v in dpm[0].resolved))
    assert setting_key(moved) not in done


def test_failed_unit_is_recorded_and_retried(tmp_path, monkeypatch):
    """A unit that raises is a failed record with its one-line reason; the next run retries it."""
    spec = load_spec(_write(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [0]")
                            .replace('"chelsea", "coffee"', '"chelsea"')))
    monkeypatch.setenv("PATCHMATCH_SWEEP_REGISTRY", str(tmp_path / "registry"))
    real = worker_mod.prepare

    def broken(unit, ctx):
        if unit.method == "dpm":
            raise MemoryError("pretend the DPM ran out of memory\nsecond line")
        return real(unit, ctx)

    monkeypatch.setattr(worker_mod, "prepare", broken)
    out = tmp_path / "out"
    res = run_sweep(spec, out=out, scheduler="synchronous", log=lambda m: None)
    assert (res.done, res.failed) == (1, 1)
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures["error"]) == ["MemoryError: pretend the DPM ran out of memory"]
    assert json.loads((out / "sweep.json").read_text())["status"] == "incomplete"
    monkeypatch.setattr(worker_mod, "prepare", real)
    res = run_sweep(spec, out=out, scheduler="synchronous", log=lambda m: None)
    assert (res.already_done, res.done, res.failed) == (1, 1, 0)
    assert not list((out / "failed").iterdir()) and len(pd.read_csv(out / "failures.csv")) == 0
    _assert_complete(out, 2)
    assert json.loads((out / "sweep.json").read_text())["status"] == "complete"


# --------------------------------------------------------------------------- Dask
def test_local_cluster_matches_synchronous_scheduler(tmp_path):
    """The same quality columns on a 2-worker LocalCluster (exclusive timing) and in-process."""
    spec_path = _write(tmp_path, TINY)
    cluster_out, sync_out = tmp_path / "cluster", tmp_path / "sync"
    res = _sweep(tmp_path, spec_path, "--out", cluster_out, "--workers", "2", "--timing",
                 "exclusive")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "LocalCluster: 2 worker processes" in res.stdout
    res = _sweep(tmp_path, spec_path, "--out", sync_out, "--scheduler", "synchronous")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a, b = _assert_complete(cluster_out, 8), _assert_complete(sync_out, 8)
    assert list(a.columns) == result_columns()
    a = a.sort_values(ROW_KEY).reset_index(drop=True)
    b = b.sort_values(ROW_KEY).reset_index(drop=True)
    assert len(a) == 2 * 2 * (3 + 4)
    pd.testing.assert_frame_equal(a[ROW_KEY + QUALITY], b[ROW_KEY + QUALITY], check_exact=True)
    # timing: repeats recorded, threads in force, timed sections alone on the host
    assert (a["repeats"] == 2).all() and a["repeats_agree"].all()
    assert ((a["time_min_s"] <= a["time_s"]) & (a["time_s"] <= a["time_max_s"])).all()
    np.testing.assert_allclose(a.groupby("unit")["cum_time_s"].max(),
                               a.groupby("unit")["time_s"].sum(), rtol=1e-9)
    assert set(a["torch_threads"]) == {1} and set(a["numba_threads"]) == {1}
    assert a["timing_locked"].all() and (a["concurrent_timed"] == 0).all()
    assert a["worker"].str.startswith("tcp://").all() and set(b["worker"]) == {"synchronous"}
    assert (b["concurrent_units"] == 0).all()
    report = (cluster_out / "REPORT.md").read_text()
    assert "## Best setting of each method at equal time budgets" in report
    assert "quality_time_psnr.png" in report and (cluster_out / "quality_time_psnr.png").exists()
    # the same command again: nothing to run
    res = _sweep(tmp_path, spec_path, "--out", sync_out, "--scheduler", "synchronous")
    assert res.returncode == 0 and "8 already done, 0 to run" in res.stdout


def test_client_killed_mid_sweep_then_resumed(tmp_path):
    """kill -9 of the client (its LocalCluster workers die with it); rerun: each unit once."""
    spec_path = _write(tmp_path, LONGER)
    out, log = tmp_path / "out", tmp_path / "first.log"
    args = (spec_path, "--out", out, "--workers", "2")
    proc = _popen(tmp_path, log, *args)
    try:
        _wait_for(lambda: _finished_units(log) >= 2, 240, "two finished units", proc)
        pids = _worker_pids(log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_at_kill = {p.stem for p in (out / "units").glob("*.parquet")}
    assert 2 <= len(done_at_kill) < 24  # really interrupted mid-sweep
    assert len(pids) == 2
    _wait_for(lambda: all(_gone(p) for p in pids), 60, "the workers to exit with their client")
    mtimes = {k: (out / "units" / f"{k}.parquet").stat().st_mtime_ns for k in done_at_kill}
    res = _sweep(tmp_path, *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"{len(done_at_kill)} already done, {24 - len(done_at_kill)} to run" in res.stdout
    _assert_complete(out, 24)
    for k, m in mtimes.items():  # finished units were not run again
        assert (out / "units" / f"{k}.parquet").stat().st_mtime_ns == m


def test_lost_worker_mid_sweep(tmp_path):
    """kill -9 of one LocalCluster worker process: Dask reruns its units; all finish once."""
    spec_path = _write(tmp_path, LONGER)
    out, log = tmp_path / "out", tmp_path / "run.log"
    proc = _popen(tmp_path, log, spec_path, "--out", out, "--workers", "2")
    try:
        _wait_for(lambda: _finished_units(log) >= 1, 240, "a finished unit", proc)
        victim = _worker_pids(log)[0]
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _finished_units(log) == 24, log.read_text()[-3000:]
    assert "[24/24]" in log.read_text()
    _assert_complete(out, 24)


@pytest.fixture
def dask_cluster(tmp_path):
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1."""
    procs, worker_pids = [], []
    env = _env(tmp_path)
    sched_file = tmp_path / "scheduler.json"

    def start(*args, name):
        fh = open(tmp_path / f"{name}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=REPO, env=env,
                                      stdout=fh, stderr=subprocess.STDOUT))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(sched_file), name="scheduler")
        _wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, 90,
                  "the scheduler file")
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            start("worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                  "--host", "127.0.0.1", "--name", f"test-worker-{i}", name=f"worker{i}")
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            workers = set(client.scheduler_info()["workers"])
            worker_pids.extend(client.run(os.getpid).values())
        yield address, workers
    finally:
        # the `dask worker` nannies go at once (their worker processes follow their parent),
        # the scheduler is asked to stop
        for p in procs[1:]:
            p.kill()
        procs[0].terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        try:
            _wait_for(lambda: all(_gone(pid) for pid in worker_pids), 30, "the worker processes")
        finally:
            for pid in worker_pids:  # never leave one behind
                if not _gone(pid):
                    os.kill(pid, signal.SIGKILL)


def test_existing_cluster_by_address(tmp_path, dask_cluster):
    address, workers = dask_cluster
    out = tmp_path / "out"
    res = _sweep(tmp_path, _write(tmp_path, TINY), "--out", out, "--scheduler", address)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"Dask cluster at {address}: 2 workers, 2 threads" in res.stdout
    df = _assert_complete(out, 8)
    assert set(df["worker"]) <= workers
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["status"] == "complete" and set(meta["cluster"]["workers"]) == workers


def _counts(beside: dict) -> tuple[int, int, int]:
    return beside["concurrent_units"], beside["concurrent_max"], beside["concurrent_timed"]


def test_host_registry_counts_units_beside_a_timed_section(tmp_path):
    """Exact overlap counts: running at some moment of the timed section / in a timed section."""
    reg = worker_mod.HostRegistry(tmp_path)
    with reg.running("early") as early:
        pass  # ended before anything below was timed
    assert early.path.with_suffix(".done.json").exists() and not early.path.exists()
    time.sleep(0.01)
    with reg.running("other") as other:
        with reg.running("me") as me:
            me.mark("timed_start")
            me.mark("timed_end")
            assert _counts(reg.overlap(me)) == (1, 1, 0)  # "other" runs, not in a timed section
            other.mark("timed_start")
            me.mark("timed_start")
            me.mark("timed_end")
            assert _counts(reg.overlap(me)) == (1, 1, 1)
        other.mark("timed_end")
    with reg.running("later") as later:  # "other" and "me" ended before this one was timed
        later.mark("timed_start")
        later.mark("timed_end")
        assert _counts(reg.overlap(later)) == (0, 0, 0)
        # an entry left by a dead process counts until its file's last change
        dead = tmp_path / "999999999-ghost-0.json"
        dead.write_text(json.dumps(dict(pid=999999999, key="ghost", start=time.time() - 5,
                                        timed_start=time.time() - 4, timed_end=None, end=None)))
        assert _counts(reg.overlap(later)) == (1, 1, 1)
        # a live process number that another process had before does not count as running
        reused = dict(pid=os.getpid(), pid_start=-1, key="old", start=time.time() - 9,
                      timed_start=None, timed_end=None, end=None)
        (tmp_path / f"{os.getpid()}-old-0.json").write_text(json.dumps(reused))
        os.utime(tmp_path / f"{os.getpid()}-old-0.json", (time.time() - 8, time.time() - 8))
        assert _counts(reg.overlap(later)) == (1, 1, 1)
    # many short units one after another beside a long timed section: counted, one at a time
    with reg.running("long") as long:
        long.mark("timed_start")
        for i in range(3):
            with reg.running(f"short{i}"):
                pass
        long.mark("timed_end")
        assert _counts(reg.overlap(long)) == (3, 1, 0)


def test_checkpoint_setting_runs_the_learnt_model(tmp_path, monkeypatch):
    """``methods.dpm.checkpoint``: loaded by the CLI's loader, with the spec's options on top."""
    from experiments.cli import load_checkpoint_model

    ckpt = REPO / "data" / "dpm_learned.pt"
    spec = load_spec(_write(tmp_path, f"""
max_size = 32
repeats = 1
device = "cpu"
[data]
sources = ["chelsea"]
[methods.dpm]
iterations = 2
checkpoint = "{ckpt}"
window = [20, 100]
"""))
    monkeypatch.setenv("PATCHMATCH_SWEEP_REGISTRY", str(tmp_path / "registry"))
    with pytest.raises(UserError, match=r"methods\.dpm\.checkpoint: this entry point cannot load"):
        plan(spec)
    out = tmp_path / "out"
    res = run_sweep(spec, out=out, scheduler="synchronous", log=lambda m: None,
                    checkpoint_loader=load_checkpoint_model)
    assert (res.done, res.failed) == (2, 0)
    df = _assert_complete(out, 2)
    assert set(df["iteration"]) == {1, 2} and set(df["window_h"]) == {20.0, 100.0}
    assert df["checkpoint"].str.endswith("dpm_learned.pt").all()
    assert df.groupby("unit")["psnr"].last().nunique() == 2  # the window reached the model
    model, info = load_checkpoint_model(ckpt.read_bytes(), device="cpu", options={"window": (20, 20)})
    assert info["path"] is None and info["step"] > 0  # built from the bytes
    assert model.window == (20.0, 20.0)
    from learning.checkpoint import load_checkpoint  # the checkpoint's own features, weight for weight
    ref = load_checkpoint(ckpt, device="cpu")[0].features.state_dict()
    got = model.features.state_dict()
    assert ref and got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


def test_dpm_options_reach_the_model(tmp_path):
    """noise, search_range, quirks ... are handed to DifferentiablePatchMatch as given."""
    raw = _with(data={"sources": ["chelsea"]},
                methods={"dpm": {"noise": ["shared", "independent"], "search_range": "inside", "outside": "reflect",
                                 "quirks": [[], ["zero_border", "a_frame"]], "window": [[10, 30]],
                                 "evaluation": "hard", "temperature": 5}})
    units = plan(parse_spec_dict(raw, base=tmp_path)).units
    assert len(units) == 4
    for u in units:
        model = prepare(u, registry.Context("cpu", 1)).model
        given = dict(u.given)
        assert model.noise == given["noise"] and model.search_range == "inside" and model.outside == "reflect"
        assert model.quirks == frozenset(given["quirks"]) and model.window == (10.0, 30.0)
        assert model.horizontal.mode == model.vertical.mode == "hard" and model.vertical.temperature == 5.0
        assert u.params["keep_current"] is False  # a default, filled in for the key and columns


def test_feature_checkpoint_settings_keep_the_matchers_defaults(tmp_path):
    """A checkpoint gives pm-learned its features only: PatchMatch's own options are checked and
    defaulted as without one (not handed to the learnt DPM), and the unit knows its iterations."""
    from experiments.cli import load_checkpoint_model

    ckpt = REPO / "data" / "dpm_learned.pt"
    spec = load_spec(_write(tmp_path, f"""
max_size = 32
device = "cpu"
[data]
sources = ["chelsea"]
[methods.pm-learned]
checkpoint = "{ckpt}"
refine_radius = 0
"""))
    units = plan(spec, loader=load_checkpoint_model, log=lambda m: None).units
    pm = registry.METHODS["pm"].defaults()
    assert units and all(u.method == "pm" for u in units)
    for u in units:
        assert u.params["refine_radius"] == 0 and u.params["features"] == "learned"
        assert u.params["iterations"] == pm["iterations"] and u.params["patch_size"] == pm["patch_size"]
        assert u.iterations == list(range(1, pm["iterations"] + 1))
