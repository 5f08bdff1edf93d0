"""Feature sets as an input of every matcher (experiments.methods.featured), and the learnt nets.

Real properties only: invariance of normalised patches to a gain/bias change, hand-worked
values, the exact NNF on features against a brute-force search, the receptive field measured by
perturbing one pixel, stacking equals patch distances.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.data import warp_matrix, warp_pair
from experiments.errors import UserError
from experiments.methods import run_dpm, run_exact, run_pm
from experiments.methods.featured import feature_area, feature_function, module_features, normalised_patches
from learning.nets import NETS, ConvFeatures, stack_neighbourhood


@pytest.fixture(scope="module")
def textured():
    rng = np.random.default_rng(0)
    img = rng.random((20, 22, 3)).astype(np.float32) * 0.6 + 0.2
    return img


# --------------------------------------------------------------------------- normalised patches
def test_normalised_patches_hand_value_and_shape():
    img = np.arange(3 * 3, dtype=np.float32).reshape(3, 3, 1) / 10.0
    out = normalised_patches(img, size=3, eps=0.0)
    assert out.shape == (3, 3, 9)
    centre = img[:, :, 0].ravel()  # the centre pixel's 3x3 patch is the whole image, row-major
    expect = (centre - centre.mean()) / centre.std()
    np.testing.assert_allclose(out[1, 1], expect, rtol=1e-5, atol=1e-6)
    # a corner pixel reads the edge-replicated image: taps (-1, -1), (-1, 0), (0, -1) repeat (0, 0)
    corner = np.array([0, 0, 1, 0, 0, 1, 3, 3, 4], np.float32) / 10.0
    np.testing.assert_allclose(out[0, 0], (corner - corner.mean()) / corner.std(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [1, 3, 7])
def test_normalised_patches_invariant_to_gain_and_bias(textured, size):
    """Exactly (eps = 0) and nearly (the default eps, on a textured image) invariant."""
    changed = 1.7 * textured - 0.3
    if size > 1:
        np.testing.assert_allclose(normalised_patches(changed, size=size, eps=0.0),
                                   normalised_patches(textured, size=size, eps=0.0), atol=1e-4)
        a, b = normalised_patches(changed, size=size), normalised_patches(textured, size=size)
        assert np.abs(a - b).max() < 0.1 * np.abs(b).max()
    out = normalised_patches(textured, size=size, eps=0.0)
    assert out.shape == (20, 22, 3 * size * size)
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(-1), 1.0, atol=1e-4)


def test_normalised_patches_bad_input(textured):
    with pytest.raises(ValueError, match="odd"):
        normalised_patches(textured, size=4)
    with pytest.raises(ValueError, match="eps"):
        normalised_patches(textured, size=3, eps=-1.0)


def test_feature_function_sets():
    net = ConvFeatures(net="rf7", match_patch=3, generator=torch.Generator().manual_seed(0))
    assert feature_function("raw", patch_size=7) == (None, 7)
    fn, area = feature_function("normalised", module=net)
    assert area == net.area == 9
    assert fn(np.random.default_rng(1).random((10, 12, 3)).astype(np.float32)).shape == (10, 12, 3 * 81)
    assert feature_function("normalised", area=5)[1] == 5
    assert feature_function("learned", module=net)[1] == 9
    with pytest.raises(UserError, match="needs a checkpoint"):
        feature_function("learned")
    with pytest.raises(UserError, match="odd"):
        feature_function("normalised", area=4)
    with pytest.raises(ValueError, match="area"):
        feature_area(torch.nn.Identity())


# --------------------------------------------------------------------------- matchers on features
@pytest.mark.parametrize("channels", [16, 147])
def test_exact_nnf_on_features_is_brute_force(channels):
    """classic_pm.exact_nnf on F-channel features (patch 1) is the brute-force argmin of the SSD."""
    rng = np.random.default_rng(channels)
    a_img = rng.random((9, 11, 3)).astype(np.float32)
    b_img = rng.random((8, 10, 3)).astype(np.float32)
    proj = rng.standard_normal((3, channels)).astype(np.float32)
    features = lambda img: np.tanh(img @ proj)  # noqa: E731 - any per-pixel features
    pair = warp_pair(a_img, np.eye(3), name="t")
    pair.b = b_img
    run = run_exact(pair, patch_size=3, device="cpu", threads=1, features=features)
    fa, fb = features(a_img).reshape(-1, channels), features(b_img).reshape(-1, channels)
    d = ((fa[:, None, :] - fb[None, :, :]) ** 2).sum(-1)
    best = d.min(1)
    got = run.nnfs[-1].reshape(-1, 2).astype(int)
    got_d = d[np.arange(len(fa)), got[:, 0] * 10 + got[:, 1]]
    np.testing.assert_allclose(got_d, best, rtol=1e-4, atol=1e-4)
    import classic_pm

    # the reconstruction votes RGB 3 x 3 patches of B at the feature matches, not the features
    np.testing.assert_allclose(run.reconstruct(run.nnfs[-1]),
                               classic_pm.vote(b_img, got.reshape(9, 11, 2).astype(np.int32), patch_size=3), atol=1e-6)


@pytest.mark.parametrize("channels", [16, 147])
def test_patchmatch_on_features_recovers_a_shift(channels):
    """A translated copy: PatchMatch on (any injective) features finds the shift nearly everywhere,
    and the reconstruction (RGB votes at the matches) rebuilds A there."""
    rng = np.random.default_rng(3)
    img = rng.random((32, 36, 3)).astype(np.float32)
    pair = warp_pair(img, warp_matrix((32, 36), translation=(0.1, -0.15)), name="shift")
    proj = rng.standard_normal((3 * 9, channels)).astype(np.float32)
    features = lambda im: normalised_patches(im, size=3) @ proj  # noqa: E731
    run = run_pm(pair, iterations=5, patch_size=7, seed=0, threads=1, features=features)
    err = np.linalg.norm(run.nnfs[-1] - pair.gt, axis=-1)[pair.valid]
    assert (err < 1.0).mean() > 0.9


def test_dpm_on_features_identity_pair():
    """DPM run on feature maps (run_dpm features=) keeps RGB voting: on an identical pair with
    injective features, DPM keeping its current offset ends near the identity."""
    import diff_pm

    rng = np.random.default_rng(4)
    img = rng.random((24, 24, 3)).astype(np.float32)
    pair = warp_pair(img, np.eye(3), name="same")
    features = lambda im: normalised_patches(im, size=3, eps=0.0)  # noqa: E731
    model = diff_pm.DifferentiablePatchMatch(iterations=8, patch_size=1, evaluation="hard", keep_current=True)
    run = run_dpm(model, pair, device="cpu", seed=0, patch_size=7, threads=1, features=features)
    err = np.linalg.norm(run.matches(run.nnfs[-1]) - pair.gt, axis=-1)
    assert (err < 1.0).mean() > 0.5
    assert run.reconstruct(run.nnfs[-1]).shape == (24, 24, 3)


# --------------------------------------------------------------------------- learnt nets
@pytest.mark.parametrize("net", list(NETS))
def test_receptive_field_by_perturbation(net):
    """Changing one input pixel changes the descriptors exactly within the receptive field."""
    f = ConvFeatures(net=net, generator=torch.Generator().manual_seed(0))
    x = torch.rand(1, 3, 41, 41, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    y = x.clone()
    y[0, :, 20, 20] += 0.5
    with torch.no_grad():
        changed = (f.descriptors(x) - f.descriptors(y)).abs().amax(1)[0] > 0
    ys, xs = torch.nonzero(changed, as_tuple=True)
    r = f.receptive_field // 2
    assert f.receptive_field == {"rf7": 7, "rf15": 15}[net]
    assert int(ys.min()) == 20 - r and int(ys.max()) == 20 + r and int(xs.min()) == 20 - r and int(xs.max()) == 20 + r


def test_conv_features_shapes_norm_and_bad_input():
    f = ConvFeatures(net="rf15", channels=8, hidden=12, match_patch=3, temperature=2.0,
                     generator=torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 10, 12)
    d = f.descriptors(x)
    assert d.shape == (2, 8, 10, 12)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2, 10, 12))
    assert f(x).shape == (2, 72, 10, 12) and f.area == 17
    torch.testing.assert_close(f(x)[:, :8 * 9].norm(dim=1).max(), torch.tensor(2.0 * 3), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="net"):
        ConvFeatures(net="rf9")
    with pytest.raises(ValueError, match="match_patch"):
        ConvFeatures(match_patch=2)
    with pytest.raises(ValueError, match="shape"):
        f(torch.rand(1, 1, 8, 8))


def test_stacked_features_give_patch_distances():
    """The squared distance of stacked vectors is the SSD of the descriptor patches (inside)."""
    g = torch.Generator().manual_seed(2)
    fa, fb = torch.rand(1, 4, 9, 9, generator=g), torch.rand(1, 4, 9, 9, generator=g)
    sa, sb = stack_neighbourhood(fa, 3), stack_neighbourhood(fb, 3)
    got = (sa[0, :, 4, 4] - sb[0, :, 5, 3]).pow(2).sum()
    want = (fa[0, :, 3:6, 3:6] - fb[0, :, 4:7, 2:5]).pow(2).sum()
    torch.testing.assert_close(got, want)
    assert stack_neighbourhood(fa, 1) is fa


def test_module_features_numpy_round_trip():
    f = ConvFeatures(net="rf7", match_patch=1, generator=torch.Generator().manual_seed(0))
    img = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    out = module_features(f)(img)
    assert out.shape == (6, 7, 16) and out.dtype == np.float32
    with torch.no_grad():
        ref = f(torch.from_numpy(img.transpose(2, 0, 1))[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, ref)
