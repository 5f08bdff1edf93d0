"""``compare``'s settings: the fixed study its options describe, in the vocabulary of every study.

:class:`RunSettings` holds ``compare``'s options, resolved; :func:`compare_spec` turns them into a
:class:`~experiments.run.spec.Spec` (one size, its seeds, one repeat, the chosen named settings)
that is planned like any study; :func:`load_pairs` decodes and checks every pair before any work.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data.pairs import Pair, PairSource, check_pair
from ..methods.registry import METHODS, NAMED
from .spec import Spec
from .units import Setting

# Settings that define the numbers; a resumed run must match them exactly.
RUN_KEYS = ("pairs", "max_size", "methods", "pm_iterations", "dpm_iterations", "patch_size",
            "seeds", "device", "threads", "exact_max_pixels", "checkpoint", "score_at")


@dataclass(frozen=True)
class RunSettings:
    """The settings of one ``compare`` run, resolved (device known, defaults filled in).

    ``config.json`` stores :meth:`to_dict` under ``config`` and the keys of :data:`RUN_KEYS` (the
    settings that define the numbers; a resumed run must match them) under ``run``. The values are
    checked by the command line's option kinds (:mod:`experiments.options`).

    Attributes
    ----------
    pairs : tuple of str
        Pair names in run order.
    origins : tuple of (str, str)
        ``(pair name, where it comes from)`` for each pair.
    max_size : int or None
        ``--max-size`` (None: native resolution).
    methods : tuple of str
        The named settings to run (:data:`experiments.methods.registry.NAMED`), in registry order.
    pm_iterations, dpm_iterations : int
        Iterations of every ``pm`` and ``dpm`` setting.
    patch_size : int
        Odd patch side of every method, the reconstructions and the energy.
    seeds : tuple of int
        Every seeded method runs once per seed (methods without a seed once).
    device : str
        Resolved torch device (``cpu`` or ``cuda``).
    threads : int
        CPU threads of every timed method (numba and torch alike, see :mod:`experiments.devices`).
    exact_max_pixels : int
        The exact NNF's size limit (0: never; :func:`experiments.methods.exact_skip_reason`).
    checkpoint : str or None
        Absolute path of the learnt DPM checkpoint (named setting ``dpm-learned``).
    score_at : {"run", "native"}
        Metrics at the resolution the methods ran at, or at the pairs' native resolution (the
        matches scaled back up; see :func:`experiments.run.execute.unit_rows`).
    write_outputs : bool
        Also write each method's final matches (first seed) as ``outputs/<pair>__<method>.flo``
        and, for KITTI pairs, KITTI flow PNGs (at the scoring resolution).
    out : str
        Output folder.
    command : str
        The command line, for the record.
    """

    pairs: tuple[str, ...]
    origins: tuple[tuple[str, str], ...]
    max_size: int | None
    methods: tuple[str, ...]
    pm_iterations: int
    dpm_iterations: int
    patch_size: int
    seeds: tuple[int, ...]
    device: str
    threads: int
    exact_max_pixels: int
    checkpoint: str | None = None
    score_at: str = "run"
    write_outputs: bool = False
    out: str = ""
    command: str = ""

    def to_dict(self) -> dict:
        """Plain JSON types, in the key order of ``config.json``'s ``config``."""
        return dict(pairs=list(self.pairs), origins=dict(self.origins), max_size=self.max_size,
                    methods=list(self.methods), pm_iterations=self.pm_iterations,
                    dpm_iterations=self.dpm_iterations, patch_size=self.patch_size, seeds=list(self.seeds),
                    device=self.device, threads=self.threads,
                    exact_max_pixels=self.exact_max_pixels, checkpoint=self.checkpoint,
                    score_at=self.score_at, write_outputs=self.write_outputs, out=self.out,
                    command=self.command)

    def run_dict(self) -> dict:
        """The settings that define the numbers (:data:`RUN_KEYS`), as in ``config.json``."""
        d = self.to_dict()
        return {k: d[k] for k in RUN_KEYS}


def compare_spec(s: RunSettings) -> Spec:
    """``compare``'s run as a study: its named settings with the run's iterations, patch size,
    exact limit and checkpoint; one size, its seeds, one repeat, on ``s.device``."""
    iterations = {"pm": s.pm_iterations, "dpm": s.dpm_iterations}
    settings = []
    for name in s.methods:
        named = NAMED[name]
        params = METHODS[named.method].params
        given = dict(named.given)
        if "iterations" in params and named.method in iterations:
            given["iterations"] = iterations[named.method]
        if "patch_size" in params:
            given["patch_size"] = s.patch_size
        if "max_pixels" in params:
            given["max_pixels"] = s.exact_max_pixels
        if "checkpoint" in named.needs:
            given["checkpoint"] = s.checkpoint
        settings.append(Setting(named.method, tuple(given.items()), (), name))
    return Spec(path="compare", text="", title="compare", data=list(s.pairs), limit=None,
                select=None, max_sizes=[s.max_size], seeds=list(s.seeds), repeats=1, device=s.device,
                threads=s.threads, timing="shared", settings=settings)


def load_pairs(sources: list[PairSource], *, max_size: int | None,
               patch_size: int) -> dict[str, Pair]:
    """Decode and check every pair up front, so bad input fails before any compute.

    Cheap: no torch or numba import. Raises :class:`UserError` for unreadable or too small images.
    """
    pairs: dict[str, Pair] = {}
    for src in sources:
        pair = src.load(max_size)
        check_pair(pair, patch_size)
        pairs[pair.name] = pair
    return pairs
