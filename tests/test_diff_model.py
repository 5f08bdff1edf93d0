"""DifferentiablePatchMatch end to end: known answers, sizes, batching, switches, gradients."""
import numpy as np
import pytest
import torch
from skimage import data

from diff_pm import DifferentiablePatchMatch, NeighbourhoodFeatures, reconstruct

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")])]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def _gen(device, seed=0):
    return torch.Generator(device=device).manual_seed(seed)


def _textured(h=72, w=88):
    """A textured RGB image (scikit-image astronaut, downsampled by 2), (1, 3, h, w) float32 in [0, 1]."""
    img = data.astronaut()[::2, ::2][40:40 + h, 60:60 + w].astype(np.float32) / 255
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def _identity(h, w, device, dtype=torch.float32):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device),
                            indexing="ij")
    return torch.stack((ys, xs))[None]


#: The faithful default never keeps the current offset: each iteration redraws 4 particles in a
#: 100 x 100 window, so its precision is bounded by the sampling density (mean error of several
#: pixels on small images, whatever the iteration count). Sub-pixel known answers therefore use
#: keep_current=True (the measured improvement), with all other settings at their defaults.
PRECISE = dict(keep_current=True)


def test_translation_recovered(device):
    """B is A shifted by (dy, dx) = (3, -5): every interior pixel's match is (y + 3, x - 5)."""
    big = _textured(90, 100).to(device)
    a = big[..., 10:74, 15:95]
    b = big[..., 13:77, 10:90]           # A(y, x) == B(y - 3, x + 5)
    pos = DifferentiablePatchMatch(**PRECISE)(a, b, generator=_gen(device))
    expected = _identity(64, 80, device) + torch.tensor([-3.0, 5.0], device=device).view(1, 2, 1, 1)
    epe = (pos - expected).norm(dim=1)[0, 8:-8, 8:-8]
    assert epe.mean() < 0.5


def test_identical_pair_reconstructs_a(device):
    a = _textured(40, 48).to(device)
    pos = DifferentiablePatchMatch(**PRECISE)(a, a, generator=_gen(device))
    ident = _identity(40, 48, device)
    assert (pos - ident).norm(dim=1)[0, 4:-4, 4:-4].mean() < 0.5
    torch.testing.assert_close(reconstruct(a, ident), a)
    assert (reconstruct(a, pos) - a).abs().mean() < 0.02


def test_faithful_default_improves_on_random_matches(device):
    """The faithful default (no memory of the current offset) still beats the first iteration."""
    a = _textured(40, 48).to(device)
    errors = []
    DifferentiablePatchMatch()(a, a, generator=_gen(device),
                               callback=lambda i, p: errors.append((reconstruct(a, p) - a).abs().mean().item()))
    assert len(errors) == 21 and min(errors[1:]) < errors[0] and errors[-1] < 0.1


@pytest.mark.parametrize("offset, b_size", [((6, 9), (60, 70)), ((0, 0), (30, 40))])
def test_different_sizes(device, offset, b_size):
    """A and B differ in size; B is searched at its own size; A is a crop of B (or B a crop of A)."""
    big = _textured(70, 80).to(device)
    if b_size[0] > 40:
        b = big[..., :b_size[0], :b_size[1]]
        a = b[..., offset[0]:offset[0] + 40, offset[1]:offset[1] + 48]
    else:
        a = big[..., :40, :48]
        b = a[..., :b_size[0], :b_size[1]]
    model = DifferentiablePatchMatch(**PRECISE)
    pos = model.matches(model(a, b, generator=_gen(device)), b.shape[-2:])
    assert pos.shape == (1, 2, 40, 48)
    assert pos[:, 0].min() >= 0 and pos[:, 0].max() <= b.shape[-2] - 1
    assert pos[:, 1].min() >= 0 and pos[:, 1].max() <= b.shape[-1] - 1
    expected = _identity(40, 48, device) + torch.tensor(offset, dtype=torch.float32, device=device).view(1, 2, 1, 1)
    rows, cols = min(40, b.shape[-2] - offset[0]) - 4, min(48, b.shape[-1] - offset[1]) - 4   # true match exists
    inner = (pos - expected).norm(dim=1)[0, 4:rows, 4:cols]
    assert (inner < 1.0).float().mean() > 0.9


def test_batch_of_two_equals_two_batches_of_one(device):
    a = torch.cat((_textured(32, 36), _textured(32, 36).flip(-1))).to(device)
    b = torch.cat((_textured(32, 36).roll(2, -1), _textured(32, 36))).to(device)
    model = DifferentiablePatchMatch(iterations=4)
    both = model(a, b, generator=[_gen(device, 1), _gen(device, 2)])
    one = model(a[:1], b[:1], generator=_gen(device, 1))
    two = model(a[1:], b[1:], generator=_gen(device, 2))
    torch.testing.assert_close(both, torch.cat((one, two)))


@pytest.mark.parametrize("quirks", [False, True])
def test_materialize_equals_memory_saving_path(device, quirks):
    a = _textured(24, 30).to(device)
    b = _textured(28, 26).roll(3, -1).to(device)
    kw = dict(iterations=3, reference_quirks=quirks)
    fast = DifferentiablePatchMatch(**kw)(a, b, generator=_gen(device))
    slow = DifferentiablePatchMatch(materialize=True, **kw)(a, b, generator=_gen(device))
    agree = ((fast - slow).abs() < 1e-3).all(1).float().mean()
    assert agree >= 0.99


def test_callback_and_switches(device):
    a = _textured(20, 24).to(device)
    seen = []
    model = DifferentiablePatchMatch(iterations=3, keep_current=True, sample_count=2, evaluation="hard")
    out = model(a, a, generator=_gen(device), callback=lambda i, p: seen.append((i, p.shape)))
    assert seen == [(1, (1, 2, 20, 24)), (2, (1, 2, 20, 24)), (3, (1, 2, 20, 24))]
    assert out.dtype == a.dtype and out.device == a.device


def test_quirks_switch_one_by_one():
    """Each quirk is its own switch; reference_quirks=True is all of them (checked against the
    original's traces in test_diff_reference.py); noise and search range are options of their own."""
    import diff_pm

    full = DifferentiablePatchMatch(reference_quirks=True)
    assert full.quirks == frozenset(diff_pm.QUIRKS) and full.reference_quirks
    assert full.sampler.shared_noise and full.horizontal.border == "zeros"
    assert full.frame == diff_pm.Frame(y_clamp_width=True, a_frame=True, half_pixel=True)
    default = DifferentiablePatchMatch()
    assert default.sampler.shared_noise and default.search_range == "full" and not default.quirks
    assert default.frame == diff_pm.Frame() and default.horizontal.border == "replicate"
    assert not DifferentiablePatchMatch(reference_quirks=True, noise="independent").reference_quirks
    assert not DifferentiablePatchMatch(noise="independent").sampler.shared_noise
    assert DifferentiablePatchMatch(quirks=["zero_border"]).vertical.border == "zeros"
    with pytest.raises(ValueError, match="unknown quirk 'shared_noise'"):
        DifferentiablePatchMatch(quirks=("shared_noise",))
    with pytest.raises(ValueError, match="search_range must be one of 'full', 'inside'"):
        DifferentiablePatchMatch(search_range="all")


@pytest.mark.parametrize("search_range", ["full", "inside"])
def test_search_range_bounds_the_particles(search_range):
    """Iteration 1 samples the whole range: [-W, W] x [-H, H], or the offsets whose point is in B."""
    a, b = _textured(12, 20), _textured(14, 16)
    model = DifferentiablePatchMatch(iterations=1, search_range=search_range)
    seen = []
    model.sampler.register_forward_hook(lambda m, i, out: seen.append(out))
    model(a, b, generator=_gen("cpu"))
    px, py = seen[0]
    if search_range == "full":   # the larger of A's and B's sizes: W = 20, H = 14
        assert px.min() >= -20 and px.max() <= 20 and py.min() >= -14 and py.max() <= 14
        assert px.min() < -10 and px.max() > 10
    else:                        # x - dx in [0, Wb - 1], y - dy in [0, Hb - 1]
        x = torch.arange(20.0).view(1, 1, 1, 20)
        y = torch.arange(12.0).view(1, 1, 12, 1)
        assert ((x - px) >= 0).all() and ((x - px) <= 15).all()
        assert ((y - py) >= 0).all() and ((y - py) <= 13).all()


def test_frame_reflect_mirrors_points_into_the_limits():
    """Points past a limit come back mirrored at it (as often as needed); points inside are kept.
    Worked by hand for Wb = 11 (Lx = 10) and Hb = 1 (Ly = 0: every y point becomes row 0)."""
    import diff_pm

    frame, size_a, size_b = diff_pm.Frame(), (1, 4), (1, 11)
    qx = torch.tensor([-3.0, 12.0, 25.0, 7.5]).view(1, 1, 1, 4)      # points of pixels x = 0, 1, 2, 3
    base = torch.arange(4.0).view(1, 1, 1, 4)
    dx, dy = frame.reflect(base - qx, torch.full_like(qx, -2.0), size_a, size_b)
    assert torch.equal(base - dx, torch.tensor([3.0, 8.0, 5.0, 7.5]).view(1, 1, 1, 4))
    assert torch.equal(0 - dy, torch.zeros_like(dy))
    # a_frame: the limits are A's extents (the frame the quirk compares in)
    _, dy = diff_pm.Frame(a_frame=True).reflect(base - qx, torch.full_like(qx, -2.0), size_a, (5, 11))
    assert torch.equal(dy, torch.zeros_like(dy))


def test_outside_reflect_keeps_every_particle_in_b(device):
    """outside="reflect": every sampled particle (the propagation's input) designates a point of B,
    so the matches lie at most a pixel past B's border (a neighbour's particle handed over); with
    the default "clamp" most of iteration 1's particles lie outside B, compared at its border."""
    a, b = _textured(12, 20).to(device), _textured(14, 16).to(device)
    x, y = torch.arange(20.0, device=device).view(1, 1, 1, 20), torch.arange(12.0, device=device).view(1, 1, 12, 1)
    share = {}
    for outside in ("clamp", "reflect"):
        model = DifferentiablePatchMatch(iterations=2, outside=outside)
        seen = []
        model.horizontal.register_forward_pre_hook(lambda m, args: seen.append(args[2:]))
        pos = model(a, b, generator=_gen(device))
        qx = torch.cat([x - px for px, _ in seen], 1)
        qy = torch.cat([y - py for _, py in seen], 1)
        share[outside] = ((qx >= 0) & (qx <= 15) & (qy >= 0) & (qy <= 13)).float().mean().item()
        if outside == "reflect":
            assert pos[:, 0].min() >= -1 and pos[:, 0].max() <= 14 and pos[:, 1].min() >= -1 and pos[:, 1].max() <= 16
            assert not model.reference_quirks and "outside='reflect'" in repr(model)
    assert share["reflect"] == 1.0 and share["clamp"] < 0.5
    with pytest.raises(ValueError, match="outside must be one of 'clamp', 'reflect'"):
        DifferentiablePatchMatch(outside="wrap")


def test_model_reconstruct_is_diff_pm_reconstruct_by_default():
    a = _textured(20, 24)
    b = _textured(20, 24).roll(2, -1)
    model = DifferentiablePatchMatch(iterations=3, patch_size=5)
    pos = model(a, b, generator=_gen("cpu"))
    assert torch.equal(model.reconstruct(b, pos), reconstruct(b, pos, patch_size=5))
    hi = torch.tensor([19.0, 23.0]).view(1, 2, 1, 1)
    assert torch.equal(model.matches(pos, b.shape[-2:]), pos.clamp(min=0).minimum(hi))  # clamped to B


def test_gradients_reach_features_and_images(device):
    a = _textured(16, 20).to(device).requires_grad_(True)
    b = _textured(16, 20).roll(1, -1).to(device).requires_grad_(True)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).to(device)
    for features, outside in ((None, "clamp"), (conv, "clamp"), (None, "reflect")):
        model = DifferentiablePatchMatch(iterations=2, temperature=10.0, features=features, outside=outside)
        pos = model(a, b, generator=_gen(device))
        loss = (reconstruct(b, pos, patch_size=3) - a).abs().mean()
        params = [a, b] + ([] if features is None else list(conv.parameters()))
        grads = torch.autograd.grad(loss, params)
        for g in grads:
            assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_custom_features_match_materialized(device):
    a = _textured(18, 22).to(device)
    b = _textured(18, 22).roll(2, -2).to(device)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1).to(device)
    tiled = DifferentiablePatchMatch(iterations=2, features=conv)(a, b, generator=_gen(device))
    mat = DifferentiablePatchMatch(iterations=2, features=conv, materialize=True)(a, b, generator=_gen(device))
    assert ((tiled - mat).abs() < 1e-3).all(1).float().mean() >= 0.99
    # default features passed explicitly use the fused path
    assert DifferentiablePatchMatch(features=NeighbourhoodFeatures(patch_size=7)).horizontal.scoring == "patch"


@pytest.mark.parametrize("kwargs, message", [
    (dict(sample_count=0), "sample_count must be an integer >= 1"), (dict(iterations=0), "iterations must be an integer"),
    (dict(iterations=2.5), "iterations must be an integer"), (dict(temperature=0.0), "temperature must be a number > 0"),
    (dict(window=(0, 10)), "window must be two positive numbers"), (dict(window=5), "window must be two positive"),
    (dict(patch_size=4), "patch_size must be a positive odd integer"), (dict(evaluation="max"), "evaluation must be one of"),
    (dict(features="conv"), "features must be an nn.Module"), (dict(quirks=5), "quirks must be a collection")])
def test_bad_configuration_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DifferentiablePatchMatch(**kwargs)


def test_bad_inputs_raise():
    model = DifferentiablePatchMatch(iterations=1)
    a = torch.rand(1, 3, 8, 8)
    for bad_a, bad_b, message in [(a[0], a, "a must have shape"), (a, torch.rand(2, 3, 8, 8), "same batch size"),
                                  (a, torch.rand(1, 1, 8, 8), "same number of channels"),
                                  (a, a.double(), "share device and dtype"), (a.long(), a.long(), "floating-point")]:
        with pytest.raises(ValueError, match=message):
            model(bad_a, bad_b)
    with pytest.raises(ValueError, match="one per batch item"):
        model(a, a, generator=[torch.Generator(), torch.Generator()])


def test_torch_backend_equals_compiled_backend(monkeypatch):
    """The device-generic torch path (used on CUDA) gives the CPU kernels' result, forward and backward."""
    import diff_pm._cpu_kernels as kernels
    # float64 and a little noise: quantised images have exact ties |A - B| = 0 where the gradient jumps
    g = torch.Generator().manual_seed(1)
    a = (_textured(20, 26).double() + 1e-3 * torch.rand(1, 3, 20, 26, generator=g, dtype=torch.float64))
    b = (_textured(22, 24).roll(2, -1).double() + 1e-3 * torch.rand(1, 3, 22, 24, generator=g, dtype=torch.float64))
    a.requires_grad_(True)
    b.requires_grad_(True)

    def run():
        pos = DifferentiablePatchMatch(iterations=3, temperature=10.0)(a, b, generator=_gen("cpu"))
        return pos, torch.autograd.grad(reconstruct(b, pos, patch_size=3).sum(), (a, b))

    compiled = run()
    monkeypatch.setattr(kernels, "available", lambda t: False)
    generic = run()
    torch.testing.assert_close(generic[0], compiled[0], rtol=1e-7, atol=1e-7)
    for g, c in zip(generic[1], compiled[1]):
        torch.testing.assert_close(g, c, rtol=1e-5, atol=1e-7)
