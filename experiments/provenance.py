"""Where a result came from: git commit, package versions, CPU and GPU, thread counts.

The one source of this metadata for every results file of the suite: ``compare``'s config.json
(:mod:`experiments.runner`), training checkpoints and outputs (:mod:`learning`) and both
benchmarks (:mod:`benchmarks.classic`, :mod:`benchmarks.diff`). Nothing here raises: a fact that
cannot be found is recorded as ``"unknown"`` or ``None``.
"""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The code whose uncommitted changes make a result "dirty" (not reports, docs or tests).
CODE_PATHS = ("classic_pm", "diff_pm", "experiments", "learning", "pyproject.toml")
#: Distributions whose versions every results file records.
PACKAGES = ("numpy", "numba", "torch", "scikit-image", "opencv-python-headless", "pandas",
            "matplotlib", "tqdm", "dask", "distributed", "pyarrow", "patchmatch-bench")


def git_state(paths: tuple[str, ...] | list[str] = CODE_PATHS) -> dict:
    """``{"commit": <HEAD sha1 or "unknown">, "dirty": bool or None}`` of the repository.

    ``dirty`` is True when files under ``paths`` (relative to the repository root) differ from
    HEAD, new untracked files included; None when git cannot tell (no git, not a checkout).
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", *paths))
    except (OSError, subprocess.SubprocessError):
        return dict(commit="unknown", dirty=None)
    return dict(commit=commit or "unknown", dirty=dirty)


def package_versions() -> dict:
    """Python's version and the installed version of each of :data:`PACKAGES` (None: missing)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(device: str) -> str | None:
    """The CUDA device's name for a ``cuda``/``cuda:N`` device string, else None."""
    if not str(device).startswith("cuda"):
        return None
    import torch  # deferred: torch is heavy and only CUDA runs need it here

    return torch.cuda.get_device_name(torch.device(device))


def device_info(device: str, threads: int) -> dict:
    """Device, CPU and GPU names, core count, and the thread counts in force when called.

    ``threads`` is the requested count; ``torch_threads`` and ``numba_threads`` are read from the
    libraries, so call this inside :func:`experiments.devices.thread_scope` to record what the
    timed runs use.
    """
    import numba  # deferred: heavy imports, only needed once a run starts
    import torch

    info = dict(device=device, cpu=cpu_name(), cpu_count=os.cpu_count(), threads=threads,
                torch_threads=torch.get_num_threads(), numba_threads=numba.get_num_threads(),
                platform=platform.platform())
    gpu = gpu_name(device)
    if gpu is not None:
        info["gpu"] = gpu
    return info
