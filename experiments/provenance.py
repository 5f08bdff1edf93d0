"""Where a result came from: git commit, package versions, CPU and GPU, thread counts.

:func:`record` is the one metadata record of every results file of the suite: ``compare``'s
config.json, a study's sweep.json, training checkpoints and every benchmark. Nothing here
raises: a fact that cannot be found is recorded as ``"unknown"`` or ``None``.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
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


def device_info(device: str, threads: int | None) -> dict:
    """The device, its GPU's name (CUDA), and the thread counts in force when called.

    ``threads`` is the requested count; ``torch_threads`` and ``numba_threads`` are read from the
    libraries, so call this inside :func:`experiments.devices.thread_scope` to record what the
    timed runs use.
    """
    import numba  # deferred: heavy imports, only needed once a run starts
    import torch

    info = dict(device=device, threads=threads, torch_threads=torch.get_num_threads(),
                numba_threads=numba.get_num_threads())
    gpu = gpu_name(device)
    if gpu is not None:
        info["gpu"] = gpu
    return info


def record(*, device: str | None = None, threads: int | None = None,
           paths: tuple[str, ...] | list[str] = CODE_PATHS, **facts) -> dict:
    """The metadata record of a result: when, which code, which packages, which machine.

    Keys: ``time`` (ISO 8601, local, with offset), ``git`` (:func:`git_state` of ``paths``),
    ``versions`` (:func:`package_versions`), ``host``, ``cpu``, ``cpu_count``, ``platform``; with a
    ``device``, also ``device`` (:func:`device_info`: the device, GPU name and the thread counts in
    force, so call it inside :func:`experiments.devices.thread_scope`); then ``facts`` as given
    (what the result depends on beyond these: the image, the configuration ...).
    """
    out = dict(time=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
               git=git_state(paths), versions=package_versions(), host=socket.gethostname(),
               cpu=cpu_name(), cpu_count=os.cpu_count(), platform=platform.platform())
    if device is not None:
        out["device"] = device_info(device, threads)
    out.update(facts)
    return out


def summary(rec: dict) -> str:
    """One line of a :func:`record` for a console: commit, main versions, CPU, device, threads."""
    git = rec.get("git", {})
    v = rec.get("versions", {})
    dev = rec.get("device") or {}
    parts = [f"commit {str(git.get('commit', 'unknown'))[:7]}" + (" (dirty)" if git.get("dirty") else ""),
             ", ".join(f"{k} {v[k]}" for k in ("python", "numpy", "numba", "torch") if v.get(k)),
             f"CPU {rec.get('cpu')} ({rec.get('cpu_count')} logical cores)"]
    if dev:
        parts.append(f"device {dev.get('device')}" + (f" ({dev['gpu']})" if dev.get("gpu") else "")
                     + f", threads torch {dev.get('torch_threads')} numba {dev.get('numba_threads')}")
    extra = {k: val for k, val in rec.items()
             if k not in ("time", "git", "versions", "host", "cpu", "cpu_count", "platform", "device")}
    parts += [f"{k} {val}" for k, val in extra.items()]
    return "; ".join(parts) + f"; {rec.get('time')}"
