"""The checkpoint format of learnt features (``train``, ``learn-study``; ``compare --checkpoint``).

:func:`save_checkpoint` / :func:`load_checkpoint` store and rebuild a ready-to-run
:class:`diff_pm.DifferentiablePatchMatch` whose features are learnt:
:class:`learning.nets.ConvFeatures` (format version 2) or :class:`learning.features.LearnedFeatures`
(the earlier checkpoints, format version 1, still read). ``python -m experiments compare
--checkpoint PATH`` adds it as ``dpm-learned``, and its features in classic PatchMatch
(``pm-learned``) beside normalised patches of the same area (``pm-normalised``).

Checkpoint format (``torch.save`` of plain types and tensors, loadable with ``weights_only=True``)::

    format        "patchmatch-bench/dpm-learned"
    format_version 2 (1: LearnedFeatures only, no arm)
    state_dict    the features' parameters and buffers
    features      their constructor arguments; ``kind: "conv"`` for ConvFeatures (none: LearnedFeatures)
    arm           the training arm (``contrastive``, ``dpm-ce``, ``recon``; absent in version 1)
    config        everything needed to rebuild the model (features, DPM, evaluation) and the
                  training options (seed, steps, crop, iterations, lr, training images ...)
    seed, step    training seed and number of optimisation steps done
    provenance    the metadata record of the run (:func:`experiments.provenance.record`: git
                  commit, package versions, CPU); checkpoints before it held ``versions`` instead
    metrics       optional held-out results recorded at save time
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from experiments import provenance

from .features import LearnedFeatures, build_model, count_parameters, feature_config
from .nets import ConvFeatures

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]

CHECKPOINT_FORMAT = "patchmatch-bench/dpm-learned"
CHECKPOINT_VERSION = 2


def save_checkpoint(path, model, config: dict, *, seed: int, step: int, metrics: dict | None = None,
                    arm: str | None = None) -> Path:
    """Write a checkpoint of a learnt-feature DPM (or of the bare features).

    Parameters
    ----------
    path : str or Path
        File to write (parent folders are created; written atomically via a temporary file).
    model : DifferentiablePatchMatch, ConvFeatures or LearnedFeatures
        The model whose ``features`` are saved.
    config : dict
        Plain-typed configuration (JSON-like): must contain ``model`` (the DPM evaluation
        configuration, see :func:`load_checkpoint`) and may hold any training options.
    seed, step : int
        Training seed and optimisation steps done.
    metrics : dict, optional
        Validation results to keep with the weights.
    arm : str, optional
        The training arm (default: ``config["train"]["arm"]`` when there).
    """
    features = model.features if isinstance(getattr(model, "features", None), torch.nn.Module) else model
    if not isinstance(features, (LearnedFeatures, ConvFeatures)):
        raise ValueError(f"model must use LearnedFeatures or ConvFeatures, got {type(features).__name__}")
    if "model" not in config:
        raise ValueError("config must contain 'model' (iterations, evaluation, temperature, ...)")
    payload = dict(format=CHECKPOINT_FORMAT, format_version=CHECKPOINT_VERSION,
                   state_dict={k: v.detach().to("cpu", torch.float32).clone()
                               for k, v in features.state_dict().items()},
                   features=(features.config() if isinstance(features, ConvFeatures) else feature_config(features)),
                   arm=arm or config.get("train", {}).get("arm"), config=config, seed=int(seed), step=int(step),
                   provenance=provenance.record(), metrics=metrics or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(source, *, device="cpu", **overrides):
    """Rebuild the learnt DPM of a checkpoint, ready to run (eval mode, on ``device``).

    ``source`` is the checkpoint's path or its content (``bytes``: a study reads the file once, so
    its hash and the model come from the same bytes). The model is built by
    :func:`learning.features.build_model` from the checkpoint's ``config["model"]``: by default the
    DPM's default search (the original's: 21 iterations, window 100, one sample) with the learnt features,
    evaluated at ``temperature`` x the learnt temperature (``1e10``: practically hard, like the
    fixed ``dpm``). ``overrides`` replace any of those settings or add other options of
    :class:`diff_pm.DifferentiablePatchMatch` (``iterations=5``, ``window=(20, 20)``,
    ``keep_current=True`` ...).

    Returns
    -------
    model : diff_pm.DifferentiablePatchMatch
    info : dict
        ``iterations``, ``model`` (the configuration built), ``config``, ``seed``, ``step``,
        ``provenance`` (None for older checkpoints), ``versions`` (package versions), ``metrics``,
        ``parameters``, ``learned_temperature``, ``path`` (None for bytes), ``arm`` (None for
        version 1), ``features`` (constructor arguments), ``area`` (side of the image area one
        feature vector sees).
    """
    what = "the checkpoint's content" if isinstance(source, (bytes, bytearray)) else str(source)
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source)
    payload = torch.load(stream, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{what} is not a dpm-learned checkpoint (written by `python -m experiments train`)")
    if payload.get("format_version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{what} has checkpoint format {payload['format_version']}, newer than this code "
                         f"understands ({CHECKPOINT_VERSION})")
    args = dict(payload["features"])
    features = ConvFeatures(**args) if args.pop("kind", None) == "conv" else LearnedFeatures(**args)
    features.load_state_dict(payload["state_dict"])
    mconf = dict(payload["config"]["model"], **overrides)
    model = build_model(features, **mconf).to(device).eval()
    info = dict(path=None if isinstance(source, (bytes, bytearray)) else str(source),
                iterations=model.iterations, model=mconf, config=payload["config"],
                seed=payload["seed"], step=payload["step"],
                provenance=payload.get("provenance"),
                versions=payload["provenance"]["versions"] if "provenance" in payload else payload.get("versions"),
                metrics=payload.get("metrics", {}), parameters=count_parameters(features),
                learned_temperature=features.temperature, arm=payload.get("arm"),
                features=payload["features"], area=features.area)
    return model, info
