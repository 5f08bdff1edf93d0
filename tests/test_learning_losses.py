"""The arms' losses (learning.loss, learning.arms): hand computations, gradchecks, invariants."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diff_pm
from learning.arms import arm_loss, build_features, train_step
from learning.data import PairSampler, load_sample, stack_pairs
from learning.loss import (dpm_candidate_loss, dpm_candidates, info_nce_loss, ranking_cross_entropy,
                           sample_anchors, sample_points)
from learning.settings import ARMS, TrainSettings


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _coords(h, w, dtype=torch.float64):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return ys, xs


def test_ranking_cross_entropy_hand_value():
    logits = torch.tensor([[[2.0, 1.0, 0.0, 5.0]]])
    keep = torch.tensor([[[True, True, True, False]]])  # the last candidate is left out
    got = ranking_cross_entropy(logits, keep, torch.ones(1, 1))
    want = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    assert float(got) == pytest.approx(want, rel=1e-6)
    # anchors of weight 0 do not count; candidate 0 always takes part
    two = ranking_cross_entropy(torch.cat([logits, logits * 0]), torch.zeros(2, 1, 4, dtype=torch.bool),
                                torch.tensor([[1.0], [0.0]]))
    assert float(two) == pytest.approx(0.0, abs=1e-7)


def test_info_nce_equals_hand_computation():
    """Descriptors (x, y): linear, so bilinear sampling is exact; ring negatives at radius 2 are at
    squared distance 4 from the truth whatever their angle: loss = log(1 + K exp(-4 / tau))."""
    h = w = 21
    ys, xs = _coords(h, w)
    desc_b = torch.stack((xs, ys))[None]
    gt = torch.stack((ys + 0.3, xs - 0.6))[None]           # (y, x) in B: a sub-pixel shift
    desc_a = torch.stack((gt[0, 1], gt[0, 0]))[None]       # A's descriptor = B's at the truth
    valid = torch.zeros(1, 1, h, w, dtype=torch.float64)
    valid[0, 0, 10, 10] = 1.0                               # one anchor, far from the borders
    for k, tau in ((4, 0.5), (9, 2.0)):
        loss = info_nce_loss(desc_a, desc_b, gt, valid, generator=_gen(), anchors=3, random_negatives=0,
                             ring_negatives=k, ring=(2.0, 2.0), tau=tau)
        assert float(loss) == pytest.approx(math.log(1 + k * math.exp(-4 / tau)), rel=1e-6)
    # no negatives: only the positive, loss 0
    assert float(info_nce_loss(desc_a, desc_b, gt, valid, generator=_gen(), anchors=2, random_negatives=0,
                               ring_negatives=0)) == pytest.approx(0.0, abs=1e-9)


def test_info_nce_gradcheck():
    g = _gen(3)
    desc_a = torch.rand(1, 2, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    desc_b = torch.rand(1, 2, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    ys, xs = _coords(6, 7)
    gt = torch.stack((ys.clamp(max=4.7) * 0.9 + 0.2, xs * 0.8 + 0.35))[None]
    valid = torch.ones(1, 1, 6, 7, dtype=torch.float64)
    fn = lambda a, b: info_nce_loss(a, b, gt, valid, generator=_gen(1), anchors=5,  # noqa: E731
                                    random_negatives=3, ring_negatives=2, tau=0.7)
    assert torch.autograd.gradcheck(fn, (desc_a, desc_b), eps=1e-6, atol=1e-5)


def test_sample_anchors_only_valid_and_seeded():
    valid = torch.zeros(2, 1, 4, 5)
    valid[0, 0, 1, 2] = valid[0, 0, 3, 4] = 1
    index, weight = sample_anchors(valid, 50, _gen())
    assert set(index[0].tolist()) <= {1 * 5 + 2, 3 * 5 + 4} and bool((weight[0] == 1).all())
    assert bool((weight[1] == 0).all())  # no valid pixel: weight 0
    again, _ = sample_anchors(valid, 50, _gen())
    assert torch.equal(index, again)


def test_sample_points_is_bilinear():
    f = torch.arange(12.0).view(1, 1, 3, 4)
    got = sample_points(f, torch.tensor([[[1.5, 3.0]]]), torch.tensor([[[0.5, 2.0]]]))
    assert got.shape == (1, 1, 1, 2)
    torch.testing.assert_close(got[0, 0, 0], torch.tensor([3.5, 11.0]))


def test_dpm_candidates_search_is_dpm():
    """The recorded search is DifferentiablePatchMatch's (hard, keep_current, reflect, patch 1 on the
    feature maps): the same generator gives the same final offsets."""
    g = _gen(5)
    fa, fb = torch.rand(1, 6, 12, 14, generator=g), torch.rand(1, 6, 11, 15, generator=g)
    steps, (dx, dy) = dpm_candidates(fa, fb, generator=_gen(7), iterations=3, window=(6, 8), return_offsets=True)
    model = diff_pm.DifferentiablePatchMatch(iterations=3, window=(6, 8), patch_size=1, evaluation="hard",
                                             keep_current=True, outside="reflect")
    with torch.no_grad():
        pos = model(fa, fb, generator=_gen(7))
    ys, xs = _coords(12, 14, torch.float32)
    torch.testing.assert_close(pos[0, 0], ys - dy[0, 0])
    torch.testing.assert_close(pos[0, 1], xs - dx[0, 0])
    assert len(steps) == 6
    assert steps[0][0].shape == (1, 12, 12, 14) and steps[2][0].shape == (1, 15, 12, 14)  # + current offset
    assert steps[1][0].shape == (1, 3, 12, 14)
    for bx, by in steps:  # the points the evaluation compares: inside B
        assert float(bx.min()) >= 0 and float(bx.max()) <= 14 and float(by.max()) <= 10


def _shifted_pair(h=24, w=24, shift=(2, 3), channels=8, seed=0):
    """Random features of A and of B = A shifted by ``shift`` (integer), exact ground truth."""
    g = _gen(seed)
    big = torch.randn(1, channels, h + 8, w + 8, generator=g)
    fa = big[:, :, 4:4 + h, 4:4 + w].clone()
    fb = big[:, :, 4 - shift[0]:4 - shift[0] + h, 4 - shift[1]:4 - shift[1] + w].clone()
    ys, xs = _coords(h, w, torch.float32)
    gt = torch.stack((ys + shift[0], xs + shift[1]))[None]
    valid = ((gt[:, 0:1] <= h - 1) & (gt[:, 1:2] <= w - 1)).float()
    return fa, fb, gt, valid


def test_dpm_candidate_loss_targets_the_truth_and_reaches_the_features():
    fa, fb, gt, valid = _shifted_pair()
    kw = dict(iterations=3, window=(12, 12), anchors=64)
    sharp = dpm_candidate_loss(20 * fa, 20 * fb, gt, valid, generator=_gen(1), **kw)
    # B's features at the truth equal A's: with sharp scores the truth wins every step
    assert float(sharp) < 1e-3
    # features of B unrelated to A: the truth is one candidate among many
    noise = torch.randn(fb.shape, generator=_gen(9))
    assert float(dpm_candidate_loss(20 * fa, 20 * noise, gt, valid, generator=_gen(1), **kw)) > 1.0
    a = fa.clone().requires_grad_(True)
    b = fb.clone().requires_grad_(True)
    loss = dpm_candidate_loss(a, b, gt, valid, generator=_gen(1), **kw)
    loss.backward()
    for t in (a, b):
        assert torch.isfinite(t.grad).all() and float(t.grad.abs().sum()) > 0


@pytest.fixture(scope="module")
def batch():
    sampler = PairSampler([load_sample("camera")], 24, np.random.default_rng(0))
    return stack_pairs([sampler.pair() for _ in range(2)], "cpu")


@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize("net", ["rf7", "rf15"])
def test_every_arm_reaches_every_parameter(arm, net, batch):
    s = TrainSettings(arm=arm, net=net, crop=24, anchors=32, iterations=2)
    features = build_features(s, generator=_gen(0))
    loss, extra = arm_loss(s, features, batch, generator=_gen(1))
    loss.backward()
    for name, p in features.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0, name
    assert ("log_temperature" in dict(features.named_parameters())) == (arm != "contrastive")
    assert ("epe" in extra) == (arm == "recon")


@pytest.mark.parametrize("arm", ARMS)
def test_one_step_lowers_the_loss(arm, batch):
    """A small step on a fixed batch, the same random draws before and after, lowers the loss."""
    s = TrainSettings(arm=arm, net="rf7", crop=24, anchors=64, iterations=2)
    features = build_features(s, generator=_gen(0))
    with torch.no_grad():
        before = float(arm_loss(s, features, batch, generator=_gen(4))[0])
    opt = torch.optim.Adam(features.parameters(), lr=1e-3)
    assert train_step(s, features, opt, batch, generator=_gen(4))["loss"] == pytest.approx(before, rel=1e-6)
    with torch.no_grad():
        after = float(arm_loss(s, features, batch, generator=_gen(4))[0])
    assert after < before
