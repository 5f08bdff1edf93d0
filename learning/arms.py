"""The training arms: what is trained (:func:`build_features`) and one optimisation step of each.

Each arm is a named loss (:data:`learning.settings.ARMS`):

* ``contrastive`` (without DPM): :func:`learning.loss.info_nce_loss` on the unit descriptors;
  the temperature of the features stays 1 (it plays no part).
* ``dpm-ce`` (through DPM, aware of the hard choice): DPM's default search in hard mode with
  ``keep_current``, ``outside="reflect"`` and a window matched to the crop, on the features,
  candidates detached; :func:`learning.loss.dpm_candidate_loss` over the candidates it compared,
  the true match added. Learns the temperature with the features.
* ``recon`` (the earlier loss, to settle whether it still shrinks toward zero offsets): soft DPM
  (``keep_current``, ``outside="reflect"``, the same window) at the learnt temperature,
  :func:`learning.loss.reconstruction_loss` with the EPE term.

:func:`train_step` runs one step of any arm on a batch ``(a, b, gt, valid)`` and returns the
loss before the step. All randomness comes from the ``generator`` passed in.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .features import PATCH_SIZE, SEARCH_DEFAULTS, LearnedFeatures, build_model
from .loss import dpm_candidate_loss, info_nce_loss, reconstruction_loss
from .nets import ConvFeatures
from .settings import ARMS, TrainSettings

__all__ = ["build_features", "with_match_patch", "arm_loss", "train_step", "arm_config"]


def build_features(s: TrainSettings, *, generator: torch.Generator | None = None, match_patch: int = 1):
    """The untrained feature extractor of ``s`` (``net``, ``channels``, ``hidden``, temperature),
    weights drawn from ``generator``. ``match_patch``: the stacked descriptor patch, 1 by default:
    every arm trains point descriptors; ``s.match_patch`` applies to the trained features
    (:func:`with_match_patch`)."""
    learn_t = s.learn_temperature and s.arm != "contrastive"
    temperature = 1.0 if s.arm == "contrastive" else s.temperature
    if s.net == "linear7":
        return LearnedFeatures(channels=s.channels, hidden=s.hidden, temperature=temperature,
                               learn_temperature=learn_t, generator=generator)
    return ConvFeatures(net=s.net, channels=s.channels, hidden=s.hidden,
                        match_patch=match_patch,
                        temperature=temperature, learn_temperature=learn_t, generator=generator)


def with_match_patch(features, match_patch: int):
    """A copy of ``features`` (eval mode) that stacks ``match_patch`` x ``match_patch`` descriptor patches
    (:class:`~learning.nets.ConvFeatures`; the earlier ``LearnedFeatures`` have no such patch: copied as they are)."""
    out = copy.deepcopy(features)
    if isinstance(out, ConvFeatures):
        if match_patch < 1 or match_patch % 2 == 0:
            raise ValueError(f"match_patch must be a positive odd integer, got {match_patch}")
        out.match_patch = int(match_patch)
    return out.eval()


def _descriptors(features, image):
    """Unit descriptors of ``image``: ``features.descriptors`` where defined, else the normalised output."""
    if hasattr(features, "descriptors"):
        return features.descriptors(image)
    return F.normalize(features(image), dim=1, eps=1e-6)


def arm_config(s: TrainSettings) -> dict:
    """What each arm's loss is, in plain types (for the checkpoint and the report)."""
    dpm = dict(SEARCH_DEFAULTS, iterations=s.dpm_iterations, window=list(s.dpm_window), keep_current=True,
               outside="reflect")
    if s.arm == "contrastive":
        return dict(arm=s.arm, loss="InfoNCE: -|d_A - d_B|^2 / tau, positive at the true match, 32 negatives on a "
                                    "2-8 px ring, 64 uniform negatives", tau=s.tau, anchors=s.anchors)
    if s.arm == "dpm-ce":
        return dict(arm=s.arm, loss="cross-entropy over DPM's compared candidates (hard search, detached) + the "
                                    "true match; candidates within 1 px of the truth left out",
                    anchors=s.anchors, dpm=dpm)
    return dict(arm=s.arm, loss="masked L1 of the soft DPM reconstruction + epe_weight x EPE / crop side",
                epe_weight=s.epe_weight, dpm=dict(dpm, evaluation="soft", temperature="learnt"))


def arm_loss(s: TrainSettings, features, batch, *, generator: torch.Generator):
    """The loss of arm ``s.arm`` on ``batch = (a, b, gt, valid)`` (tensors ``(N, C, H, W)``).

    Returns ``(loss, extra)``: a scalar tensor and a dict of floats for the log (``epe`` for
    ``recon``).
    """
    a, b, gt, valid = batch
    if s.arm == "contrastive":
        loss = info_nce_loss(_descriptors(features, a), _descriptors(features, b), gt, valid, generator=generator,
                             anchors=s.anchors, tau=s.tau)
        return loss, {}
    if s.arm == "dpm-ce":
        loss = dpm_candidate_loss(features(a), features(b), gt, valid, generator=generator,
                                  iterations=s.dpm_iterations, window=s.dpm_window, anchors=s.anchors)
        return loss, {}
    if s.arm == "recon":
        model = build_model(features, iterations=s.dpm_iterations, temperature=1.0, patch_size=PATCH_SIZE,
                            keep_current=True, outside="reflect", window=list(s.dpm_window))
        positions = model(a, b, generator=generator)
        loss, recon, epe = reconstruction_loss(a, b, positions, valid, gt=gt, epe_weight=s.epe_weight,
                                               patch_size=PATCH_SIZE, parts=True)
        return loss, dict(recon=recon, epe=epe)
    raise ValueError(f"arm must be one of {', '.join(ARMS)}, got {s.arm!r}")


def train_step(s: TrainSettings, features, optimizer, batch, *, generator: torch.Generator, clip: float = 1.0) -> dict:
    """One optimisation step of arm ``s.arm``; returns ``loss`` (before the step) and the arm's extras."""
    features.train()
    optimizer.zero_grad(set_to_none=True)
    loss, extra = arm_loss(s, features, batch, generator=generator)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()}; lower --lr or --temperature")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(features.parameters(), clip)
    optimizer.step()
    return dict(loss=float(loss.detach()), **extra)
