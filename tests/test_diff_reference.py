"""Fidelity: ``reference_quirks=True`` against traces of the original DeepPruner DPM code.

The traces (``tests/data/dpm_reference/``, copied from ``shared/reference/dpm``; its README says
how they were made) hold, for three tiny cases built from the built-in pairs and seeds 0 and 1, the
original's particles of iteration 1, its offsets after iteration 1's horizontal evaluation and after
each of its 21 iterations, and its reconstruction. ``torch.manual_seed(seed)`` before the original's
forward pass draws the same numbers as ``torch.Generator().manual_seed(seed)`` here.

Tolerances: offsets within 1e-4 px on at least 99.9% of pixels at every iteration (a candidate pair
whose scores tie to float32 precision can go either way; measured: 0 such pixels in every case),
reconstruction within 1e-5 everywhere.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diff_pm import DifferentiablePatchMatch, propagate_evaluate, sample_particles

DATA = Path(__file__).parent / "data" / "dpm_reference"
CASES = [f"{case}_seed{seed}" for case in ("same_size", "tall", "b_larger") for seed in (0, 1)]


def _load(name):
    z = np.load(DATA / f"dpm_trace_{name}.npz")
    trace = {k: z[k] for k in z.files}
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]  # noqa: E731
    return trace, t(trace["a"]), t(trace["b"]), int(name[-1])


def _agree(x, y, ref_x, ref_y, tol=1e-4):
    return ((np.abs(x - ref_x) <= tol) & (np.abs(y - ref_y) <= tol)).mean()


@pytest.mark.parametrize("name", CASES)
def test_reference_quirks_reproduce_the_original(name):
    trace, a, b, seed = _load(name)
    model = DifferentiablePatchMatch(reference_quirks=True)
    seen = []
    with torch.no_grad():
        positions = model(a, b, generator=torch.Generator().manual_seed(seed),
                          callback=lambda i, p: seen.append(p.clone()))
    size_a, size_b = tuple(a.shape[-2:]), tuple(b.shape[-2:])
    assert len(seen) == 21
    for it, pos in enumerate(seen):
        dx, dy = model.frame.offsets(pos[:, 1:2], pos[:, 0:1], size_a, size_b)
        agree = _agree(dx[0, 0].numpy(), dy[0, 0].numpy(), trace["offset_x"][it], trace["offset_y"][it])
        assert agree >= 0.999, f"iteration {it + 1}: offsets agree on {agree:.4%} of pixels"
    recon = model.reconstruct(b, positions)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(recon, trace["reconstruction"], rtol=0, atol=1e-5)
    # the reconstruction's L1 / MSE against A as the original's (traces.json)
    meta = json.loads((DATA / "traces.json").read_text())[name]
    assert abs(np.abs(recon - trace["a"]).mean() - meta["l1"]) < 1e-6
    assert abs(((recon - trace["a"]) ** 2).mean() - meta["mse"]) < 1e-6


@pytest.mark.parametrize("name", CASES[::2])
def test_first_iteration_layers_reproduce_the_original(name):
    """Iteration 1 step by step: the sampler's particles, then the horizontal propagation + evaluation."""
    trace, a, b, seed = _load(name)
    ha, wa = a.shape[-2:]
    lo_x, lo_y = torch.full((1, 1, ha, wa), -float(wa)), torch.full((1, 1, ha, wa), -float(ha))
    px, py = sample_particles(lo_x, -lo_x, lo_y, -lo_y, generator=torch.Generator().manual_seed(seed),
                              shared_noise=True)
    np.testing.assert_array_equal(px[0].numpy(), trace["particles_x_it1"])
    np.testing.assert_array_equal(py[0].numpy(), trace["particles_y_it1"])
    with torch.no_grad():
        hx, hy = propagate_evaluate(a, b, px, py, direction="horizontal", border="zeros",
                                    quirks=("y_clamp_width", "a_frame", "half_pixel"))
    assert _agree(hx[0, 0].numpy(), hy[0, 0].numpy(), trace["horizontal_x_it1"], trace["horizontal_y_it1"]) >= 0.999
