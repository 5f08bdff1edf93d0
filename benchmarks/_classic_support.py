"""Helpers of :mod:`benchmarks.classic`: the run's metadata, JIT compile times, per-thread CPU
time, the previous commit's kernels loaded from git, the benchmark pair, small formatters."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from skimage import data, transform

from experiments import provenance


def metadata() -> dict:
    """The run's metadata record (:func:`experiments.provenance.record`), with numba's threading
    setup and the load average."""
    import torch  # deferred: heavy import, only for its thread count

    return provenance.record(
        paths=("classic_pm", "benchmarks"), numba_num_threads=numba.config.NUMBA_NUM_THREADS,
        numba_threading_layer=_threading_layer(), torch_threads=torch.get_num_threads(),
        load_average=" ".join(f"{x:.2f}" for x in os.getloadavg()))


_COMPILE_SNIPPET = """
import json, time
import numpy as np
import classic_pm
x = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
f = x.astype(np.float32) / 255 + np.float32(1e-4)  # float storage (not k / 255)
out = {}
t = time.perf_counter(); classic_pm.patchmatch(x, x, iterations=2, threads=1)
out["patchmatch uint8, threads=1 (serial build)"] = time.perf_counter() - t
t = time.perf_counter(); classic_pm.patchmatch(x, x, iterations=2, threads=2)
out["patchmatch uint8, threads=2 (parallel build)"] = time.perf_counter() - t
t = time.perf_counter(); classic_pm.patchmatch(f, f, iterations=2, threads=1)
out["patchmatch float32 storage, threads=1"] = time.perf_counter() - t
t = time.perf_counter(); classic_pm.kd_nnf(x, x, threads=1)
out["kd_nnf threads=1"] = time.perf_counter() - t
t = time.perf_counter(); n = classic_pm.patchmatch(x, x, iterations=0)
classic_pm.patch_cost(x, x, n); classic_pm.vote(x, n)
out["patch_cost + vote"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _compile_times():
    """JIT compile times measured in a fresh interpreter whose numba cache dir is empty."""
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        proc = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], capture_output=True, text=True,
                              env=env, timeout=900, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _thread_cpu_seconds():
    """CPU seconds run so far by each thread of this process (Linux schedstat), or None."""
    try:
        out = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0]) / 1e9
        return out
    except (OSError, ValueError, IndexError):
        return None


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:
        return "not initialised"


def _previous_classic_pm(commit):
    """classic_pm as of ``commit``, loaded from git as the package ``classic_pm_<commit>``.

    Its files are written to a fixed directory under the system's temporary directory (rewritten
    only when they differ, so numba's on-disk cache next to them stays valid between runs).
    """
    repo = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True,
                              timeout=30).stdout

    names = [n for n in git("ls-tree", "--name-only", commit, "classic_pm/").decode().split()
             if n.endswith(".py")]
    if not names:
        raise RuntimeError(f"no classic_pm/*.py at commit {commit}")
    pkg_name = f"classic_pm_{commit}"
    pkg = Path(tempfile.gettempdir()) / "classic_pm_previous" / pkg_name
    pkg.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = git("show", f"{commit}:{name}")
        path = pkg / Path(name).name
        if not path.exists() or path.read_bytes() != src:
            path.write_bytes(src)
    spec = importlib.util.spec_from_file_location(pkg_name, pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[pkg_name] = module
    spec.loader.exec_module(module)
    return module


def _load_pair(scale=1.0):
    """The motorcycle pair as uint8 (rescaled pairs are rounded back to 8 bits, so that every
    size is compared with exact distances)."""
    left, right, _ = data.stereo_motorcycle()
    if scale == 1.0:
        return left, right
    out = []
    for img in (left, right):
        small = transform.rescale(img, scale, anti_aliasing=True, channel_axis=-1, preserve_range=True)
        out.append(np.clip(np.rint(small), 0, 255).astype(np.uint8))
    return tuple(out)


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def _fmt(x, spec=".4f"):
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _median(values):
    v = np.asarray(values, float)
    return float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")
