"""The learning study: splits, checkpoints of every arm, statistics, harness, the registered
feature methods through compare, and a tiny end-to-end study."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import diff_pm
from conftest import REPO
from experiments.data import warp_pair
from experiments.errors import UserError
from experiments.methods.timed import baseline_matches
from experiments.report.metrics import epe
from learning.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from learning.data import (TEST_SOURCES, TRAIN_IMAGES, VALIDATION_IMAGES, check_splits, heldout_sources, load_sample,
                           motion_pair, texture_class, validation_pairs)
from learning.data import test_pairs as make_test_pairs
from learning.features import FeatureMapDPM, LearnedFeatures, feature_config
from learning.harness import evaluate, normalised_set, raw_set
from learning.nets import ConvFeatures
from learning.settings import ARMS, StudySettings, TrainSettings
from learning.study_stats import paired, summary
from learning.train import fit, model_config, training_scope


# --------------------------------------------------------------------------- splits
def test_splits_are_disjoint_by_content():
    train = {n: load_sample(n) for n in TRAIN_IMAGES}
    val = {n: load_sample(n) for n in VALIDATION_IMAGES}
    check_splits(training=train, validation=val, test=heldout_sources())
    with pytest.raises(UserError, match="chelsea"):  # skimage.data.cat() is chelsea.png: caught by content
        check_splits(training={"cat": load_sample("cat")}, test=heldout_sources())
    with pytest.raises(UserError, match="validation image 'clock'"):
        check_splits(training={"clock": load_sample("clock")}, validation={"clock": load_sample("clock")})
    assert set(TEST_SOURCES) <= set(heldout_sources())


def test_validation_and_test_pairs():
    val, test = validation_pairs(48, per_image=1), make_test_pairs(48, extra_per_image=1)
    assert [p.name for p in val] == [f"{n}-w0" for n in VALIDATION_IMAGES]
    assert [p.name for p in test][:5] == ["motorcycle", "astronaut", "coffee", "chelsea", "rocket"]
    assert [p.name for p in test][5:] == [f"{n}-w1" for n in TEST_SOURCES]
    for p in val + test[1:]:  # real motion: no motion scores a fifth of the image or so
        zero = baseline_matches(p.a.shape, p.b.shape, kind="zero")
        assert epe(zero, p.gt, p.valid) > 0.1 * max(p.a.shape[:2])
    again = motion_pair(load_sample("coins"), rng=[0, 1, 0], max_size=48, name="coins-w0")
    np.testing.assert_array_equal(again.b, val[1].b)  # seeded


def test_texture_rule():
    flat = np.full((30, 30, 3), 0.5, np.float32)
    noisy = np.random.default_rng(0).random((30, 30, 3)).astype(np.float32)
    assert texture_class(warp_pair(flat, np.eye(3), name="f")) == "low-texture"
    assert texture_class(warp_pair(noisy, np.eye(3), name="n")) == "textured"


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("arm", ARMS)
def test_checkpoint_round_trip_every_arm(tmp_path, arm):
    s = TrainSettings(arm=arm, net="rf7", steps=2, crop=24, batch=2, anchors=16, iterations=2, seed=3,
                      images=("camera",), threads=1)
    images = {"camera": load_sample("camera")}
    with training_scope(1, "cpu"):
        features = fit(s, images=images)
    features.match_patch = 3
    path = save_checkpoint(tmp_path / "ck.pt", features, model_config(s, iterations=4), seed=3, step=2)
    model, info = load_checkpoint(path, device="cpu")
    assert info["arm"] == arm and info["config"]["train"]["arm"] == arm and info["area"] == 9
    assert info["features"]["kind"] == "conv" and info["features"]["match_patch"] == 3
    assert isinstance(model, FeatureMapDPM) and model.iterations == 4 and model.window == (100.0, 100.0)
    x = torch.rand(1, 3, 12, 13)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), features(x), rtol=0, atol=0)
        # DPM on the feature maps (fused scoring) is DPM with these features (tiled scoring)
        ref = diff_pm.DifferentiablePatchMatch(iterations=4, features=features, temperature=1e10)
        a, b = torch.rand(1, 3, 20, 22), torch.rand(1, 3, 21, 19)
        got = model(a, b, generator=torch.Generator().manual_seed(2))
        want = ref(a, b, generator=torch.Generator().manual_seed(2))
    assert float(((got - want).abs() > 1e-3).float().mean()) < 0.01  # float near-ties aside
    assert (info["learned_temperature"] == 1.0) == (arm == "contrastive")


def test_checkpoint_version_1_still_loads(tmp_path):
    """The format before the arms (format_version 1, LearnedFeatures, no arm) is read as before."""
    feats = LearnedFeatures(channels=4, hidden=0, generator=torch.Generator().manual_seed(0))
    payload = dict(format=CHECKPOINT_FORMAT, format_version=1, state_dict=feats.state_dict(),
                   features=feature_config(feats), config=dict(model=dict(iterations=3)), seed=0, step=5,
                   versions={"torch": str(torch.__version__)}, metrics={})
    torch.save(payload, tmp_path / "v1.pt")
    model, info = load_checkpoint((tmp_path / "v1.pt").read_bytes(), device="cpu", iterations=2)
    assert isinstance(model.features, LearnedFeatures) and model.iterations == 2
    assert info["arm"] is None and info["area"] == 7 and info["step"] == 5


# --------------------------------------------------------------------------- statistics
def test_paired_difference_hand_values():
    rows = []
    for pair, (a, b) in {"p1": (1.0, 2.0), "p2": (2.0, 2.5), "p3": (4.0, 4.0)}.items():
        for seed, noise in ((0, -0.1), (1, 0.1)):  # seeds average out per pair
            rows.append(dict(pair=pair, texture="textured", feature_set="A s0", kind="learned", matcher="pm",
                             seed=seed, train_seed=0, epe=a + noise, median_epe=a, within_1px=0.5, psnr=30.0))
            rows.append(dict(pair=pair, texture="textured", feature_set="B", kind="raw", matcher="pm", seed=seed,
                             train_seed=None, epe=b, median_epe=b, within_1px=0.5, psnr=31.0))
    df = pd.DataFrame(rows)
    p = paired(df, ("A", "pm"), ("B", "pm"))
    d = np.array([-1.0, -0.5, 0.0])
    assert p["n"] == 3 and p["diff"] == pytest.approx(d.mean())
    assert p["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(3))
    assert p["rel"] == pytest.approx(d.mean() / np.mean([2.0, 2.5, 4.0]))
    assert paired(df, ("A", "pm"), ("B", "pm"), metric="psnr")["diff"] == pytest.approx(-1.0)
    s = summary(df).set_index("group")
    assert s.loc["A", "epe"] == pytest.approx(7 / 3) and s.loc["A", "n"] == 3
    assert s.loc["A", "epe_spread"] == pytest.approx(np.std([7 / 3 - 0.1, 7 / 3 + 0.1], ddof=1))
    assert s.loc["B", "epe_spread"] == 0.0


# --------------------------------------------------------------------------- harness
def test_harness_rows_and_baselines():
    pairs = validation_pairs(32, per_image=1)[:2]
    df = evaluate([raw_set(3), normalised_set(5, eps=0.01)], pairs, split="t", seeds=dict(pm=[0, 1]), threads=1,
                  pm_iterations=2, progress=False)
    # per pair: zero once, random per seed, then 2 feature sets x (exact once + pm twice)
    assert len(df) == 2 * (1 + 2 + 2 * 3)
    zero = df[df["matcher"] == "zero"].set_index("pair")["epe"]
    for p in pairs:
        assert zero[p.name] == pytest.approx(epe(baseline_matches(p.a.shape, p.b.shape, kind="zero"), p.gt, p.valid))
    texture = df.groupby("pair")["texture"].agg(set)
    assert all(texture[p.name] == {texture_class(p)} for p in pairs)  # one class per pair, the rule's
    assert df[df["kind"] == "normalised"]["area"].eq(5).all() and df["epe"].notna().all()
    assert (df["median_epe"] <= df["epe"] * 10).all() and df["within_1px"].between(0, 1).all()


# --------------------------------------------------------------------------- the commands
def test_compare_checkpoint_adds_the_feature_methods(tmp_path):
    """compare --checkpoint: dpm-learned, pm-learned and pm-normalised (the checkpoint's area)."""
    feats = ConvFeatures(net="rf7", channels=4, hidden=4, match_patch=3, generator=torch.Generator().manual_seed(0))
    s = TrainSettings(arm="contrastive", net="rf7")
    ckpt = save_checkpoint(tmp_path / "c.pt", feats, model_config(s, iterations=21), seed=0, step=0)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "experiments", "compare", "--data", "chelsea", "--max-size", "40",
                          "--pm-iterations", "2", "--dpm-iterations", "2", "--threads", "1", "--exact-max-pixels",
                          "0", "--checkpoint", str(ckpt), "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(out / "metrics.csv")
    assert {"pm", "pm-learned", "pm-normalised", "dpm-learned"} <= set(df["method"])
    assert sorted(df[df["method"] == "pm-learned"]["iteration"]) == [1, 2]
    import json

    settings = json.loads((out / "config.json").read_text())["settings"]
    assert settings["pm-learned"]["features"] == "learned" and settings["pm-normalised"]["features"] == "normalised"
    res = subprocess.run([sys.executable, "-m", "experiments", "compare", "--methods", "pm-learned", "--out",
                          str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "error: --methods pm-learned needs --checkpoint PATH (a checkpoint written by `python -m experiments "
        "train`, e.g. data/dpm_learned.pt)"]


def test_tiny_study_end_to_end(tmp_path):
    """Every phase on a toy budget: choices on validation, final seeds, test table, report, checkpoint."""
    from learning.study import run_study

    st = StudySettings(out=str(tmp_path / "study"), size=32, steps=2, snapshots=(0.5, 1.0), arms=("contrastive", "dpm-ce"),
                       nets=("rf7",), match_patches=(1, 3), train_seeds=(0, 1), eval_seeds=(0,), dpm_seeds=(0,),
                       val_seeds=(0,), val_per_image=1, test_extra=0, eps_choices=(0.01,), batch=2, crop=24, threads=1,
                       progress=False, save_best=str(tmp_path / "best_copy.pt"))
    report = run_study(st, log=lambda m: None)
    text = report.read_text()
    for needle in ("### 1.", "### 2.", "### 3.", "### Target", "## Choices made on validation", "zero", "random"):
        assert needle in text
    test = pd.read_csv(tmp_path / "study" / "test.csv")
    assert set(test["split"]) == {"test"} and set(test["pair"]) == {"motorcycle", "astronaut", "coffee", "chelsea",
                                                                    "rocket"}
    assert {"exact", "pm", "dpm-keep", "dpm-reference", "zero", "random"} == set(test["matcher"])
    assert set(test[test["kind"] == "learned"]["train_seed"]) == {0, 1}
    val = pd.read_csv(tmp_path / "study" / "validation.csv")
    assert not set(val["pair"]) & set(test["pair"])
    import json

    meta = json.loads((tmp_path / "study" / "choices.json").read_text())
    chosen = meta["choices"][meta["best_arm"]]
    ck = torch.load(tmp_path / "best_copy.pt", weights_only=True)  # the arm, seed and step chosen on validation
    assert (ck["arm"], ck["seed"], ck["step"]) == (meta["best_arm"], meta["best_seed"], chosen["step"])
    assert (ck["features"]["net"], ck["features"]["match_patch"]) == (chosen["net"], chosen["match_patch"])
    best = torch.load(tmp_path / "study" / "best.pt", weights_only=True)["state_dict"]
    assert best.keys() == ck["state_dict"].keys() and all(torch.equal(best[k], ck["state_dict"][k]) for k in best)
    load_checkpoint(tmp_path / "best_copy.pt", device="cpu")  # and it loads as a model
    assert (tmp_path / "study" / "test_results.png").stat().st_size > 10_000
    # a rerun reuses the trained checkpoints
    seen = []
    run_study(st, log=seen.append)
    assert any("reused" in m for m in seen)


def test_learn_study_bad_option_one_line():
    res = subprocess.run([sys.executable, "-m", "experiments", "learn-study", "--steps", "0"], cwd=REPO,
                         capture_output=True, text=True)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and err[0].startswith("error:") and "--steps" in err[0]
