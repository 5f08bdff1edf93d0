"""The settings of a training run and of a learning study, frozen (``train``, ``learn-study``).

:class:`TrainSettings` is to training what :class:`experiments.run.RunSettings` is to
``compare``: the command line converts its options into one (:func:`learning.cli.main`) and
:func:`learning.train.run` reads nothing else (no ``sys.argv``). Its defaults are the documented
default run; ``learning.cli`` takes them as the options' defaults. Light: no torch import.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from experiments.devices import available_cores

from .data import TRAIN_IMAGES

__all__ = ["TrainSettings", "StudySettings", "QUICK", "ARMS", "FEATURE_NETS"]

#: The training arms (named losses, :mod:`learning.arms`): ``contrastive`` (InfoNCE, without DPM),
#: ``dpm-ce`` (cross-entropy over DPM's actual candidates, through its hard choice), ``recon`` (the
#: earlier loss: soft DPM, reconstruction + end-point error; with ``keep_current`` and
#: ``outside="reflect"``).
ARMS = ("contrastive", "dpm-ce", "recon")
#: Feature extractors: ``rf7`` / ``rf15`` (:class:`learning.nets.ConvFeatures`, 7 x 7 and 15 x 15
#: receptive fields) and ``linear7`` (:class:`learning.features.LearnedFeatures`, the earlier
#: checkpoints' 7 x 7 projection).
FEATURE_NETS = ("rf7", "rf15", "linear7")


@dataclass(frozen=True)
class TrainSettings:
    """One training run (see ``docs/training.md``; every field is a ``train`` option).

    Run: ``out`` (folder), ``steps``, ``seed``, ``device`` (auto | cpu | cuda), ``threads``,
    ``eval_every`` (validation every N steps; 0: before and after only), ``eval_size``
    (longer side of the validation pairs), ``eval_iterations`` (iterations of the final comparison
    and of the saved model), ``final_eval``, ``progress``. Data: ``crop`` (side of the square
    training crops), ``batch``, ``images`` (scikit-image sample names). What is trained: ``arm``
    (:data:`ARMS`), ``net`` (:data:`FEATURE_NETS`), ``channels``, ``hidden``, ``match_patch`` (side
    of the descriptor patch stacked into the saved features). Optimisation: ``lr``, ``temperature``
    (initial, learnt unless ``learn_temperature`` is False; ``contrastive`` keeps it at 1),
    ``iterations`` (DPM iterations per step of ``dpm-ce`` and ``recon``; 0: the arm's default, 8
    and 2), ``window`` (DPM's search window in training, px; 0: the crop x 100 / 128, the share
    of the 128-px pairs that DPM's 100-px window covers), ``anchors`` (supervised pixels per pair of
    the ranking arms), ``tau`` (InfoNCE temperature), ``epe_weight`` (``recon``). ``command``: the
    command line, for the record.
    """

    out: str = "checkpoints/latest"
    steps: int = 300
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
    arm: str = "dpm-ce"
    net: str = "rf7"
    match_patch: int = 5
    iterations: int = 0
    window: int = 0
    anchors: int = 512
    tau: float = 0.1
    temperature: float = 50.0
    learn_temperature: bool = True
    channels: int = 16
    hidden: int = 32
    lr: float = 3e-3
    epe_weight: float = 1.0
    command: str = ""

    @property
    def dpm_iterations(self) -> int:
        """DPM iterations per training step (``iterations``, or the arm's default)."""
        return self.iterations or {"dpm-ce": 8, "recon": 2}.get(self.arm, 0)

    @property
    def dpm_window(self) -> tuple[int, int]:
        """DPM's search window in training (``window``, or the crop x 100 / 128)."""
        side = self.window or max(1, round(self.crop * 100 / 128))
        return side, side

    @classmethod
    def from_args(cls, args, *, command: str = "") -> "TrainSettings":
        """The settings of parsed ``train`` options (an argparse Namespace)."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values["images"] = tuple(dict.fromkeys(values.get("images", TRAIN_IMAGES)))
        return cls(**dict(values, command=command))

    def to_dict(self) -> dict:
        return dict(asdict(self), images=list(self.images))


@dataclass(frozen=True)
class StudySettings:
    """One learning study (every field is a ``learn-study`` option; ``quick`` shrinks them, :data:`QUICK`).

    ``size``: longer side of validation and test pairs; ``steps``: training steps of every run
    (snapshots at ``snapshots`` fractions); ``nets``, ``arms``, ``match_patches``: the grid of phase 1-2;
    ``train_seeds``: the first selects, all are tested; ``eval_seeds``: seeds of the exact-free
    matchers on test (``pm``), ``dpm_seeds`` those of the DPM matchers; ``val_seeds``: of
    PatchMatch on validation; ``val_per_image``, ``test_extra``: warps per validation image and
    extra test warps per synthetic test image; ``data``: more test pairs (``--data`` values, with
    ground truth; ``limit`` pairs each); ``eps_choices``: of the normalised patches;
    ``save_best``: also copy the chosen checkpoint there.
    """

    out: str = "reports/learn-study"
    size: int = 128
    steps: int = 300
    snapshots: tuple[float, ...] = (1 / 3, 2 / 3, 1.0)
    arms: tuple[str, ...] = ARMS
    nets: tuple[str, ...] = ("rf7", "rf15")
    match_patches: tuple[int, ...] = (1, 3, 5)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    eval_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    dpm_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    val_seeds: tuple[int, ...] = (0, 1)
    val_per_image: int = 3
    test_extra: int = 2
    data: tuple[str, ...] = ()
    limit: int | None = None
    eps_choices: tuple[float, ...] = (0.003, 0.01, 0.03)
    batch: int = 8
    crop: int = 64
    threads: int = field(default_factory=available_cores)
    device: str = "auto"
    save_best: str | None = None
    quick: bool = False
    progress: bool = True
    command: str = ""

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def train_settings(self, arm: str, net: str, seed: int, *, match_patch: int = 1) -> TrainSettings:
        """The settings of one training run of the study (the ``train`` defaults otherwise)."""
        return TrainSettings(arm=arm, net=net, seed=seed, steps=self.steps, batch=self.batch, crop=self.crop,
                             match_patch=match_patch, threads=self.threads, device=self.device,
                             images=TRAIN_IMAGES, progress=False, final_eval=False)

    def snapshot_steps(self) -> tuple[int, ...]:
        return tuple(sorted({max(1, round(f * self.steps)) for f in self.snapshots}))


#: What ``--quick`` changes: a few minutes on 2 cores, the same phases.
QUICK = dict(size=64, steps=6, batch=4, crop=32, match_patches=(1, 3), train_seeds=(0, 1), eval_seeds=(0, 1),
             dpm_seeds=(0,), val_seeds=(0,), val_per_image=1, test_extra=0, eps_choices=(0.01,))
