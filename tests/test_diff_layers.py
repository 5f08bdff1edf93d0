"""diff_pm layers: sampler, propagation, evaluation, features, reconstruction (CPU; CUDA when present)."""
import pytest
import torch
import torch.nn.functional as F

import diff_pm
from diff_pm import (Evaluation, Frame, NeighbourhoodFeatures, ParticleSampler, Propagation, PropagateEvaluate,
                     Reconstruction, evaluate, materialized_scores, neighbourhood_features, particle_positions,
                     patch_scores, propagate, propagate_evaluate, reconstruct, sample_particles, select_offsets,
                     tiled_scores)

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")])]
#: tolerances per dtype (rtol, atol)
TOL = {torch.float64: (1e-5, 1e-9), torch.float32: (1e-4, 1e-5)}


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def _gen(device, seed=0):
    return torch.Generator(device=device).manual_seed(seed)


def _random_case(device, dtype=torch.float64, n=2, k=5, ha=9, wa=11, hb=8, wb=13, seed=0, integers=True):
    g = _gen(device, seed)
    a = torch.rand(n, 3, ha, wa, dtype=dtype, device=device, generator=g)
    b = torch.rand(n, 3, hb, wb, dtype=dtype, device=device, generator=g)
    # positions partly outside B (exercise grid_sample's zero padding) and a few exact integers
    bx = torch.rand(n, k, ha, wa, dtype=dtype, device=device, generator=g) * (wb + 3) - 1.5
    by = torch.rand(n, k, ha, wa, dtype=dtype, device=device, generator=g) * (hb + 3) - 1.5
    if integers:  # exact integer positions: fine for values, but kinks of the bilinear weights for gradients
        bx[:, 0, :2] = torch.round(bx[:, 0, :2])
        by[:, 0, :2] = torch.round(by[:, 0, :2])
    return a, b, bx, by


# --- sampler -------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 3])
def test_sampler_counts_and_intervals(device, k):
    n, h, w = 2, 5, 6
    g = _gen(device)
    lo_x = torch.rand(n, 1, h, w, generator=g, device=device) * -20
    hi_x = lo_x + torch.rand(n, 1, h, w, generator=g, device=device) * 30
    lo_y = torch.rand(n, 1, h, w, generator=g, device=device) * -10
    hi_y = lo_y + 7.0
    px, py = sample_particles(lo_x, hi_x, lo_y, hi_y, sample_count=k, generator=g)
    assert px.shape == py.shape == (n, (k + 1) ** 2, h, w)
    step_x, step_y = (hi_x - lo_x) / (k + 1), (hi_y - lo_y) / (k + 1)
    for j in range((k + 1) ** 2):
        iy, ix = divmod(j, k + 1)          # particle j = iy * (k+1) + ix
        assert torch.all(px[:, j:j + 1] >= lo_x + ix * step_x - 1e-5)
        assert torch.all(px[:, j:j + 1] <= lo_x + (ix + 1) * step_x + 1e-5)
        assert torch.all(py[:, j:j + 1] >= lo_y + iy * step_y - 1e-5)
        assert torch.all(py[:, j:j + 1] <= lo_y + (iy + 1) * step_y + 1e-5)
    # meshgrid: every x-sample appears with every y-sample
    assert torch.equal(px[:, 0], px[:, k + 1]) and torch.equal(py[:, 0], py[:, 1])


def test_sampler_generator_reproducible_and_module_equals_function(device):
    lo = torch.zeros(1, 1, 4, 4, device=device)
    hi = lo + 10
    a = sample_particles(lo, hi, lo, hi, sample_count=2, generator=_gen(device, 3))
    b = ParticleSampler(sample_count=2).to(device)(lo, hi, lo, hi, generator=_gen(device, 3))
    c = sample_particles(lo, hi, lo, hi, sample_count=2, generator=_gen(device, 4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # per-item generators: item i depends only on generator i
    lo2, hi2 = lo.expand(2, -1, -1, -1), hi.expand(2, -1, -1, -1)
    both = sample_particles(lo2, hi2, lo2, hi2, generator=[_gen(device, 3), _gen(device, 4)])
    one = sample_particles(lo, hi, lo, hi, generator=_gen(device, 4))
    assert torch.equal(both[0][1:], one[0]) and torch.equal(both[1][1:], one[1])


# --- propagation ---------------------------------------------------------------------------------

def test_propagation_hand_worked_3x3():
    """One particle per pixel, offsets 1..9 in raster order:

        1 2 3
        4 5 6
        7 8 9

    Horizontal: pixel (1, 0) receives [left, own, right] = [4 (replicated: no left neighbour), 4, 5];
    pixel (1, 1) receives [4, 5, 6]; pixel (1, 2) receives [5, 6, 6]. Vertical analogously with
    [up, own, down]. Border rule "zeros" (reference quirk) gives 0 for the missing neighbour.
    """
    ox = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    oy = -ox
    hx, hy = propagate(ox, oy, direction="horizontal")
    assert hx.shape == (1, 3, 3, 3)
    expected_h = torch.tensor([[[1, 1, 2], [4, 4, 5], [7, 7, 8]],      # from left neighbour
                               [[1, 2, 3], [4, 5, 6], [7, 8, 9]],      # own
                               [[2, 3, 3], [5, 6, 6], [8, 9, 9]]],     # from right neighbour
                              dtype=torch.float32)
    assert torch.equal(hx[0], expected_h) and torch.equal(hy[0], -expected_h)
    vx, _ = propagate(ox, oy, direction="vertical")
    expected_v = torch.tensor([[[1, 2, 3], [1, 2, 3], [4, 5, 6]],
                               [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                               [[4, 5, 6], [7, 8, 9], [7, 8, 9]]], dtype=torch.float32)
    assert torch.equal(vx[0], expected_v)
    zx, _ = propagate(ox, oy, direction="horizontal", border="zeros")
    assert torch.equal(zx[0, 0, :, 0], torch.zeros(3)) and torch.equal(zx[0, 2, :, 2], torch.zeros(3))
    assert torch.equal(zx[0, :, :, 1], expected_h[:, :, 1])


def test_propagation_particle_order_and_module(device):
    ox = torch.rand(2, 4, 5, 6, device=device, generator=_gen(device))
    oy = torch.rand(2, 4, 5, 6, device=device, generator=_gen(device, 1))
    fx, fy = propagate(ox, oy, direction="horizontal")
    mx, my = Propagation().to(device)(ox, oy, direction="horizontal")
    assert torch.equal(fx, mx) and torch.equal(fy, my)
    assert fx.shape == (2, 12, 5, 6)
    assert torch.equal(fx[:, 1::3], ox)                             # candidates 3j + 1: own particles
    assert torch.equal(fx[:, 0::3, :, 1:], ox[:, :, :, :-1])        # candidates 3j: left neighbour's
    assert torch.equal(fx[:, 2::3, :, :-1], ox[:, :, :, 1:])        # candidates 3j + 2: right neighbour's
    assert torch.equal(fx[:, 0::3, :, 0], ox[:, :, :, 0])           # replicate border
    vx, _ = propagate(ox, oy, direction="vertical", border="zeros")
    assert torch.equal(vx[:, 2::3, :-1], ox[:, :, 1:]) and torch.equal(vx[:, 2::3, -1], torch.zeros_like(ox[:, :, -1]))
    with pytest.raises(ValueError, match="direction must be one of"):
        propagate(ox, oy, direction="diagonal")


# --- features and scores --------------------------------------------------------------------------

def test_neighbourhood_features_layout(device):
    img = torch.rand(1, 3, 6, 7, device=device, generator=_gen(device))
    f = NeighbourhoodFeatures(patch_size=7).to(device)(img)
    assert f.shape == (1, 147, 6, 7)
    # channel t*C + c is channel c displaced by tap t = ty*7 + tx, zero outside
    ref = F.pad(img, (3, 3, 3, 3))
    for t in (0, 10, 24, 48):
        ty, tx = divmod(t, 7)
        assert torch.equal(f[0, 3 * t:3 * t + 3], ref[0, :, ty:ty + 6, tx:tx + 7])


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_memory_saving_scores_equal_materialized(device, dtype, backend):
    rtol, atol = TOL[dtype]
    a, b, bx, by = _random_case(device, dtype)
    ref = materialized_scores(neighbourhood_features(a), neighbourhood_features(b), bx, by)
    torch.testing.assert_close(patch_scores(a, b, bx, by, backend=backend), ref, rtol=rtol, atol=atol)
    a, b, bx, by = _random_case(device, dtype, integers=False)
    inputs = [t.clone().requires_grad_(True) for t in (a, b, bx, by)]
    ref = materialized_scores(neighbourhood_features(inputs[0]), neighbourhood_features(inputs[1]), *inputs[2:])
    weights = torch.rand(ref.shape, dtype=dtype, device=device, generator=_gen(device, 9)) - 0.5
    ref_grads = torch.autograd.grad((ref * weights).sum(), inputs)
    for fn in (lambda a, b, x, y: patch_scores(a, b, x, y, backend=backend, tile_elements=4000),
               lambda a, b, x, y: tiled_scores(neighbourhood_features(a), neighbourhood_features(b), x, y,
                                               tile_elements=4000)):
        inputs = [t.clone().requires_grad_(True) for t in (a, b, bx, by)]
        out = fn(*inputs)
        torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
        grads = torch.autograd.grad((out * weights).sum(), inputs)
        for g, rg in zip(grads, ref_grads):
            torch.testing.assert_close(g, rg, rtol=rtol, atol=atol)


FRAMES = [(), ("a_frame", "half_pixel"), ("y_clamp_width", "a_frame", "half_pixel"), ("half_pixel",)]
#: B of A's size (14 x 12: the shared-strip path even with ``a_frame``, whose scale is then 1) and of
#: another size (``a_frame`` scales points: no sharing)
SIZES_B = [(14, 12), (11, 16)]
# The compiled backend ("auto" on CPU) in every combination. backend="torch" only composes
# propagate -> Frame.points -> torch patch_scores, each tested on its own above and below, so a few
# cases suffice: each frame (quirk set) once, each border rule, direction and size of B twice.
_TORCH_CASES = [("horizontal", "replicate", FRAMES[0], SIZES_B[0]),
                ("vertical", "zeros", FRAMES[1], SIZES_B[0]),
                ("horizontal", "zeros", FRAMES[2], SIZES_B[1]),
                ("vertical", "replicate", FRAMES[3], SIZES_B[1])]
COMPOSITION_CASES = ([("auto", d, b, q, s) for s in SIZES_B for d in ("horizontal", "vertical")
                      for b in ("replicate", "zeros") for q in FRAMES]
                     + [("torch", *case) for case in _TORCH_CASES])


@pytest.mark.parametrize("backend, direction, border, quirks, size_b", COMPOSITION_CASES)
def test_propagated_scores_equal_composition(device, direction, backend, border, quirks, size_b):
    """The propagation-aware scorer equals propagate -> frame points -> materialised scores, fwd and bwd.

    Same-size pairs with offsets of a few pixels take the shared-strip path for most particles (with
    every frame, ``a_frame`` and ``y_clamp_width`` included); a B of another size with the
    ``a_frame`` quirk scales points (no sharing); taller-than-wide A with ``y_clamp_width`` clamps
    the base y of the last rows.
    """
    g = _gen(device, 5)
    ha, wa = 14, 12
    a = torch.rand(2, 3, ha, wa, dtype=torch.float64, device=device, generator=g).requires_grad_(True)
    b = torch.rand(2, 3, *size_b, dtype=torch.float64, device=device, generator=g).requires_grad_(True)
    sx = ((torch.rand(2, 4, ha, wa, dtype=torch.float64, device=device, generator=g) - 0.5) * 6).requires_grad_(True)
    sy = ((torch.rand(2, 4, ha, wa, dtype=torch.float64, device=device, generator=g) - 0.5) * 6).requires_grad_(True)
    px, py = propagate(sx, sy, direction=direction, border=border)
    bx, by = particle_positions(px, py, (ha, wa), size_b, quirks=quirks)
    ref = materialized_scores(neighbourhood_features(a), neighbourhood_features(b), bx, by)
    out = diff_pm.propagated_scores(a, b, sx, sy, direction=direction, border=border, quirks=quirks, backend=backend)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-9)
    w = torch.rand(ref.shape, dtype=ref.dtype, device=device, generator=g)
    leaves = (a, b, sx, sy)
    for x, y in zip(torch.autograd.grad((ref * w).sum(), leaves), torch.autograd.grad((out * w).sum(), leaves)):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("quirks", FRAMES[:2])
def test_propagate_evaluate_equals_propagate_then_evaluate(device, quirks):
    """The fused layer (function and module) is propagation followed by evaluation of its candidates."""
    g = _gen(device, 7)
    a = torch.rand(1, 3, 10, 13, device=device, generator=g)
    b = torch.rand(1, 3, 10, 13, device=device, generator=g)
    ox = (torch.rand(1, 4, 10, 13, device=device, generator=g) - 0.5) * 8
    oy = (torch.rand(1, 4, 10, 13, device=device, generator=g) - 0.5) * 8
    for direction in ("horizontal", "vertical"):
        cx, cy = propagate(ox, oy, direction=direction, border="zeros")
        ref = evaluate(neighbourhood_features(a, patch_size=5), neighbourhood_features(b, patch_size=5), cx, cy,
                       temperature=10.0, quirks=quirks, scoring="materialize")
        out = propagate_evaluate(a, b, ox, oy, direction=direction, border="zeros", temperature=10.0, patch_size=5,
                                 quirks=quirks)
        mod = PropagateEvaluate(direction=direction, border="zeros", temperature=10.0, patch_size=5, quirks=quirks)
        for r, o, m in zip(ref, out, mod(a, b, ox, oy)):
            torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-5)
            assert torch.equal(o, m)


def test_compiled_backend_needs_cpu():
    a, b, bx, by = _random_case("cpu")
    with pytest.raises(ValueError, match="compiled backend needs CPU float32/float64"):
        patch_scores(a.to(torch.float16), b.to(torch.float16), bx.half(), by.half(), backend="compiled")


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_gradcheck_patch_scores(device, backend):
    a, b, bx, by = _random_case(device, n=1, k=2, ha=4, wa=5, hb=5, wb=4)
    # keep positions away from integers, where the bilinear weights have kinks
    bx = torch.floor(bx) + 0.2 + 0.6 * (bx - torch.floor(bx))
    by = torch.floor(by) + 0.2 + 0.6 * (by - torch.floor(by))
    inputs = tuple(t.requires_grad_(True) for t in (a, b, bx, by))
    assert torch.autograd.gradcheck(lambda *t: patch_scores(*t, patch_size=3, backend=backend, tile_elements=100),
                                    inputs, nondet_tol=1e-10 if device.type == "cuda" else 0.0)


def test_gradcheck_evaluation_and_propagation(device):
    g = _gen(device)
    a = torch.rand(1, 3, 5, 6, dtype=torch.float64, device=device, generator=g)
    b = torch.rand(1, 3, 5, 6, dtype=torch.float64, device=device, generator=g)
    ox = (torch.rand(1, 2, 5, 6, dtype=torch.float64, device=device, generator=g) * 4 - 2).requires_grad_(True)
    oy = (torch.rand(1, 2, 5, 6, dtype=torch.float64, device=device, generator=g) * 4 - 2).requires_grad_(True)
    ev = Evaluation(temperature=10.0, patch_size=3)

    def step(ox, oy):
        px, py = propagate(ox, oy, direction="horizontal")
        dx, dy = ev(a, b, px, py)
        px, py = propagate(dx, dy, direction="vertical")
        return ev(a, b, px, py)

    assert torch.autograd.gradcheck(step, (ox, oy), nondet_tol=1e-10 if device.type == "cuda" else 0.0)


def test_hard_is_argmax_and_soft_at_1e10_is_hard(device):
    a, b, bx, by = _random_case(device, torch.float32, integers=False)
    bx, by = bx.clamp(0.1, b.shape[-1] - 1.1), by.clamp(0.1, b.shape[-2] - 1.1)   # inside B: no exact ties
    ox, oy = torch.arange(a.shape[-1], device=device) - bx, torch.arange(a.shape[-2], device=device).view(-1, 1) - by
    scores = patch_scores(a, b, bx, by)
    hx, hy = select_offsets(scores, ox, oy, mode="hard")
    best = scores.argmax(1, keepdim=True)
    assert torch.equal(hx, ox.gather(1, best)) and torch.equal(hy, oy.gather(1, best))
    sx, sy = select_offsets(1e10 * scores, ox, oy, mode="soft")
    torch.testing.assert_close(sx, hx)
    torch.testing.assert_close(sy, hy)
    ex, ey = Evaluation(mode="hard")(a, b, ox, oy)
    torch.testing.assert_close(ex, hx)
    with pytest.raises(ValueError, match="mode must be one of"):
        select_offsets(scores, ox, oy, mode="argmax")


def test_particle_positions_conventions():
    ox = torch.tensor([[[[0.0, 2.5, -100.0]]]])
    bx, by = particle_positions(ox, torch.zeros_like(ox), (1, 3), (4, 5))
    assert torch.equal(bx, torch.tensor([[[[0.0, 0.0, 4.0]]]]))      # x - dx clamped to [0, Wb - 1]
    assert torch.equal(by, torch.zeros_like(by))
    # reference quirk: normalised by A's size with align_corners=False -> x * Wb / Wa - 0.5
    qx, _ = particle_positions(torch.zeros_like(ox), torch.zeros_like(ox), (1, 3), (1, 6),
                               quirks=("a_frame", "half_pixel"))
    assert torch.allclose(qx, torch.tensor([[[[-0.5, 1.5, 3.5]]]]))
    # y clamped with the width: row 5 of a 7 x 3 image is row 2 (= Wa - 1) for the reference
    _, qy = particle_positions(torch.zeros(1, 1, 7, 3), torch.zeros(1, 1, 7, 3), (7, 3), (7, 3),
                               quirks=("y_clamp_width",))
    assert torch.equal(qy[0, 0, :, 0], torch.tensor([0.0, 1, 2, 2, 2, 2, 2]))


@pytest.mark.parametrize("quirks", FRAMES)
def test_frame_offsets_invert_points_and_clamp_gives_evaluated_points(quirks):
    frame = Frame.from_quirks(quirks)
    g = _gen("cpu", 3)
    dx = (torch.rand(1, 1, 9, 7, dtype=torch.float64, generator=g) - 0.5) * 30
    dy = (torch.rand(1, 1, 9, 7, dtype=torch.float64, generator=g) - 0.5) * 30
    raw = frame.points(dx, dy, (9, 7), (12, 10), evaluated=False)
    back = frame.offsets(*raw, (9, 7), (12, 10))
    torch.testing.assert_close(back[0], dx)
    torch.testing.assert_close(back[1], dy)
    evaluated = frame.points(dx, dy, (9, 7), (12, 10))
    for c, e in zip(frame.evaluated(*raw, (9, 7), (12, 10)), evaluated):
        torch.testing.assert_close(c, e)


# --- reconstruction ------------------------------------------------------------------------------

def test_reconstruct_identity_returns_a(device):
    a = torch.rand(2, 3, 10, 12, device=device, generator=_gen(device))
    ys, xs = torch.meshgrid(torch.arange(10.0, device=device), torch.arange(12.0, device=device), indexing="ij")
    pos = torch.stack((ys, xs)).expand(2, -1, -1, -1)
    out = reconstruct(a, pos)
    torch.testing.assert_close(out, a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(Reconstruction()(a, pos), out)
    # a pure shift within B: positions + (1, 2) reconstructs the shifted image (interior)
    big = torch.rand(1, 3, 20, 20, device=device, generator=_gen(device, 2))
    out = reconstruct(big, pos[:1] + torch.tensor([1.0, 2.0], device=device).view(1, 2, 1, 1))
    torch.testing.assert_close(out[..., 3:-3, 3:-3], big[:, :, 1:11, 2:14][..., 3:-3, 3:-3], rtol=1e-5, atol=1e-5)


def test_gradcheck_reconstruct(device):
    g = _gen(device)
    b = torch.rand(1, 2, 6, 7, dtype=torch.float64, device=device, generator=g).requires_grad_(True)
    pos = torch.rand(1, 2, 5, 5, dtype=torch.float64, device=device, generator=g) * 4 + 0.5
    pos = (torch.floor(pos) + 0.2 + 0.6 * (pos - torch.floor(pos))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda b, p: reconstruct(b, p, patch_size=3), (b, pos),
                                    nondet_tol=1e-10 if device.type == "cuda" else 0.0)


def test_invalid_inputs_raise_value_error():
    img = torch.rand(1, 3, 8, 8)
    off = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"b must have shape \(N, C, H, W\)"):
        reconstruct(img[0], torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="positions must have 2 channels"):
        reconstruct(img, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown quirk 'shared_noise'"):
        reconstruct(img, torch.zeros(1, 2, 8, 8), quirks=("shared_noise",))
    with pytest.raises(ValueError, match="sample_count must be an integer >= 1, got 0"):
        ParticleSampler(sample_count=0)
    with pytest.raises(ValueError, match="mode must be one of 'soft', 'hard', got 'median'"):
        Evaluation(mode="median")
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        Evaluation(temperature=0)
    with pytest.raises(ValueError, match="border must be one of"):
        Propagation(border="mirror")
    with pytest.raises(ValueError, match="offset_x and offset_y must have the same shape"):
        propagate(off, off[:, :2])
    with pytest.raises(ValueError, match="do not fit an image"):
        evaluate(img, img, off[..., :7], off[..., :7])
    with pytest.raises(ValueError, match="b must have 3 channels"):
        patch_scores(img, img[:, :2], off, off)


@pytest.mark.parametrize("bad", [7.5, 8, 0, -3, True, 7.0, "7"])
def test_patch_size_checked_the_same_everywhere(bad):
    """One check (classic_pm's strictness): a positive odd integer, never silently rounded."""
    img = torch.rand(1, 3, 9, 9)
    off = torch.zeros(1, 1, 9, 9)
    calls = [lambda: NeighbourhoodFeatures(patch_size=bad), lambda: neighbourhood_features(img, patch_size=bad),
             lambda: reconstruct(img, torch.zeros(1, 2, 9, 9), patch_size=bad),
             lambda: Reconstruction(patch_size=bad), lambda: Evaluation(patch_size=bad),
             lambda: evaluate(img, img, off, off, patch_size=bad), lambda: patch_scores(img, img, off, off, patch_size=bad),
             lambda: diff_pm.propagated_scores(img, img, off, off, direction="vertical", patch_size=bad),
             lambda: diff_pm.DifferentiablePatchMatch(patch_size=bad)]
    for call in calls:
        with pytest.raises(ValueError, match="patch_size must be a positive odd integer"):
            call()
