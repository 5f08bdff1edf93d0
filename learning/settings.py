"""The settings of a training run, frozen: what ``python -m experiments train`` configures.

:class:`TrainSettings` is to training what :class:`experiments.run.RunSettings` is to
``compare``: the command line converts its options into one (:func:`learning.cli.main`) and
:func:`learning.train.run` reads nothing else (no ``sys.argv``). Its defaults are the documented
default run; ``learning.cli`` takes them as the options' defaults. Light: no torch import.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from experiments.devices import available_cores

from .data import TRAIN_IMAGES

__all__ = ["TrainSettings"]


@dataclass(frozen=True)
class TrainSettings:
    """One training run (see ``docs/training.md``; every field is a ``train`` option).

    Run: ``out`` (folder), ``steps``, ``seed``, ``device`` (auto | cpu | cuda), ``threads``,
    ``eval_every`` (held-out evaluation every N steps; 0: before and after only), ``eval_size``
    (longer side of the held-out pairs), ``eval_iterations`` (iterations of the final comparison
    and of the saved model), ``final_eval``, ``progress``. Data: ``crop`` (side of the square
    training crops), ``batch``, ``images`` (scikit-image sample names). Model and optimisation:
    ``iterations`` (DPM iterations unrolled in training), ``temperature`` (initial, learnt unless
    ``learn_temperature`` is False), ``channels``, ``hidden``, ``lr``, ``epe_weight``. ``command``:
    the command line, for the record.
    """

    out: str = "checkpoints/latest"
    steps: int = 1500
    seed: int = 0
    device: str = "auto"
    threads: int = field(default_factory=available_cores)
    eval_every: int = 100
    eval_size: int = 128
    eval_iterations: int = 21
    final_eval: bool = True
    progress: bool = True
    crop: int = 64
    batch: int = 8
    images: tuple[str, ...] = TRAIN_IMAGES
    iterations: int = 1
    temperature: float = 100.0
    learn_temperature: bool = True
    channels: int = 16
    hidden: int = 16
    lr: float = 3e-3
    epe_weight: float = 1.0
    command: str = ""

    @classmethod
    def from_args(cls, args, *, command: str = "") -> "TrainSettings":
        """The settings of parsed ``train`` options (an argparse Namespace)."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values["images"] = tuple(dict.fromkeys(values.get("images", TRAIN_IMAGES)))
        return cls(**dict(values, command=command))

    def to_dict(self) -> dict:
        return dict(asdict(self), images=list(self.images))
