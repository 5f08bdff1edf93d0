"""Standard correspondence datasets, read as they are distributed, as the suite's pairs.

Every kind of ground truth is converted to the one convention of :mod:`experiments.data.pairs`:
``gt[y, x] = (y_B, x_B)``, float32 absolute pixel coordinates in B, NaN where ``valid`` is False
(no ground truth, or a match outside B's frame). ``pair.info["dataset"]`` names the kind and
``pair.masks["noc"]`` (bool, A's shape) marks the pixels not occluded in B where the dataset says.

Kinds (``KIND:PATH`` in :func:`resolve_dataset`), files and conversions:

* ``middlebury``: ``SCENE/im0.png`` -> ``SCENE/im1.png``, disparity ``disp0.pfm`` (2014, 2021) or
  ``disp0GT.pfm`` (MiddEval3); match ``(y, x - d)``, non-finite d invalid; ``mask0nocc.png``
  where present: 255 = non-occluded (``noc``), 128 = occluded, 0 = unknown (invalid).
* ``sintel`` (clean pass), ``sintel-final``: ``training/PASS/SCENE/frame_i.png`` ->
  ``frame_{i+1}.png``, flow ``training/flow/SCENE/frame_i.flo``; match ``(y + v, x + u)``;
  ``training/occlusions/SCENE/frame_i.png``: nonzero = occluded.
* ``kitti-flow``: ``training/image_2/NNNNNN_10.png`` -> ``NNNNNN_11.png``, flow
  ``flow_occ/NNNNNN_10.png`` (16-bit: u = (R - 2^15) / 64, v = (G - 2^15) / 64, B = valid);
  ``flow_noc/``'s valid pixels are the ``noc`` mask.
* ``kitti-stereo``: ``training/image_2/NNNNNN_10.png`` -> ``image_3/NNNNNN_10.png``, disparity
  ``disp_occ_0/NNNNNN_10.png`` (16-bit, d = value / 256, 0 = invalid); match ``(y, x - d)``;
  ``disp_noc_0/``'s valid pixels are the ``noc`` mask.
* ``hpatches``: ``SEQ/1.ppm`` -> ``SEQ/k.ppm`` (k = 2..6, sizes may differ), ``SEQ/H_1_k`` maps
  (x, y, 1) of image 1 to image k; valid where the match lands inside B.
* ``deeppruner``: ``BASE/image_1/*`` -> ``BASE/image_2/*`` (:func:`experiments.pairs.scan_folder`),
  no ground truth, names as ``--data BASE`` gives them.

Files are read by :mod:`experiments.data.readers`. Scanning a dataset only lists its layout and
checks that the ground-truth files exist; ``PairSource.load`` decodes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from .folders import folder_pair, name_mismatch_note, read_pair_images, scan_folder
from .pairs import (Pair, PairSource, correspondence_from_matrix, displacement_to_gt, resize_pair,
                    safe_name)
from .readers import (_check_shape, _decode, _read_mask, read_flo, read_homography,
                      read_kitti_disparity, read_kitti_flow, read_pfm)


KINDS = ("middlebury", "sintel", "sintel-final", "kitti-flow", "kitti-stereo", "hpatches",
         "deeppruner")


_MIDDLEBURY_GT = ("disp0GT.pfm", "disp0.pfm")  # MiddEval3 first, then 2014 / 2021


_SINTEL_FRAME = re.compile(r"frame_(\d+)\.png")


_HPATCHES_IMAGE = re.compile(r"(\d+)\.ppm")


_KITTI_A = re.compile(r"(\d+)_10\.png")


# --------------------------------------------------------------------------- conversions
# --------------------------------------------------------------------------- ground truth checks
#: Below this fraction of A's pixels with ground truth, loading a pair prints a note (and the
#: report says so); at zero it is an error.
MIN_VALID_FRACTION = 0.05


def _checked(pair: Pair, values: np.ndarray, what: str, log=None) -> Pair:
    """``pair`` (native size) after the checks every dataset pair passes: ground truth that covers
    none of A's pixels is a one-line :class:`UserError` naming the file and the likely cause;
    under :data:`MIN_VALID_FRACTION` a one-line note goes to ``log``. The range of the dataset's
    values (``what``: e.g. "disparity", "flow length"; ``values``: the known ones, in pixels) and
    the valid fraction go into ``pair.info`` (and so into config.json)."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    span = (float(finite.min()), float(finite.max())) if finite.size else None
    frac = float(pair.valid.mean())
    pair.info.update(gt_values=what, gt_range=None if span is None else [round(v, 4) for v in span],
                     gt_valid_fraction=round(frac, 6))
    (ha, wa), (hb, wb) = pair.a.shape[:2], pair.b.shape[:2]
    stated = (f"{finite.size} known {what} values from {span[0]:g} to {span[1]:g} px"
              if span else f"no finite {what} value")
    if frac == 0:
        cause = ("every match falls outside B's " f"{wb} x {hb} pixels: values out of range or on "
                 "another scale?" if span else "the file holds no ground truth")
        raise UserError(f"{pair.info.get('file_gt', pair.name)}: ground truth is valid on none of "
                        f"A's {wa} x {ha} pixels ({stated}; {cause}); check the file or remove the pair")
    if frac < MIN_VALID_FRACTION and log is not None:
        log(f"note: {pair.info.get('file_gt', pair.name)}: ground truth valid on only {frac:.1%} of "
            f"A's pixels ({stated}); its metrics rest on few pixels")
    return pair


# --------------------------------------------------------------------------- Middlebury
def _is_middlebury_scene(d: Path) -> bool:
    return (d / "im0.png").is_file() and (d / "im1.png").is_file()


def _subdirs(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _middlebury_layout(path: Path) -> tuple[list[Path], list[Path]]:
    """``(scenes, holders)``: PATH itself or its sub-folders when they are scenes; else the
    sub-folders that hold scenes (``training*`` ones preferred). Both empty: no Middlebury here."""
    if _is_middlebury_scene(path):
        return [path], []
    scenes = [d for d in _subdirs(path) if _is_middlebury_scene(d)]
    if scenes:
        return scenes, []
    holders = [d for d in _subdirs(path) if any(_is_middlebury_scene(s) for s in _subdirs(d))]
    training = [d for d in holders if d.name.lower().startswith("training")]
    return [], training or holders


def _middlebury_scenes(path: Path) -> list[Path]:
    """Scene folders: PATH itself, its sub-folders, or those of its one holder of scenes."""
    scenes, holders = _middlebury_layout(path)
    if scenes:
        return scenes
    if len(holders) > 1:
        raise UserError(f"{path} holds several sets of Middlebury scenes "
                        f"({', '.join(d.name for d in holders)}); point --data at one of them, "
                        f"e.g. middlebury:{holders[0]}")
    if holders:
        return [d for d in _subdirs(holders[0]) if _is_middlebury_scene(d)]
    raise UserError(f"no Middlebury scenes in {path}: expected SCENE/im0.png, SCENE/im1.png and "
                    "SCENE/disp0.pfm (2014, 2021) or SCENE/disp0GT.pfm (MiddEval3)")


def _middlebury(path: Path, log=None) -> list[PairSource]:
    sources = []
    for scene in _middlebury_scenes(path):
        gt_path = next((scene / n for n in _MIDDLEBURY_GT if (scene / n).is_file()), None)
        if gt_path is None:
            raise UserError(f"{scene} has no ground truth: missing {scene / 'disp0.pfm'} "
                            "(2014, 2021) or disp0GT.pfm (MiddEval3 training)")
        name = f"middlebury/{scene.name}"
        sources.append(PairSource(
            name, str(scene), lambda m, s=scene, g=gt_path, n=name: _load_middlebury(s, g, n, m, log=log)))
    return sources


def _load_middlebury(scene: Path, gt_path: Path, name: str, max_size: int | None, log=None) -> Pair:
    pa, pb = scene / "im0.png", scene / "im1.png"
    a, b, bad = read_pair_images(pa, pb, log=log)
    disp = read_pfm(gt_path)
    _check_shape(disp, a.shape[:2], gt_path, pa)
    known = np.isfinite(disp)
    masks = {}
    mask_path = scene / "mask0nocc.png"
    if mask_path.is_file():
        m = _read_mask(mask_path)
        _check_shape(m, a.shape[:2], mask_path, pa)
        known &= m != 0  # 0 = unknown
        masks["noc"] = m == 255  # 128 = occluded
    gt, valid = displacement_to_gt(np.zeros_like(disp), -np.where(known, disp, 0), known,
                                   b.shape[:2])
    info = dict(dataset="middlebury", gt="disparity: x_B = x_A - d, y_B = y_A",
                file_a=str(pa), file_b=str(pb), file_gt=str(gt_path))
    source = f"Middlebury stereo {scene.name} (A = im0 left, B = im1 right)"
    pair = Pair(name, a, b, gt, valid, source, info, masks=masks, nonfinite_pixels=bad)
    return resize_pair(_checked(pair, np.where(known, disp, np.nan), "disparity", log), max_size)


# --------------------------------------------------------------------------- MPI-Sintel
def _training(path: Path, marker: str) -> Path:
    """``PATH/training`` when PATH is the dataset root, else PATH (already ``training``)."""
    t = path / "training"
    return t if t.is_dir() and not (path / marker).is_dir() else path


def _sintel(path: Path, render_pass: str, log=None) -> list[PairSource]:
    root = _training(path, render_pass)
    images, flows, occ = root / render_pass, root / "flow", root / "occlusions"
    if not images.is_dir():
        raise UserError(f"{path} has no training/{render_pass}/ folder; expected MPI-Sintel's "
                        f"training/{render_pass}/SCENE/frame_NNNN.png")
    if not flows.is_dir():
        raise UserError(f"{root} has no flow/ folder (the ground truth SCENE/frame_NNNN.flo)")
    sources = []
    for scene in _subdirs(images):
        frames = {}
        for p in scene.iterdir():
            m = _SINTEL_FRAME.fullmatch(p.name)
            if m:
                frames[int(m.group(1))] = p
        for i in sorted(frames):
            if i + 1 not in frames:
                continue
            pa, pb = frames[i], frames[i + 1]
            flo = flows / scene.name / f"{pa.stem}.flo"
            if not flo.is_file():
                raise UserError(f"missing ground truth {flo} for {pa}")
            occ_path = occ / scene.name / pa.name if occ.is_dir() else None
            if occ_path is not None and not occ_path.is_file():
                raise UserError(f"missing occlusion mask {occ_path} for {pa} (the occlusions/ "
                                "folder is incomplete; extract it again or remove it)")
            name = f"sintel-{render_pass}/{scene.name}/{i:04d}"
            sources.append(PairSource(
                name, f"{pa} | {pb}",
                lambda m, pa=pa, pb=pb, f=flo, o=occ_path, n=name, r=render_pass:
                _load_sintel(pa, pb, f, o, n, r, m, log=log)))
    if not sources:
        raise UserError(f"no frame pairs in {images}: expected SCENE/frame_0001.png, "
                        "SCENE/frame_0002.png ...")
    return sources


def _load_sintel(pa: Path, pb: Path, flo: Path, occ_path: Path | None, name: str,
                 render_pass: str, max_size: int | None, log=None) -> Pair:
    a, b, bad = read_pair_images(pa, pb, log=log)
    flow = read_flo(flo)
    _check_shape(flow, a.shape[:2], flo, pa)
    u, v = flow[:, :, 0], flow[:, :, 1]
    known = np.isfinite(u) & np.isfinite(v)
    gt, valid = displacement_to_gt(np.where(known, v, 0), np.where(known, u, 0), known,
                                   b.shape[:2])
    masks = {}
    if occ_path is not None:
        occ = _decode(occ_path, "occlusion mask")
        _check_shape(occ, a.shape[:2], occ_path, pa)
        masks["noc"] = ~(occ.any(axis=2) if occ.ndim == 3 else occ != 0)
    info = dict(dataset="sintel" if render_pass == "clean" else "sintel-final",
                gt="flow (u, v): x_B = x_A + u, y_B = y_A + v",
                file_a=str(pa), file_b=str(pb), file_gt=str(flo))
    source = f"MPI-Sintel {render_pass} pass {pa.parent.name} {pa.stem} -> {pb.stem}"
    pair = Pair(name, a, b, gt, valid, source, info, masks=masks, nonfinite_pixels=bad)
    return resize_pair(_checked(pair, np.where(known, np.hypot(u, v), np.nan), "flow length", log), max_size)


# --------------------------------------------------------------------------- KITTI 2015
def _kitti(path: Path, task: str, log=None) -> list[PairSource]:
    root = _training(path, "image_2")
    left = root / "image_2"
    if task == "flow":
        gt_dir, noc_dir, other = root / "flow_occ", root / "flow_noc", left
    else:
        gt_dir, noc_dir, other = root / "disp_occ_0", root / "disp_noc_0", root / "image_3"
    for d in (left, other, gt_dir):
        if not d.is_dir():
            raise UserError(f"{path} has no {d.name}/ folder; expected KITTI 2015's "
                            f"training/{d.name}/ (from data_scene_flow.zip)")
    kind = f"kitti-{task}"
    sources = []
    for pa in sorted(left.iterdir(), key=lambda p: p.name):
        m = _KITTI_A.fullmatch(pa.name)
        if not m:
            continue
        pb = left / f"{m.group(1)}_11.png" if task == "flow" else other / pa.name
        gt_path = gt_dir / pa.name
        for p, what in ((pb, "image"), (gt_path, "ground truth")):
            if not p.is_file():
                raise UserError(f"missing {what} {p} for {pa}")
        noc_path = noc_dir / pa.name if noc_dir.is_dir() else None
        if noc_path is not None and not noc_path.is_file():
            raise UserError(f"missing ground truth {noc_path} for {pa} (the {noc_dir.name}/ "
                            "folder is incomplete; extract it again or remove it)")
        name = f"{kind}/{m.group(1)}"
        sources.append(PairSource(name, f"{pa} | {pb}",
                                  lambda mx, pa=pa, pb=pb, g=gt_path, o=noc_path, n=name, t=task:
                                  _load_kitti(pa, pb, g, o, n, t, mx, log=log)))
    if not sources:
        raise UserError(f"no pairs in {left}: expected NNNNNN_10.png images")
    return sources


def _load_kitti(pa: Path, pb: Path, gt_path: Path, noc_path: Path | None, name: str, task: str,
                max_size: int | None, log=None) -> Pair:
    a, b, bad = read_pair_images(pa, pb, log=log)
    masks = {}
    if task == "flow":
        flow, known = read_kitti_flow(gt_path)
        _check_shape(flow, a.shape[:2], gt_path, pa)
        gt, valid = displacement_to_gt(flow[:, :, 1], flow[:, :, 0], known, b.shape[:2])
        values, what = np.where(known, np.hypot(flow[:, :, 0], flow[:, :, 1]), np.nan), "flow length"
        if noc_path is not None:
            noc_flow, noc = read_kitti_flow(noc_path)
            _check_shape(noc_flow, a.shape[:2], noc_path, pa)
            masks["noc"] = noc
        desc, source = "flow (u, v): x_B = x_A + u, y_B = y_A + v", "KITTI 2015 flow"
    else:
        disp, known = read_kitti_disparity(gt_path)
        _check_shape(disp, a.shape[:2], gt_path, pa)
        gt, valid = displacement_to_gt(np.zeros_like(disp), -disp, known, b.shape[:2])
        values, what = np.where(known, disp, np.nan), "disparity"
        if noc_path is not None:
            noc_disp, noc = read_kitti_disparity(noc_path)
            _check_shape(noc_disp, a.shape[:2], noc_path, pa)
            masks["noc"] = noc
        desc, source = "disparity: x_B = x_A - d, y_B = y_A", "KITTI 2015 stereo"
    info = dict(dataset=f"kitti-{task}", gt=desc, file_a=str(pa), file_b=str(pb),
                file_gt=str(gt_path))
    source = f"{source} {pa.name} -> {pb.parent.name}/{pb.name}"
    pair = Pair(name, a, b, gt, valid, source, info, masks=masks, nonfinite_pixels=bad)
    return resize_pair(_checked(pair, values, what, log), max_size)


# --------------------------------------------------------------------------- HPatches
def _is_hpatches_sequence(d: Path) -> bool:
    return (d / "1.ppm").is_file()


def _hpatches(path: Path, log=None) -> list[PairSource]:
    seqs = [path] if _is_hpatches_sequence(path) else [
        d for d in _subdirs(path) if _is_hpatches_sequence(d)]
    sources = []
    for seq in seqs:
        targets = sorted(int(m.group(1)) for p in seq.iterdir()
                         if (m := _HPATCHES_IMAGE.fullmatch(p.name)) and int(m.group(1)) > 1)
        for k in targets:
            h_path = seq / f"H_1_{k}"
            if not h_path.is_file():
                raise UserError(f"missing ground truth {h_path} for {seq / f'{k}.ppm'}")
            name = f"hpatches/{seq.name}/1-{k}"
            sources.append(PairSource(name, f"{seq / '1.ppm'} | {seq / f'{k}.ppm'}",
                                      lambda m, s=seq, k=k, n=name: _load_hpatches(s, k, n, m, log=log)))
    if not sources:
        raise UserError(f"no HPatches sequences in {path}: expected SEQ/1.ppm, SEQ/2.ppm ... "
                        "and SEQ/H_1_2 ...")
    return sources


def _load_hpatches(seq: Path, k: int, name: str, max_size: int | None, log=None) -> Pair:
    pa, pb, h_path = seq / "1.ppm", seq / f"{k}.ppm", seq / f"H_1_{k}"
    a, b, bad = read_pair_images(pa, pb, log=log)
    matrix = read_homography(h_path)
    gt, valid = correspondence_from_matrix(matrix, a.shape[:2], b.shape[:2])
    info = dict(dataset="hpatches", gt="homography H_1_k of (x, y, 1)",
                homography=matrix.tolist(), file_a=str(pa), file_b=str(pb), file_gt=str(h_path))
    pair = Pair(name, a, b, gt, valid, f"HPatches {seq.name} 1 -> {k}", info, nonfinite_pixels=bad)
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ matrix.T  # where H sends every pixel
    with np.errstate(divide="ignore", invalid="ignore"):
        length = np.hypot(pts[..., 1] / pts[..., 2] - ys, pts[..., 0] / pts[..., 2] - xs)
    return resize_pair(_checked(pair, length, "displacement length", log), max_size)


# --------------------------------------------------------------------------- DeepPruner
def _deeppruner(path: Path, log: Callable[[str], None] | None) -> list[PairSource]:
    found = scan_folder(path)
    note = name_mismatch_note(path, found)
    if note and log is not None:
        log(note)
    base_name = safe_name(path.resolve().name)
    sources = []
    for pa, pb in found:
        name = f"{base_name}-{safe_name(pa.stem)}"
        sources.append(PairSource(name, f"{pa} | {pb}",
                                  lambda m, pa=pa, pb=pb, n=name: _load_deeppruner(pa, pb, n, m, log=log)))
    return sources


def _load_deeppruner(pa: Path, pb: Path, name: str, max_size: int | None, log=None) -> Pair:
    pair = folder_pair(pa, pb, name, max_size, log=log)
    pair.info["dataset"] = "deeppruner"
    return pair
