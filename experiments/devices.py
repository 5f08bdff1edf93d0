"""Where computation runs: the torch device and the CPU threads of numba and torch.

* :func:`resolve_device` turns ``auto``/``cpu``/``cuda`` into a device string, or says in one
  line (:class:`~experiments.errors.UserError`) that CUDA was asked for and is not there.
* :func:`thread_scope` runs a block under one CPU thread count for *both* numba (classic
  PatchMatch's bands, DPM's CPU scoring kernels) and torch, and restores both afterwards. Every
  timed method runs inside one, so a method reports exactly the threads it ran with.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

from .errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cpu"``/``"cuda"`` as given.

    Raises :class:`UserError` (one line) for ``"cuda"`` without CUDA and for unknown names.
    """
    if name not in DEVICE_CHOICES:
        raise UserError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "cpu":
        return "cpu"
    import torch  # deferred: heavy; a CPU run resolves without it

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UserError("--device cuda was requested but torch sees no CUDA device; "
                        "use --device cpu (or auto)")
    return name


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadCounts:
    """Thread counts in force inside a :func:`thread_scope`."""

    torch: int
    numba: int


@contextlib.contextmanager
def thread_scope(threads: int | None) -> Iterator[ThreadCounts]:
    """Run the block with ``threads`` CPU threads for numba and torch; restore both afterwards.

    numba gets ``min(threads, numba.config.NUMBA_NUM_THREADS)`` (it cannot start more threads
    than its pool holds), torch ``threads``. ``threads=None`` changes nothing and only reports.
    numba's setting is per calling thread, so the scope holds for the thread that enters it.

    Yields
    ------
    ThreadCounts
        The counts read back from numba and torch inside the scope.
    """
    import numba  # deferred: heavy imports; the CLI checks its input before loading them
    import torch

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    previous = ThreadCounts(torch=torch.get_num_threads(), numba=numba.get_num_threads())
    try:
        if threads is not None:
            torch.set_num_threads(threads)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        yield ThreadCounts(torch=torch.get_num_threads(), numba=numba.get_num_threads())
    finally:
        torch.set_num_threads(previous.torch)
        numba.set_num_threads(previous.numba)
