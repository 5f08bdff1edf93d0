"""Standard correspondence datasets, read as they are distributed, as the suite's pairs.

Every kind of ground truth is converted to the one convention of :mod:`experiments.pairs`:
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

File formats are read by OpenCV (checked by writing files with known content and reading them
back, see ``tests/test_datasets.py``):

* PFM: ``cv2.imdecode(..., IMREAD_UNCHANGED)`` returns float32 rows top-to-bottom (the file
  stores them bottom-to-top; OpenCV flips them), either byte order, ``inf`` kept. OpenCV divides
  the values by ``|scale|`` of the header; Middlebury's ``pfmwrite`` writes scale -1 (no change).
* ``.flo``: ``cv2.readOpticalFlow`` returns float32 ``(H, W, 2)`` with channel 0 = u (x) and
  channel 1 = v (y); it returns ``None`` for a bad magic number or a truncated file.
* 16-bit PNG: ``IMREAD_UNCHANGED`` keeps uint16 and returns colour channels in BGR order, so the
  KITTI flow file's R, G, B are channels 2, 1, 0.

Malformed files become one-line :class:`UserError` messages naming the file. Resolving a dataset
only scans its layout and checks that the ground-truth files exist; ``PairSource.load`` decodes.
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import UserError
from .pairs import (BUILTIN_PAIRS, Pair, PairSource, builtin_pair, correspondence_from_matrix, decode_file,
                    displacement_to_gt, folder_pair, name_mismatch_note, read_pair_images, resize_pair, safe_name,
                    scan_folder)

KINDS = ("middlebury", "sintel", "sintel-final", "kitti-flow", "kitti-stereo", "hpatches",
         "deeppruner")

_MIDDLEBURY_GT = ("disp0GT.pfm", "disp0.pfm")  # MiddEval3 first, then 2014 / 2021
_SINTEL_FRAME = re.compile(r"frame_(\d+)\.png")
_HPATCHES_IMAGE = re.compile(r"(\d+)\.ppm")
_KITTI_A = re.compile(r"(\d+)_10\.png")


# --------------------------------------------------------------------------- file readers
def _decode(path: Path, what: str) -> np.ndarray:
    """Any image file as OpenCV decodes it (``IMREAD_UNCHANGED``: dtype kept, BGR order)."""
    img = decode_file(path)
    if img is None:
        raise UserError(f"{path} is not a readable {what} (bad header, wrong size or truncated "
                        "file); download it again")
    return img


def _describe(img: np.ndarray) -> str:
    bits = {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(img.dtype,
                                                                           str(img.dtype))
    article = "an" if bits[0] in "8aeiou" else "a"
    return f"{article} {bits} {1 if img.ndim == 2 else img.shape[2]}-channel image"


def read_pfm(path: str | Path) -> np.ndarray:
    """Single-channel PFM (``Pf``) as float32 ``(H, W)``, top row first, non-finite values kept.

    Raises :class:`UserError` naming the file when it is not a readable one-channel PFM.
    """
    path = Path(path)
    img = _decode(path, "PFM file")
    if img.ndim != 2 or img.dtype != np.float32:
        raise UserError(f"{path} is {_describe(img)}; a disparity PFM has one float channel (Pf)")
    return img


def read_flo(path: str | Path) -> np.ndarray:
    """Middlebury ``.flo`` optical flow as float32 ``(H, W, 2)``: channel 0 = u (x), 1 = v (y).

    Raises :class:`UserError` naming the file for a bad magic number or a truncated file.
    """
    path = Path(path)
    flow = cv2.readOpticalFlow(str(path))
    if flow is None or flow.size == 0:  # say why from the header
        try:
            with open(path, "rb") as f:
                head = f.read(12)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        if head[:4] != b"PIEH":
            why = f"bad magic number {head[:4]!r}, expected b'PIEH'"
        else:
            w, h = np.frombuffer(head[4:12].ljust(8, b"\0"), "<i4")
            why = f"truncated or wrong size for the {w} x {h} flow its header states"
        raise UserError(f"{path} is not a readable .flo file ({why}); download it again")
    return flow


def read_kitti_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """KITTI 16-bit flow PNG as ``flow`` float32 ``(H, W, 2)`` (u, v) and ``valid`` ``(H, W)``.

    ``u = (R - 2**15) / 64``, ``v = (G - 2**15) / 64``, valid where B is nonzero (OpenCV returns
    B, G, R). Raises :class:`UserError` naming the file unless it is 16-bit with 3 channels.
    """
    path = Path(path)
    img = _decode(path, "PNG image")
    if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
        raise UserError(f"{path} is {_describe(img)}; KITTI flow ground truth is a 16-bit "
                        "3-channel PNG (download it again; do not convert it)")
    u = (img[:, :, 2].astype(np.float32) - 2.0 ** 15) / 64.0
    v = (img[:, :, 1].astype(np.float32) - 2.0 ** 15) / 64.0
    return np.stack([u, v], axis=-1), img[:, :, 0] != 0


def read_kitti_disparity(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """KITTI 16-bit disparity PNG as ``disp`` float32 ``(H, W)`` (value / 256) and ``valid``.

    0 = no ground truth. Raises :class:`UserError` naming the file unless it is 16-bit gray.
    """
    path = Path(path)
    img = _decode(path, "PNG image")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise UserError(f"{path} is {_describe(img)}; KITTI disparity ground truth is a 16-bit "
                        "1-channel PNG (download it again; do not convert it)")
    return img.astype(np.float32) / 256.0, img > 0


def read_homography(path: str | Path) -> np.ndarray:
    """3 x 3 text matrix (HPatches ``H_1_k``) as float64; :class:`UserError` when malformed."""
    path = Path(path)
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        m = None
    if m is None or m.shape != (3, 3) or not np.isfinite(m).all():
        raise UserError(f"{path} is not a 3 x 3 homography (nine numbers in three text rows)")
    return m


def _read_mask(path: Path) -> np.ndarray:
    """8-bit mask image as uint8 ``(H, W)`` (first channel of a colour file)."""
    img = _decode(path, "mask image")
    if img.dtype != np.uint8:
        raise UserError(f"{path} is {_describe(img)}; expected an 8-bit mask")
    return img if img.ndim == 2 else img[:, :, 0]


def _check_shape(array: np.ndarray, shape: tuple[int, int], path: Path, image: Path) -> None:
    if array.shape[:2] != tuple(shape):
        raise UserError(f"{path} is {array.shape[1]} x {array.shape[0]} but {image} is "
                        f"{shape[1]} x {shape[0]}; ground truth and image must have the same size")


# --------------------------------------------------------------------------- conversions
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
    return resize_pair(Pair(name, a, b, gt, valid, source, info, masks=masks, nonfinite_pixels=bad), max_size)


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
    return resize_pair(Pair(name, a, b, gt, valid, source, info, masks=masks, nonfinite_pixels=bad), max_size)


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
        if noc_path is not None:
            noc_flow, noc = read_kitti_flow(noc_path)
            _check_shape(noc_flow, a.shape[:2], noc_path, pa)
            masks["noc"] = noc
        desc, source = "flow (u, v): x_B = x_A + u, y_B = y_A + v", "KITTI 2015 flow"
    else:
        disp, known = read_kitti_disparity(gt_path)
        _check_shape(disp, a.shape[:2], gt_path, pa)
        gt, valid = displacement_to_gt(np.zeros_like(disp), -disp, known, b.shape[:2])
        if noc_path is not None:
            noc_disp, noc = read_kitti_disparity(noc_path)
            _check_shape(noc_disp, a.shape[:2], noc_path, pa)
            masks["noc"] = noc
        desc, source = "disparity: x_B = x_A - d, y_B = y_A", "KITTI 2015 stereo"
    info = dict(dataset=f"kitti-{task}", gt=desc, file_a=str(pa), file_b=str(pb),
                file_gt=str(gt_path))
    source = f"{source} {pa.name} -> {pb.parent.name}/{pb.name}"
    return resize_pair(Pair(name, a, b, gt, valid, source, info, masks=masks, nonfinite_pixels=bad), max_size)


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
    return resize_pair(Pair(name, a, b, gt, valid, f"HPatches {seq.name} 1 -> {k}", info,
                            nonfinite_pixels=bad), max_size)


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


# --------------------------------------------------------------------------- layout, selection
# What detect_layout looks for, per kind (also the text of its error messages).
_LOOKED_FOR = {
    "middlebury": "SCENE/im0.png + im1.png (Middlebury)",
    "sintel": "training/clean/ + training/flow/ (MPI-Sintel)",
    "sintel-final": "training/final/ + training/flow/ (MPI-Sintel)",
    "kitti-flow": "training/image_2/ + flow_occ/ (KITTI 2015 flow)",
    "kitti-stereo": "training/image_2/ + image_3/ + disp_occ_0/ (KITTI 2015 stereo)",
    "hpatches": "SEQ/1.ppm (HPatches)",
    "deeppruner": "image_1/ + image_2/ (DeepPruner demo folder)",
}


def detect_layout(path: str | Path) -> str:
    """The dataset kind (one of :data:`KINDS`) whose layout ``path`` has.

    ``path`` may be the dataset root or its ``training`` folder (Sintel, KITTI), a folder of
    scenes / sequences or one of them (Middlebury, HPatches; Middlebury also a folder holding a
    folder of scenes, as ``middlebury:PATH`` reads it), or a DeepPruner ``BASE``. A Sintel
    folder with both passes is ``sintel`` (the clean pass). Raises :class:`UserError` (one line,
    listing what was looked for) when no kind or several match.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"--data {path} is not a folder")
    sub = _subdirs(path)
    found = []
    if (path / "image_1").is_dir() and (path / "image_2").is_dir():
        found.append("deeppruner")
    if any(_middlebury_layout(path)):  # where middlebury:PATH reads
        found.append("middlebury")
    for root in [path] + [d for d in sub if d.name == "training"]:
        if (root / "flow").is_dir() and (root / "clean").is_dir():
            found.append("sintel")
        elif (root / "flow").is_dir() and (root / "final").is_dir():
            found.append("sintel-final")
        if (root / "image_2").is_dir() and (root / "flow_occ").is_dir():
            found.append("kitti-flow")
        if all((root / d).is_dir() for d in ("image_2", "image_3", "disp_occ_0")):
            found.append("kitti-stereo")
    if _is_hpatches_sequence(path) or any(_is_hpatches_sequence(d) for d in sub):
        found.append("hpatches")
    found = list(dict.fromkeys(found))
    if len(found) == 1:
        return found[0]
    if found:
        raise UserError(f"{path} looks like several datasets ({', '.join(found)}); say which "
                        f"with KIND:PATH, e.g. --data {found[0]}:{path}")
    raise UserError(f"{path} has no known dataset layout; looked for "
                    f"{'; '.join(_LOOKED_FOR.values())}; or say KIND:PATH with KIND in "
                    f"{', '.join(KINDS)}")


def parse_spec(spec: str) -> tuple[str, Path]:
    """``KIND:PATH`` or a bare ``PATH`` -> (kind, path); the kind of a bare path is detected."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        if not rest:
            raise UserError(f"--data {spec!r} names no folder; write {kind}:PATH")
        path = Path(rest)
    elif sep and re.fullmatch(r"[a-z][a-z0-9-]+", kind) and not Path(spec).exists():
        raise UserError(f"unknown dataset kind {kind!r} in {spec!r}; choose from "
                        f"{', '.join(KINDS)}")
    else:
        kind, path = "", Path(spec)
    if not path.exists():
        raise UserError(f"dataset folder {path} does not exist")
    if not path.is_dir():
        raise UserError(f"--data {path} is a file; pass the dataset's folder")
    return kind or detect_layout(path), path


def resolve_dataset(spec: str, *, limit: int | None = None, select: str | None = None,
                    log: Callable[[str], None] | None = None) -> list[PairSource]:
    """Pairs of a dataset as loadable sources, in sorted name order.

    Parameters
    ----------
    spec : str
        ``KIND:PATH`` (KIND in :data:`KINDS`; ``sintel`` is the clean pass) or a bare ``PATH``
        whose layout :func:`detect_layout` recognises.
    limit : int, optional
        Keep the first ``limit`` pairs (after ``select``).
    select : str, optional
        ``fnmatch`` pattern on the pair name (e.g. ``"sintel-clean/alley_*"``), applied first.
    log : callable, optional
        Receives one-line notes: DeepPruner folders whose paired file names differ, and (when a
        pair is loaded) image files whose NaN or inf pixels were replaced.

    Only the layout is scanned and the ground-truth files' existence checked; nothing is decoded
    until ``PairSource.load(max_size)``. Raises :class:`UserError` (one line) for an unknown or
    ambiguous layout, a missing ground-truth file, an empty dataset or an empty selection.
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: give a positive number of pairs")
    kind, path = parse_spec(spec)
    if kind == "middlebury":
        sources = _middlebury(path, log=log)
    elif kind in ("sintel", "sintel-final"):
        sources = _sintel(path, "clean" if kind == "sintel" else "final", log=log)
    elif kind in ("kitti-flow", "kitti-stereo"):
        sources = _kitti(path, kind.removeprefix("kitti-"), log=log)
    elif kind == "hpatches":
        sources = _hpatches(path, log=log)
    else:
        sources = _deeppruner(path, log)
    sources.sort(key=lambda s: s.name)
    if select is not None:
        picked = [s for s in sources if fnmatch.fnmatchcase(s.name, select)]
        if not picked:
            raise UserError(f"--select {select!r} matches none of the {len(sources)} pairs of "
                            f"{spec} (names look like {sources[0].name})")
        sources = picked
    return sources[:limit] if limit is not None else sources


def is_builtin(spec: str) -> bool:
    """Whether a ``--data`` value names a built-in pair (a folder of that name takes precedence)."""
    return spec in BUILTIN_PAIRS and not Path(spec).is_dir()


def check_subset_options(specs: list[str], *, limit: int | None, select: str | None,
                         names: tuple[str, str] = ("--limit", "--select")) -> None:
    """Refuse ``limit``/``select`` when no value of ``specs`` is a dataset or folder.

    They pick pairs of datasets and folders only (built-in pairs are always kept), so with
    built-ins alone they would silently do nothing. ``names`` are the options' names in messages.
    """
    if (limit is None and select is None) or not all(is_builtin(s) for s in specs):
        return
    option = names[1] if select is not None else names[0]
    raise UserError(f"{option} picks pairs of a dataset or folder, but the data are built-in pairs "
                    f"only ({', '.join(specs)}); add a dataset (KIND:PATH or a folder) or drop {option}")


def resolve_data(specs: list[str], *, limit: int | None = None, select: str | None = None,
                 log: Callable[[str], None] | None = None) -> list[PairSource]:
    """Turn ``--data`` values into loadable pair sources, in the order given.

    Each value is a built-in pair name (:data:`experiments.pairs.BUILTIN_PAIRS`), ``KIND:PATH`` or a
    folder whose layout is detected (:func:`resolve_dataset`; ``limit`` and ``select`` apply to each
    dataset or folder, built-in names are always kept). Raises :class:`UserError` for unknown
    names, bad folders and pair names that occur twice.
    """
    sources: list[PairSource] = []
    for spec in specs:
        if is_builtin(spec):
            sources.append(PairSource(spec, f"built-in {spec}", lambda m, n=spec: builtin_pair(n, max_size=m)))
        elif ":" not in spec and not Path(spec).exists():
            raise UserError(f"--data {spec!r} is neither a built-in pair ({', '.join(BUILTIN_PAIRS)}), "
                            f"nor KIND:PATH (KIND in {', '.join(KINDS)}), nor an existing folder")
        else:
            sources.extend(resolve_dataset(spec, limit=limit, select=select, log=log))
    seen: set[str] = set()
    for s in sources:
        if s.name in seen:
            raise UserError(f"pair name {s.name!r} occurs twice in --data; list each pair or "
                            "folder once (folders with the same name need different names)")
        seen.add(s.name)
    return sources
