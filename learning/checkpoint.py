"""The checkpoint format of ``python -m experiments train`` (method ``dpm-learned`` of ``compare``).

:func:`save_checkpoint` / :func:`load_checkpoint` store and rebuild a ready-to-run
:class:`diff_pm.DifferentiablePatchMatch` using :class:`learning.features.LearnedFeatures`
(``python -m experiments compare --checkpoint PATH`` adds it as method ``dpm-learned``).

Checkpoint format (``torch.save`` of plain types and tensors, loadable with ``weights_only=True``)::

    format        "patchmatch-bench/dpm-learned"
    format_version 1
    state_dict    LearnedFeatures parameters
    features      LearnedFeatures constructor arguments
    config        everything needed to rebuild the model (features, DPM, evaluation) and the
                  training options (seed, steps, crop, iterations, lr, training images ...)
    seed, step    training seed and number of optimisation steps done
    versions      python and package versions, git commit (:mod:`experiments.provenance`)
    metrics       optional held-out results recorded at save time
"""
from __future__ import annotations

from pathlib import Path

import torch

from experiments import provenance

from .features import LearnedFeatures, build_model, count_parameters, feature_config

__all__ = ["save_checkpoint", "load_checkpoint", "versions", "CHECKPOINT_FORMAT",
           "CHECKPOINT_VERSION"]

CHECKPOINT_FORMAT = "patchmatch-bench/dpm-learned"
CHECKPOINT_VERSION = 1


def versions() -> dict:
    """Package versions and git commit recorded in checkpoints (the same facts as ``compare``)."""
    return dict(provenance.package_versions(), git=provenance.git_state())


def save_checkpoint(path, model, config: dict, *, seed: int, step: int, metrics: dict | None = None) -> Path:
    """Write a checkpoint of a learnt-feature DPM (or of the bare :class:`LearnedFeatures`).

    Parameters
    ----------
    path : str or Path
        File to write (parent folders are created; written atomically via a temporary file).
    model : DifferentiablePatchMatch or LearnedFeatures
        The model whose ``features`` are saved.
    config : dict
        Plain-typed configuration (JSON-like): must contain ``model`` (the DPM evaluation
        configuration, see :func:`load_checkpoint`) and may hold any training options.
    seed, step : int
        Training seed and optimisation steps done.
    metrics : dict, optional
        Held-out results to keep with the weights.
    """
    features = model.features if hasattr(model, "features") else model
    if not isinstance(features, LearnedFeatures):
        raise ValueError(f"model must use LearnedFeatures, got {type(features).__name__}")
    if "model" not in config:
        raise ValueError("config must contain 'model' (iterations, evaluation, temperature, ...)")
    payload = dict(format=CHECKPOINT_FORMAT, format_version=CHECKPOINT_VERSION,
                   state_dict={k: v.detach().to("cpu", torch.float32).clone()
                               for k, v in features.state_dict().items()},
                   features=feature_config(features), config=config, seed=int(seed), step=int(step),
                   versions=versions(), metrics=metrics or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path, *, device="cpu", iterations: int | None = None, temperature: float | None = None,
                    evaluation: str | None = None):
    """Rebuild the learnt DPM of a checkpoint, ready to run (eval mode, on ``device``).

    The model is configured by the checkpoint's ``config["model"]``: by default the DPM reference
    configuration (21 iterations, window 100, one sample) with the learnt features, evaluated at
    ``temperature`` x the learnt temperature (``1e10``: practically hard, like the fixed ``dpm``).
    The keyword arguments override those three settings.

    Returns
    -------
    model : diff_pm.DifferentiablePatchMatch
    info : dict
        ``iterations``, ``config``, ``seed``, ``step``, ``versions``, ``metrics``, ``parameters``,
        ``learned_temperature``, ``path``.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a dpm-learned checkpoint (written by `python -m experiments train`)")
    if payload.get("format_version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path} has checkpoint format {payload['format_version']}, newer than this code "
                         f"understands ({CHECKPOINT_VERSION})")
    fconf = payload["features"]
    features = LearnedFeatures(**fconf)
    features.load_state_dict(payload["state_dict"])
    mconf = dict(payload["config"]["model"])
    if iterations is not None:
        mconf["iterations"] = int(iterations)
    if temperature is not None:
        mconf["temperature"] = float(temperature)
    if evaluation is not None:
        mconf["evaluation"] = evaluation
    model = build_model(features, **mconf).to(device).eval()
    info = dict(path=str(path), iterations=model.iterations, model=mconf, config=payload["config"],
                seed=payload["seed"], step=payload["step"], versions=payload["versions"],
                metrics=payload.get("metrics", {}), parameters=count_parameters(features),
                learned_temperature=features.temperature)
    return model, info
