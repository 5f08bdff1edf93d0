"""The earlier learnt DPM features (LearnedFeatures), the recon loss and the ``train`` command.

All tests run on tiny pairs on CPU (a few seconds in total apart from the CLI smoke runs). The
arms, nets and the study are tested in ``test_learning_*.py``.
"""
from __future__ import annotations

import argparse
import csv
import inspect
import math

import numpy as np
import pytest
import torch

import diff_pm
from experiments.errors import UserError
from learning.checkpoint import load_checkpoint, save_checkpoint
from learning.cli import add_arguments
from learning.data import PairSampler, heldout_sources, load_sample, stack_pairs
from learning.features import REFERENCE_TEMPERATURE, SEARCH_DEFAULTS, LearnedFeatures, build_model, count_parameters
from learning.loss import reconstruction_loss
from learning.settings import TrainSettings
from learning.arms import build_features, train_step
from learning.train import run


@pytest.fixture(scope="module")
def camera():
    return load_sample("camera")


def tiny_batch(image, n=2, size=24, seed=0):
    """``n`` warped pairs of ``size x size`` crops of ``image`` (a training image), as tensors."""
    rng = np.random.default_rng(seed)
    sampler = PairSampler([image], size, rng)
    return stack_pairs([sampler.pair() for _ in range(n)], "cpu")


def tiny_model(iterations=2, seed=0, temperature=20.0):
    features = LearnedFeatures(temperature=temperature, generator=torch.Generator().manual_seed(seed))
    return build_model(features, iterations=iterations, temperature=1.0)


def loss_at(model, batch, seed=0):
    a, b, gt, valid = batch
    return reconstruction_loss(a, b, model(a, b, generator=torch.Generator().manual_seed(seed)), valid)


# --------------------------------------------------------------------------- features and model
def test_features_shape_size_and_bad_input():
    f = LearnedFeatures()
    assert f(torch.rand(2, 3, 10, 12)).shape == (2, 16, 10, 12)
    assert 1000 < count_parameters(f) <= 5000  # "a handful of thousand parameters at most"
    assert math.isclose(f.temperature, 50.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        f(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="temperature"):
        LearnedFeatures(temperature=0.0)
    with pytest.raises(ValueError, match="odd"):
        LearnedFeatures(patch_size=4)


def test_features_seeded_init():
    a = LearnedFeatures(generator=torch.Generator().manual_seed(3)).state_dict()
    b = LearnedFeatures(generator=torch.Generator().manual_seed(3)).state_dict()
    c = LearnedFeatures(generator=torch.Generator().manual_seed(4)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["proj.weight"], c["proj.weight"])


def test_gradients_reach_every_parameter(camera):
    """Through DPM (soft, moderate temperature) and the voting reconstruction: finite, non-zero."""
    model = tiny_model()
    loss = loss_at(model, tiny_batch(camera))
    loss.backward()
    params = dict(model.features.named_parameters())
    assert set(params) >= {"proj.weight", "proj.bias", "mlp_in.weight", "mlp_in.bias", "mlp_out.weight",
                           "mlp_out.bias", "log_temperature"}
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_epe_term(camera):
    """The EPE term is added in pixels / longer side, reported in pixels, and carries gradient."""
    a, b, gt, valid = tiny_batch(camera)
    model = tiny_model()
    pos = model(a, b, generator=torch.Generator().manual_seed(0))
    plain, recon, epe = reconstruction_loss(a, b, pos, valid, gt=gt, parts=True)
    total, recon2, epe2 = reconstruction_loss(a, b, pos, valid, gt=gt, epe_weight=2.0, parts=True)
    assert recon == pytest.approx(recon2) and epe == pytest.approx(epe2) and epe > 0
    assert float(total.detach()) == pytest.approx(recon + 2.0 * epe / 24, rel=1e-5)
    assert float(plain.detach()) == pytest.approx(recon)
    total.backward()
    assert float(model.features.proj.weight.grad.abs().sum()) > 0


def test_reference_temperature_gives_no_useful_gradient(camera):
    """At 1e10 the softmax is one-hot: the features get no gradient. Why we train soft.

    Exception: candidates whose points are clamped to the same border point of B tie exactly, and a
    tie passes gradient at any temperature; with the full search range (the default) such ties are
    common near the border, so the property is checked where they are rare (only a neighbour's
    particle handed over by propagation can lie a pixel outside B): the inside range, and the full
    range with its sampled particles mirrored into B (``outside="reflect"``: build_model passes it
    through).
    """
    for search in (dict(search_range="inside"), dict(outside="reflect")):
        features = LearnedFeatures(temperature=20.0, generator=torch.Generator().manual_seed(0))
        model = build_model(features, iterations=2, temperature=REFERENCE_TEMPERATURE, **search)
        assert model.search_range == search.get("search_range", "full") and model.outside == search.get(
            "outside", "clamp")
        loss_at(model, tiny_batch(camera)).backward()
        grad = model.features.proj.weight.grad
        assert grad is None or float(grad.abs().max()) < 1e-6
    soft = tiny_model()
    loss_at(soft, tiny_batch(camera)).backward()
    assert float(soft.features.proj.weight.grad.abs().max()) > 1e-4   # what training relies on


def test_one_step_lowers_the_loss(camera):
    """The recon arm on the earlier features: a small step on a fixed batch, same particles before
    and after, lowers the loss (the recon loss with the EPE term, as the arm optimises it)."""
    from learning.arms import arm_loss

    batch = tiny_batch(camera, n=2, size=32, seed=1)
    s = TrainSettings(arm="recon", net="linear7", iterations=3, crop=32, temperature=20.0)
    features = build_features(s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = float(arm_loss(s, features, batch, generator=torch.Generator().manual_seed(5))[0])
    opt = torch.optim.Adam(features.parameters(), lr=1e-3)
    returned = train_step(s, features, opt, batch, generator=torch.Generator().manual_seed(5))["loss"]
    with torch.no_grad():
        after = float(arm_loss(s, features, batch, generator=torch.Generator().manual_seed(5))[0])
    assert returned == pytest.approx(before, rel=1e-6)
    assert after < before


def test_loss_is_masked_and_zero_for_identity(camera):
    a, b, gt, valid = tiny_batch(camera)
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    identity = torch.stack((ys, xs)).expand(2, 2, 24, 24)
    assert float(reconstruction_loss(a, a, identity, torch.ones_like(valid))) < 1e-6
    # ground-truth positions reconstruct B's pixels of A's points: far better than identity
    assert float(reconstruction_loss(a, b, gt, valid)) < float(reconstruction_loss(a, b, identity, valid))
    # invalid pixels do not count
    bad = a.clone()
    bad[valid.expand_as(a) == 0] = 1e3
    assert float(reconstruction_loss(bad, a, identity, valid)) < 1e-6


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path, camera):
    model = tiny_model(seed=2)
    with torch.no_grad():  # move away from the initialisation
        for p in model.features.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(9)))
    config = dict(model=dict(iterations=3, evaluation="soft", temperature=1.0, sample_count=1, window=[100, 100],
                             patch_size=7, keep_current=False), train=dict(lr=1e-3))
    path = save_checkpoint(tmp_path / "sub" / "ck.pt", model, config, seed=7, step=12, metrics=dict(psnr=20.0))
    assert path.stat().st_size < 50_000
    loaded, info = load_checkpoint(path, device="cpu")
    assert isinstance(loaded, diff_pm.DifferentiablePatchMatch)
    assert not loaded.training
    assert info["seed"] == 7 and info["step"] == 12 and info["iterations"] == 3
    assert info["config"]["train"]["lr"] == 1e-3 and info["metrics"]["psnr"] == 20.0
    assert info["versions"]["torch"] == torch.__version__
    a, b, _, _ = tiny_batch(camera)
    model.iterations = 3
    with torch.no_grad():
        p1 = model(a, b, generator=torch.Generator().manual_seed(1))
        p2 = loaded(a, b, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    again, info2 = load_checkpoint(path, device="cpu", iterations=5, temperature=REFERENCE_TEMPERATURE)
    assert again.iterations == 5 and info2["iterations"] == 5
    assert again.horizontal.temperature == again.vertical.temperature == REFERENCE_TEMPERATURE


def test_checkpoint_rejects_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dpm-learned checkpoint"):
        load_checkpoint(tmp_path / "other.pt", device="cpu")
    with pytest.raises(ValueError, match="LearnedFeatures or ConvFeatures"):
        save_checkpoint(tmp_path / "x.pt", diff_pm.DifferentiablePatchMatch(), dict(model={}), seed=0, step=0)


# --------------------------------------------------------------------------- data
def test_heldout_sources_are_the_builtin_images():
    """What test_splits_are_disjoint_by_content (test_learning_study.py) keeps training away from."""
    assert {"astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right"} <= set(heldout_sources())


def test_pair_sampler_seeded_and_consistent(camera):
    s1, s2 = (PairSampler([camera], 32, np.random.default_rng(4)) for _ in range(2))
    p1, p2 = s1.pair(), s2.pair()
    np.testing.assert_array_equal(p1.b, p2.b)
    assert p1.a.shape == p1.b.shape == (32, 32, 3)
    assert 0.5 < p1.valid.mean() <= 1.0
    with pytest.raises(UserError, match="--crop"):
        PairSampler([camera[:20, :20]], 32, np.random.default_rng(0))


# --------------------------------------------------------------------------- the command
def _args(tmp_path, name, *extra):
    """The settings of ``train`` options, as the command line converts them (no sys.argv read)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / name), "--steps", "3", "--crop", "24", "--batch", "2",
                              "--iterations", "2", "--eval-size", "32", "--eval-every", "2", "--threads", "1",
                              "--no-progress", "--images", "camera", "brick", "camera", "--anchors", "32", *extra])
    settings = TrainSettings.from_args(args, command="test")
    assert settings.images == ("camera", "brick") and settings.steps == 3
    assert settings.final_eval == ("--no-final-eval" not in extra)
    # every option is a field and every field but the record of the command is an option
    assert {f for f in vars(args)} == set(TrainSettings.__dataclass_fields__) - {"command"}
    return settings


def test_training_reproducible_with_fixed_seed(tmp_path):
    assert run(_args(tmp_path, "r1", "--no-final-eval")) == 0
    assert run(_args(tmp_path, "r2", "--no-final-eval")) == 0
    assert run(_args(tmp_path, "r3", "--no-final-eval", "--seed", "1")) == 0
    sd = [torch.load(tmp_path / r / "dpm_learned.pt", weights_only=True)["state_dict"] for r in ("r1", "r2", "r3")]
    assert all(torch.equal(sd[0][k], sd[1][k]) for k in sd[0])
    assert not torch.equal(sd[0]["convs.0.weight"], sd[2]["convs.0.weight"])
    logs = [list(csv.DictReader(open(tmp_path / r / "train_log.csv"))) for r in ("r1", "r2")]
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]


def test_cli_smoke_run(tmp_path):
    """`python -m experiments train` end to end on tiny pairs (routed through the experiments CLI)."""
    from experiments.cli import main

    out = tmp_path / "smoke"
    code = main(["train", "--out", str(out), "--steps", "3", "--crop", "24", "--batch", "2", "--iterations", "2",
                 "--eval-size", "32", "--eval-every", "2", "--eval-iterations", "2", "--threads", "1",
                 "--no-progress", "--images", "camera", "brick", "--arm", "dpm-ce", "--net", "rf7", "--anchors", "32"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["step"]) for r in rows if r["kind"] == "train"] == [1, 2, 3]
    held = [r for r in rows if r["kind"] == "heldout"]  # on the validation pairs
    assert {int(r["step"]) for r in held} == {2, 3} and {r["mode"] for r in held} == {"pm", "dpm"}
    assert all(math.isfinite(float(r["loss"])) for r in rows if r["kind"] == "train")
    assert {r["mode"] for r in rows if r["kind"] == "baseline"} == {"pm"}
    import matplotlib.image

    png = matplotlib.image.imread(out / "training.png")
    assert png.shape[0] > 300 and png.shape[1] > 500
    import pandas as pd

    final = pd.read_csv(out / "final_eval.csv")
    assert set(final["method"]) == {"pm", "pm-learned", "dpm", "dpm-learned", "dpm-learned-soft"}
    assert set(final["iteration"]) == {1, 2}
    assert final[["psnr", "epe", "within_1px"]].notna().all().all()
    model, info = load_checkpoint(out / "dpm_learned.pt", device="cpu")
    assert info["step"] == 3 and info["iterations"] == 2 and "final" in info["metrics"]
    assert info["config"]["train"]["images"] == ["camera", "brick"] and info["arm"] == "dpm-ce"


@pytest.mark.parametrize("bad, message", [(["--crop", "4"], "--crop"), (["--images", "nonexistent"], "nonexistent"),
                                          (["--images", "chelsea"], "never overlap"), (["--lr", "-1"], "--lr"),
                                          (["--match-patch", "2"], "--match-patch"), (["--arm", "x"], "--arm")])
def test_cli_bad_options_one_line_error(tmp_path, capsys, bad, message):
    from experiments.cli import main

    code = main(["train", "--out", str(tmp_path / "bad"), "--steps", "1", "--no-progress", *bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_search_defaults_are_the_fixed_dpm_defaults():
    """dpm-learned searches as dpm does: SEARCH_DEFAULTS equals DifferentiablePatchMatch's own
    defaults for those options (a changed model default must be a deliberate change here too)."""
    sig = inspect.signature(diff_pm.DifferentiablePatchMatch.__init__).parameters
    assert {k: sig[k].default for k in SEARCH_DEFAULTS} == {**SEARCH_DEFAULTS, "window": tuple(SEARCH_DEFAULTS["window"])}
