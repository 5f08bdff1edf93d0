"""Standard datasets: tiny copies of each layout, written in the real file formats, read back.

Every dataset here is a few pixels per image with a ground truth the test knows; expected
correspondences are worked out pixel by pixel (loops), not with the module's vectorised code.
"""
from __future__ import annotations

import math
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from experiments.report import metrics
from experiments.data import (detect_layout, read_flo, read_kitti_flow, read_pfm, resolve_data,
                                  resolve_dataset)
from experiments.errors import UserError
from experiments.data import Pair, resize_pair


def _rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expected(h: int, w: int, shape_b: tuple[int, int], match) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth by a loop: ``match(y, x) -> (y_B, x_B) or None``; valid when inside B."""
    gt = np.full((h, w, 2), np.nan, np.float32)
    valid = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            m = match(y, x)
            if m is None or not all(math.isfinite(c) for c in m):
                continue
            if 0 <= m[0] <= shape_b[0] - 1 and 0 <= m[1] <= shape_b[1] - 1:
                gt[y, x], valid[y, x] = m, True
    return gt, valid


def _assert_gt(pair: Pair, gt: np.ndarray, valid: np.ndarray) -> None:
    np.testing.assert_array_equal(pair.valid, valid)
    np.testing.assert_array_equal(pair.gt, gt)  # NaN == NaN here; exact elsewhere
    assert pair.gt.dtype == np.float32 and pair.valid.dtype == bool


def _one_line_error(excinfo, path: Path) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg and str(path) in msg


# --------------------------------------------------------------------------- builders
MB_H, MB_W = 4, 6


def _mb_disp_alpha() -> np.ndarray:
    d = np.full((MB_H, MB_W), 2.0, np.float32)
    d[0, 0] = np.inf  # unknown
    d[1, 1] = 1.5  # x - d = -0.5: leaves B
    d[2, 3] = 0.25
    return d


def _mb_beta() -> tuple[np.ndarray, np.ndarray]:
    d = np.full((MB_H, MB_W), 1.0, np.float32)
    d[3, 5] = np.inf
    mask = np.full((MB_H, MB_W), 255, np.uint8)
    mask[:, 1] = 128  # occluded
    mask[3, 5] = mask[0, 2] = 0  # unknown (the second one with a finite disparity)
    return d, mask


def make_middlebury(root: Path, write_image) -> Path:
    """``Alpha`` in the 2014 layout (disp0.pfm), ``Beta`` in MiddEval3's (disp0GT.pfm + mask)."""
    for i, scene in enumerate(("Alpha", "Beta")):
        d = root / scene
        write_image(d / "im0.png", _rgb(2 * i, MB_H, MB_W))
        write_image(d / "im1.png", _rgb(2 * i + 1, MB_H, MB_W))
        (d / "calib.txt").write_text("cam0=[1 0 3; 0 1 2; 0 0 1]\ndoffs=0\nbaseline=100\n")
    assert cv2.imwrite(str(root / "Alpha" / "disp0.pfm"), _mb_disp_alpha())
    d, mask = _mb_beta()
    assert cv2.imwrite(str(root / "Beta" / "disp0GT.pfm"), d)
    assert cv2.imwrite(str(root / "Beta" / "mask0nocc.png"), mask)
    return root


SN_H, SN_W = 5, 7
# (u, v) of each flow file, constant per file except the listed pixels
_SINTEL_FLOW = {("alley_1", 1): (1.25, -0.5), ("alley_1", 2): (-1.0, 0.75),
                ("bamboo_1", 1): (0.0, 0.0)}
_SINTEL_OCC = {("alley_1", 1): [(4, 6), (4, 5)], ("alley_1", 2): [], ("bamboo_1", 1): [(0, 0)]}


def _sintel_flow(key) -> np.ndarray:
    flow = np.empty((SN_H, SN_W, 2), np.float32)
    flow[..., 0], flow[..., 1] = _SINTEL_FLOW[key]
    if key == ("alley_1", 1):
        flow[2, 3] = (2.5, 1.5)
    return flow


def make_sintel(root: Path, write_image) -> Path:
    """``MPI-Sintel/training/{clean,final,flow,occlusions}``: alley_1 (3 frames), bamboo_1 (2)."""
    t = root / "training"
    for scene, n in (("alley_1", 3), ("bamboo_1", 2)):
        for i in range(1, n + 1):
            for k, p in enumerate(("clean", "final")):
                write_image(t / p / scene / f"frame_{i:04d}.png",
                            _rgb(100 * k + 10 * i, SN_H, SN_W))
            if i < n:
                (t / "flow" / scene).mkdir(parents=True, exist_ok=True)
                assert cv2.writeOpticalFlow(str(t / "flow" / scene / f"frame_{i:04d}.flo"),
                                            _sintel_flow((scene, i)))
                occ = np.zeros((SN_H, SN_W), np.uint8)
                for yx in _SINTEL_OCC[(scene, i)]:
                    occ[yx] = 255
                write_image(t / "occlusions" / scene / f"frame_{i:04d}.png", occ)
    (root / "test" / "clean").mkdir(parents=True)
    return root


KT_H, KT_W = 5, 8


def _kitti_flow_png(u: np.ndarray, v: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """OpenCV-order (B, G, R) = (valid, v, u) 16-bit array."""
    return np.dstack([valid.astype(np.uint16), (v * 64 + 2 ** 15).astype(np.uint16),
                      (u * 64 + 2 ** 15).astype(np.uint16)])


def _kitti_gt():
    u = np.full((KT_H, KT_W), 2.5, np.float32)
    v = np.full((KT_H, KT_W), -1.25, np.float32)
    u[3, 1], v[3, 1] = -0.015625, 0.5  # 1/64 steps
    occ_valid = np.ones((KT_H, KT_W), bool)
    occ_valid[2, 2] = False
    noc_valid = occ_valid & (np.arange(KT_W) < 4)
    d = np.full((KT_H, KT_W), 3.0, np.float32)
    d[4, 6] = 4.00390625  # 1025 / 256
    d_valid = np.ones((KT_H, KT_W), bool)
    d_valid[1, 5] = False
    d_noc = d_valid & (np.arange(KT_W) != 7)
    return u, v, occ_valid, noc_valid, d, d_valid, d_noc


def make_kitti(root: Path, write_image) -> Path:
    """``data_scene_flow/training``: frames 000000 (the known GT) and 000001 (zero flow)."""
    t = root / "training"
    u, v, occ_valid, noc_valid, d, d_valid, d_noc = _kitti_gt()
    zero, ones = np.zeros((KT_H, KT_W), np.float32), np.ones((KT_H, KT_W), bool)
    for i, frame in enumerate(("000000", "000001")):
        write_image(t / "image_2" / f"{frame}_10.png", _rgb(20 + i, KT_H, KT_W))
        write_image(t / "image_2" / f"{frame}_11.png", _rgb(30 + i, KT_H, KT_W))
        write_image(t / "image_3" / f"{frame}_10.png", _rgb(40 + i, KT_H, KT_W))
        for sub in ("flow_occ", "flow_noc", "disp_occ_0", "disp_noc_0"):
            (t / sub).mkdir(parents=True, exist_ok=True)
        if i == 0:
            flows = (_kitti_flow_png(u, v, occ_valid), _kitti_flow_png(u, v, noc_valid))
            disps = (np.where(d_valid, d * 256, 0), np.where(d_noc, d * 256, 0))
        else:
            flows = (_kitti_flow_png(zero, zero, ones),) * 2
            disps = (np.full((KT_H, KT_W), 256.0),) * 2
        for sub, img in zip(("flow_occ", "flow_noc"), flows):
            assert cv2.imwrite(str(t / sub / f"{frame}_10.png"), img)
        for sub, img in zip(("disp_occ_0", "disp_noc_0"), disps):
            assert cv2.imwrite(str(t / sub / f"{frame}_10.png"), img.astype(np.uint16))
    return root


HP_H, HP_W = 6, 8
_HOMOGRAPHIES = {("v_boat", 2): "1 0 2\n0 1 -1\n0 0 1\n",
                 ("v_boat", 3): "  5.0000e-01   0   0\n0 0.5 0\n0 0 1\n",
                 ("i_ajuntament", 2): "1 0 0\n0 1 0\n0 0 1\n"}
_HP_SHAPES = {("v_boat", 2): (7, 9), ("v_boat", 3): (HP_H, HP_W), ("i_ajuntament", 2): (HP_H, HP_W)}


def make_hpatches(root: Path, write_image) -> Path:
    """``hpatches-sequences-release``: v_boat (1 -> 2 of another size, 1 -> 3), i_ajuntament."""
    for (seq, k), text in _HOMOGRAPHIES.items():
        write_image(root / seq / "1.ppm", _rgb(50, HP_H, HP_W))
        write_image(root / seq / f"{k}.ppm", _rgb(50 + k, *_HP_SHAPES[(seq, k)]))
        (root / seq / f"H_1_{k}").write_text(text)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory, write_image, seed_folder):
    base = tmp_path_factory.mktemp("datasets")
    return dict(
        middlebury=make_middlebury(base / "MiddEval3" / "trainingQ", write_image),
        sintel=make_sintel(base / "MPI-Sintel", write_image),
        kitti=make_kitti(base / "data_scene_flow", write_image),
        hpatches=make_hpatches(base / "hpatches-sequences-release", write_image),
        deeppruner=seed_folder)


def _load(spec: str, name: str, max_size=None) -> Pair:
    src = {s.name: s for s in resolve_dataset(spec)}[name]
    return src.load(max_size)


# --------------------------------------------------------------------------- file conventions
def _pfm(path: Path, kind: bytes, values: np.ndarray, scale: bytes) -> Path:
    """A PFM written byte by byte as the format defines it: header lines, then float32 rows from
    the bottom up, little-endian when the scale is negative, big-endian otherwise."""
    order = "<f4" if scale.startswith(b"-") else ">f4"
    h, w = values.shape[:2]
    path.write_bytes(kind + b"\n%d %d\n" % (w, h) + scale + b"\n" + values[::-1].astype(order).tobytes())
    return path


@pytest.mark.parametrize("scale", [b"-1.0", b"1.0", b"-0.003922", b"0.003922", b"-255", b"1e-3"])
def test_pfm_by_the_format_either_byte_order_any_scale(tmp_path, scale):
    """Rows bottom-to-top; the scale's sign gives the byte order, its magnitude is ignored (MiddEval3
    writes -1/255 = -0.003922: its disparities are the stored values); inf kept."""
    img = np.arange(12, dtype=np.float32).reshape(3, 4) * 7.25
    img[0, 1] = np.inf
    np.testing.assert_array_equal(read_pfm(_pfm(tmp_path / "d.pfm", b"Pf", img, scale)), img)


def test_pfm_colour_and_malformed_files(tmp_path):
    rgb = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    path = _pfm(tmp_path / "c.pfm", b"PF", rgb, b"-1.0")
    np.testing.assert_array_equal(read_pfm(path, channels=3), rgb)  # (R, G, B) interleaved per pixel
    with pytest.raises(UserError, match=r"c\.pfm is a 3-channel PFM \(PF\); a disparity map needs 1 "
                                        r"channel \(Pf\)") as e:
        read_pfm(path)
    _one_line_error(e, path)
    bad = tmp_path / "b.pfm"
    for raw, message in ((b"P6\n4 3\n255\n", "bad header"), (b"Pf\n4 3\n0.0\n" + bytes(48), "scale 0"),
                         (b"Pf\n4 3\n-1\n" + bytes(40), "truncated: 40 bytes of data for the 4 x 3 x 1")):
        bad.write_bytes(raw)
        with pytest.raises(UserError, match=message):
            read_pfm(bad)


def test_pfm_written_by_opencv_reads_back(tmp_path):
    """The fixtures below write PFMs with OpenCV (scale -1, the layout above)."""
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert cv2.imwrite(str(tmp_path / "cv.pfm"), img)
    raw = (tmp_path / "cv.pfm").read_bytes()
    np.testing.assert_array_equal(np.frombuffer(raw[-48:], "<f4").reshape(3, 4), img[::-1])
    np.testing.assert_array_equal(read_pfm(tmp_path / "cv.pfm"), img)


def test_flo_channel_0_is_u(tmp_path):
    """Middlebury .flo: 'PIEH', width, height, then (u, v) interleaved row by row."""
    u = np.arange(12, dtype=np.float32).reshape(3, 4)
    v = -10 - u
    p = tmp_path / "hand.flo"
    p.write_bytes(b"PIEH" + np.int32([4, 3]).tobytes() + np.dstack([u, v]).astype("<f4").tobytes())
    flow = read_flo(p)
    assert flow.shape == (3, 4, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow[..., 0], u)
    np.testing.assert_array_equal(flow[..., 1], v)


def _png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """Minimal 16-bit RGB PNG writer (channels in file order R, G, B), independent of OpenCV."""
    h, w, _ = rgb.shape
    rows = b"".join(b"\0" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16-bit, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_kitti_flow_png_red_is_u(tmp_path):
    """KITTI flow: u from R, v from G, valid from B, in the file's own channel order."""
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[..., 0] = 2 ** 15 + 160  # R: u = 2.5
    rgb[..., 1] = 2 ** 15 - 80  # G: v = -1.25
    rgb[..., 2] = 1
    rgb[1, 2, 2] = 0
    _png16_rgb(tmp_path / "f.png", rgb)
    flow, valid = read_kitti_flow(tmp_path / "f.png")
    assert np.all(flow[..., 0] == 2.5) and np.all(flow[..., 1] == -1.25)
    assert valid.sum() == 5 and not valid[1, 2]


# --------------------------------------------------------------------------- ground truth
def test_middlebury_gt_and_masks(data):
    root = data["middlebury"]
    assert [s.name for s in resolve_dataset(f"middlebury:{root}")] == [
        "middlebury/Alpha", "middlebury/Beta"]
    alpha = _load(f"middlebury:{root}", "middlebury/Alpha")
    disp = _mb_disp_alpha()
    _assert_gt(alpha, *_expected(MB_H, MB_W, (MB_H, MB_W),
                                 lambda y, x: (y, x - float(disp[y, x]))))
    assert not alpha.valid[1, 1] and alpha.valid[2, 3] and alpha.gt[2, 3, 1] == 2.75
    assert alpha.masks == {} and alpha.info["dataset"] == "middlebury"
    assert alpha.a.shape == (MB_H, MB_W, 3)

    beta = _load(f"middlebury:{root}", "middlebury/Beta")
    d, mask = _mb_beta()
    _assert_gt(beta, *_expected(MB_H, MB_W, (MB_H, MB_W),
                                lambda y, x: (y, x - float(d[y, x])) if mask[y, x] else None))
    assert not beta.valid[0, 2]  # unknown in the mask although the disparity is finite
    np.testing.assert_array_equal(beta.masks["noc"], mask == 255)


@pytest.mark.parametrize("render_pass", ["clean", "final"])
def test_sintel_gt_and_occlusions(data, render_pass):
    kind = "sintel" if render_pass == "clean" else "sintel-final"
    spec = f"{kind}:{data['sintel']}"
    names = [s.name for s in resolve_dataset(spec)]
    assert names == [f"sintel-{render_pass}/{n}"
                     for n in ("alley_1/0001", "alley_1/0002", "bamboo_1/0001")]
    for name in names:
        scene, i = name.split("/")[1], int(name.split("/")[2])
        pair = _load(spec, name)
        flow = _sintel_flow((scene, i))
        _assert_gt(pair, *_expected(SN_H, SN_W, (SN_H, SN_W), lambda y, x: (
            y + float(flow[y, x, 1]), x + float(flow[y, x, 0]))))
        noc = np.ones((SN_H, SN_W), bool)
        for yx in _SINTEL_OCC[(scene, i)]:
            noc[yx] = False
        np.testing.assert_array_equal(pair.masks["noc"], noc)
        assert pair.info["dataset"] == kind
        frame = data["sintel"] / "training" / render_pass / scene / f"frame_{i:04d}.png"
        np.testing.assert_array_equal(pair.a, cv2.imread(str(frame))[:, :, ::-1] / np.float32(255))
    pair = _load(spec, f"sintel-{render_pass}/alley_1/0001")
    assert pair.gt[2, 3].tolist() == [3.5, 5.5] and pair.gt[1, 0].tolist() == [0.5, 1.25]
    assert not pair.valid[0].any()  # v = -0.5 leaves B at the top


@pytest.mark.parametrize("kind, b_file, spot", [
    ("kitti-flow", "image_2/000000_11.png", ((3, 1), [3.5, 0.984375])),  # u, v in 1/64 px steps
    ("kitti-stereo", "image_3/000000_10.png", ((4, 6), [4.0, 1.99609375])),  # d = 1025 / 256
])
def test_kitti_gt(data, kind, b_file, spot):
    u, v, occ_valid, noc_valid, d, d_valid, d_noc = _kitti_gt()

    def match(y, x):
        if kind == "kitti-flow":  # B is the next frame; the match moves by the flow (u, v)
            return (y + float(v[y, x]), x + float(u[y, x])) if occ_valid[y, x] else None
        return (y, x - float(d[y, x])) if d_valid[y, x] else None  # B: the right image

    noc = noc_valid if kind == "kitti-flow" else d_noc
    spec = f"{kind}:{data['kitti']}"
    assert [s.name for s in resolve_dataset(spec)] == [f"{kind}/000000", f"{kind}/000001"]
    pair = _load(spec, f"{kind}/000000")
    _assert_gt(pair, *_expected(KT_H, KT_W, (KT_H, KT_W), match))
    (y, x), gt = spot
    assert pair.gt[y, x].tolist() == gt
    np.testing.assert_array_equal(pair.masks["noc"], noc)
    b = cv2.imread(str(data["kitti"] / "training" / b_file))[:, :, ::-1]
    np.testing.assert_array_equal(pair.b, b / np.float32(255))
    assert pair.info["dataset"] == kind


def test_hpatches_gt_other_size(data):
    spec = f"hpatches:{data['hpatches']}"
    assert [s.name for s in resolve_dataset(spec)] == [
        "hpatches/i_ajuntament/1-2", "hpatches/v_boat/1-2", "hpatches/v_boat/1-3"]
    shift = _load(spec, "hpatches/v_boat/1-2")
    assert shift.a.shape == (HP_H, HP_W, 3) and shift.b.shape == (7, 9, 3)
    _assert_gt(shift, *_expected(HP_H, HP_W, (7, 9), lambda y, x: (y - 1.0, x + 2.0)))
    half = _load(spec, "hpatches/v_boat/1-3")
    _assert_gt(half, *_expected(HP_H, HP_W, (HP_H, HP_W), lambda y, x: (y / 2, x / 2)))
    assert half.valid.all() and half.info["dataset"] == "hpatches"


def test_deeppruner_keeps_names(data):
    base = data["deeppruner"]
    srcs = resolve_dataset(f"deeppruner:{base}")
    # named <folder>-<stem of A's file>, as before datasets existed; a bare folder is detected
    assert [s.name for s in srcs] == [f"{base.name}-{p.stem}" for p in sorted((base / "image_1").iterdir())]
    assert [s.name for s in resolve_data([str(base)])] == [s.name for s in srcs]
    pair = srcs[0].load(None)
    assert pair.gt is None and pair.info["dataset"] == "deeppruner"


def test_max_size_scales_gt_and_masks(data):
    """resize_pair carries the dataset's masks; GT follows the pixel-centre rule
    ``u' = (u + 0.5) * s - 0.5`` (A and B scaled alike, so an identity stays an identity)."""
    # integer scale: the 6 x 8 identity pair (H = I) at max_size 4 is 3 x 4 (s = 1/2). A 2 x 2 block
    # averages to u = 2i + 0.5, mapped to (2i + 0.5 + 0.5) / 2 - 0.5 = i: the small grid, exactly
    pair = _load(f"hpatches:{data['hpatches']}", "hpatches/i_ajuntament/1-2", max_size=4)
    assert pair.a.shape == pair.b.shape == (3, 4, 3)
    grid = np.stack(np.mgrid[0:3, 0:4], axis=-1).astype(np.float32)
    assert pair.valid.all() and pair.valid.dtype == bool
    np.testing.assert_array_equal(pair.gt, grid)
    # non-integer scale: the 5 x 8 zero-flow KITTI pair at max_size 4 is 2 x 4 (rows scaled by 2/5):
    # rows are area averages over 2.5 input rows, so y' = 0.02 and 0.98 (by the rule above), not 0
    # and 1; the border matches must stay valid (float32 round-off may not push them out of B)
    pair = _load(f"kitti-flow:{data['kitti']}", "kitti-flow/000001", max_size=4)
    assert pair.a.shape[:2] == pair.masks["noc"].shape == pair.valid.shape == (2, 4)
    assert pair.masks["noc"].dtype == bool and pair.masks["noc"].all()  # all True stays all True
    grid = np.stack(np.mgrid[0:2, 0:4], axis=-1).astype(np.float32)
    assert pair.valid.all()
    np.testing.assert_allclose(pair.gt, grid, atol=0.05)
    np.testing.assert_allclose(pair.gt[:, 0, 0], [0.02, 0.98], atol=1e-5)


def test_resize_pair_mask_area_rule():
    """A pixel stays True when at least half of its area was True (2 x 2 blocks here)."""
    noc = np.array([[1, 1, 1, 0],
                    [0, 0, 1, 1],
                    [1, 0, 0, 0],
                    [0, 0, 0, 1]], bool)
    img = np.zeros((4, 4, 3), np.float32)
    pair = Pair("p", img, img, masks={"noc": noc, "other": ~noc})
    small = resize_pair(pair, 2)
    np.testing.assert_array_equal(small.masks["noc"], [[True, True], [False, False]])
    np.testing.assert_array_equal(small.masks["other"], [[True, False], [True, True]])
    assert Pair("q", img, img).masks == {} and resize_pair(pair, 8).masks is pair.masks


# --------------------------------------------------------------------------- layout, selection
def test_detect_each_kind(data):
    root_mb = data["middlebury"]
    assert detect_layout(root_mb) == "middlebury"
    assert detect_layout(root_mb / "Alpha") == "middlebury"
    assert detect_layout(root_mb.parent) == "middlebury"  # MiddEval3 root with trainingQ/
    assert detect_layout(data["sintel"]) == "sintel"
    assert detect_layout(data["sintel"] / "training") == "sintel"
    assert detect_layout(data["hpatches"]) == "hpatches"
    assert detect_layout(data["hpatches"] / "v_boat") == "hpatches"
    assert detect_layout(data["deeppruner"]) == "deeppruner"


def test_detect_finds_middlebury_wherever_middlebury_path_reads_it(tmp_path, data):
    """Scenes one folder down under any name (not only training*): detection and middlebury:PATH
    agree, and read the same pairs."""
    shutil.copytree(data["middlebury"], tmp_path / "copy" / "scenes")
    assert detect_layout(tmp_path / "copy") == "middlebury"
    names = [s.name for s in resolve_dataset(str(tmp_path / "copy"))]
    assert names == [s.name for s in resolve_dataset(f"middlebury:{tmp_path / 'copy'}")]
    assert names == [s.name for s in resolve_dataset(str(data["middlebury"]))] and names


def test_detect_single_kinds(tmp_path, data):
    """A KITTI copy with only the flow (or stereo) part, a Sintel copy with only final."""
    t = data["kitti"] / "training"
    for kind, subs in (("kitti-flow", ("image_2", "flow_occ")),
                       ("kitti-stereo", ("image_2", "image_3", "disp_occ_0"))):
        for s in subs:
            shutil.copytree(t / s, tmp_path / kind / "training" / s)
        assert detect_layout(tmp_path / kind) == kind
        assert detect_layout(tmp_path / kind / "training") == kind
        assert len(resolve_dataset(str(tmp_path / kind))) == 2
    for s in ("final", "flow"):
        shutil.copytree(data["sintel"] / "training" / s, tmp_path / "sf" / "training" / s)
    assert detect_layout(tmp_path / "sf") == "sintel-final"


def test_detect_ambiguous_and_unknown(tmp_path, data):
    with pytest.raises(UserError, match=r"several datasets \(kitti-flow, kitti-stereo\)") as e:
        detect_layout(data["kitti"])  # data_scene_flow.zip holds both
    _one_line_error(e, data["kitti"])
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(UserError, match=r"no known dataset layout; looked for .*im0\.png.*"
                                        r"training/clean/.*flow_occ.*disp_occ_0.*1\.ppm.*image_1/"):
        resolve_dataset(str(tmp_path))
    with pytest.raises(UserError, match=r"unknown dataset kind 'kitti'"):
        resolve_dataset(f"kitti:{data['kitti']}")


def test_root_or_training_folder_same_pairs(data):
    for kind, root in (("sintel", data["sintel"]), ("kitti-stereo", data["kitti"])):
        a = [s.name for s in resolve_dataset(f"{kind}:{root}")]
        assert a == [s.name for s in resolve_dataset(f"{kind}:{root / 'training'}")]
    beta = data["middlebury"] / "Beta"
    assert [s.name for s in resolve_dataset(str(beta))] == ["middlebury/Beta"]
    assert [s.name for s in resolve_dataset(str(data["middlebury"].parent))] == [
        "middlebury/Alpha", "middlebury/Beta"]
    assert [s.name for s in resolve_dataset(str(data["hpatches"] / "v_boat"))] == [
        "hpatches/v_boat/1-2", "hpatches/v_boat/1-3"]


def test_limit_and_select(data):
    spec = str(data["sintel"])
    assert [s.name for s in resolve_dataset(spec, limit=2)] == [
        "sintel-clean/alley_1/0001", "sintel-clean/alley_1/0002"]
    assert [s.name for s in resolve_dataset(spec, select="*/0001")] == [
        "sintel-clean/alley_1/0001", "sintel-clean/bamboo_1/0001"]
    assert [s.name for s in resolve_dataset(spec, select="*/0001", limit=1)] == [
        "sintel-clean/alley_1/0001"]
    assert len(resolve_dataset(spec, limit=100)) == 3
    with pytest.raises(UserError, match=r"--select 'x\*' matches none of the 3 pairs"):
        resolve_dataset(spec, select="x*")
    with pytest.raises(UserError, match=r"--limit 0"):
        resolve_dataset(spec, limit=0)


def test_every_kind_the_error_lists_reads_its_layout(data):
    """The kinds an unknown kind's error offers are exactly those that read a dataset: each one
    resolves its tiny copy here, and its pairs say which dataset they come from."""
    with pytest.raises(UserError, match=r"unknown dataset kind 'nosuchkind' .*; choose from ") as e:
        resolve_dataset(f"nosuchkind:{data['sintel']}")
    listed = str(e.value).split("choose from ")[1].split(", ")
    roots = {"middlebury": "middlebury", "sintel": "sintel", "sintel-final": "sintel",
             "kitti-flow": "kitti", "kitti-stereo": "kitti", "hpatches": "hpatches",
             "deeppruner": "deeppruner"}
    assert sorted(listed) == sorted(roots) and len(set(listed)) == len(listed)
    for kind in listed:
        srcs = resolve_dataset(f"{kind}:{data[roots[kind]]}")
        assert srcs and srcs[0].load(None).info["dataset"] == kind, kind


def test_middeval3_scale_keeps_the_disparities(tmp_path, write_image):
    """A MiddEval3 disp0GT.pfm (scale -1/255, little-endian) gives the stored disparities: matches
    inside B and an EPE, not disparities 255 times too large that put every match outside B."""
    root = make_middlebury(tmp_path / "mb", write_image)
    d, mask = _mb_beta()
    _pfm(root / "Beta" / "disp0GT.pfm", b"Pf", d, b"-0.003922")
    beta = _load(f"middlebury:{root}", "middlebury/Beta")
    _assert_gt(beta, *_expected(MB_H, MB_W, (MB_H, MB_W),
                                lambda y, x: (y, x - float(d[y, x])) if mask[y, x] else None))
    assert beta.info["gt_range"] == [1.0, 1.0] and beta.info["gt_values"] == "disparity"


def test_ground_truth_on_no_pixel_is_an_error_and_little_a_note(tmp_path, write_image):
    """Disparities that put every match outside B stop the load with one line naming the file and
    the likely cause; under 5% valid pixels, a one-line note."""
    root = make_middlebury(tmp_path / "mb", write_image)
    _pfm(root / "Alpha" / "disp0.pfm", b"Pf", np.full((MB_H, MB_W), 255.0, np.float32), b"-1.0")
    src = resolve_dataset(f"middlebury:{root}")[0]
    with pytest.raises(UserError, match=r"disp0\.pfm: ground truth is valid on none of A's 6 x 4 pixels "
                                        r"\(24 known disparity values from 255 to 255 px; every match "
                                        r"falls outside B's 6 x 4 pixels: values out of range") as e:
        src.load(None)
    _one_line_error(e, root / "Alpha" / "disp0.pfm")
    d = np.full((MB_H, MB_W), np.inf, np.float32)
    d[2, 5] = 1.0  # one known disparity: 1 pixel of 24 (4.2%)
    _pfm(root / "Alpha" / "disp0.pfm", b"Pf", d, b"-1.0")
    notes = []
    src = resolve_dataset(f"middlebury:{root}", log=notes.append)[0]
    pair = src.load(None)
    assert pair.valid.sum() == 1 and pair.info["gt_valid_fraction"] == pytest.approx(1 / 24, abs=1e-6)
    assert len(notes) == 1 and "ground truth valid on only 4.2% of A's pixels" in notes[0]


# --------------------------------------------------------------------------- errors
def test_truncated_pfm(tmp_path, write_image):
    root = make_middlebury(tmp_path / "mb", write_image)
    pfm = root / "Alpha" / "disp0.pfm"
    pfm.write_bytes(pfm.read_bytes()[:-10])
    src = resolve_dataset(f"middlebury:{root}")[0]  # resolving decodes nothing
    with pytest.raises(UserError, match=r"disp0\.pfm is not a readable PFM file .*truncated") as e:
        src.load(None)
    _one_line_error(e, pfm)


def test_flo_bad_magic(tmp_path, write_image):
    root = make_sintel(tmp_path / "s", write_image)
    flo = root / "training" / "flow" / "alley_1" / "frame_0002.flo"
    flo.write_bytes(b"HEIP" + flo.read_bytes()[4:])
    src = {s.name: s for s in resolve_dataset(f"sintel:{root}")}["sintel-clean/alley_1/0002"]
    with pytest.raises(UserError, match=r"frame_0002\.flo is not a readable \.flo file "
                                        r"\(bad magic number b'HEIP'") as e:
        src.load(None)
    _one_line_error(e, flo)
    flo.write_bytes(b"PIEH" + np.int32([SN_W, SN_H]).tobytes() + b"\0" * 16)
    with pytest.raises(UserError, match=r"truncated or wrong size for the 7 x 5 flow"):
        src.load(None)


def test_kitti_flow_8bit(tmp_path, write_image):
    root = make_kitti(tmp_path / "k", write_image)
    png = root / "training" / "flow_occ" / "000001_10.png"
    assert cv2.imwrite(str(png), np.zeros((KT_H, KT_W, 3), np.uint8))
    src = resolve_dataset(f"kitti-flow:{root}")[1]
    with pytest.raises(UserError, match=r"000001_10\.png is an 8-bit 3-channel image; KITTI flow "
                                        r"ground truth is a 16-bit 3-channel PNG") as e:
        src.load(None)
    _one_line_error(e, png)


def test_gt_size_differs(tmp_path, write_image):
    root = make_middlebury(tmp_path / "mb", write_image)
    pfm = root / "Alpha" / "disp0.pfm"
    cv2.imwrite(str(pfm), np.zeros((MB_H, MB_W + 1), np.float32))
    with pytest.raises(UserError, match=r"disp0\.pfm is 7 x 4 but .*im0\.png is 6 x 4"):
        resolve_dataset(f"middlebury:{root}")[0].load(None)


@pytest.mark.parametrize("kind, missing", [
    ("sintel", "training/flow/bamboo_1/frame_0001.flo"),
    ("kitti-flow", "training/flow_occ/000001_10.png"),
    ("kitti-stereo", "training/disp_noc_0/000000_10.png"),
    ("middlebury", "Beta/disp0GT.pfm"),
    ("hpatches", "v_boat/H_1_3"),
])
def test_missing_gt_file(tmp_path, write_image, kind, missing):
    make = dict(sintel=make_sintel, middlebury=make_middlebury, hpatches=make_hpatches).get(
        kind, make_kitti)
    root = make(tmp_path / "d", write_image)
    (root / missing).unlink()
    name = Path(missing).name if kind != "middlebury" else "disp0.pfm"
    with pytest.raises(UserError, match=rf"(missing|no) .*{name}") as e:
        resolve_dataset(f"{kind}:{root}")
    assert "\n" not in str(e.value) and str(root) in str(e.value)


@pytest.mark.parametrize("kind, layout, match", [
    ("kitti-flow", ("training/image_2", "training/flow_occ"), r"no pairs in .*image_2"),
    ("sintel", ("training/clean/alley_1", "training/flow"), r"no frame pairs in .*clean"),
    ("hpatches", (), r"no HPatches sequences in"),
    ("middlebury", (), r"no Middlebury scenes in"),
])
def test_empty_dataset_folder(tmp_path, kind, layout, match):
    for d in layout:
        (tmp_path / d).mkdir(parents=True)
    with pytest.raises(UserError, match=match) as e:
        resolve_dataset(f"{kind}:{tmp_path}")
    _one_line_error(e, tmp_path)


def test_missing_folder_and_path():
    with pytest.raises(UserError, match=r"dataset folder /nonexistent/x does not exist"):
        resolve_dataset("sintel:/nonexistent/x")
    with pytest.raises(UserError, match=r"names no folder"):
        resolve_dataset("sintel:")


# --------------------------------------------------------------------------- metrics
def _metric_arrays():
    """One row of 6 pixels; pixel 5 invalid. True displacements |gt - p| = 0, 10, 40, 100, 80;
    end-point errors 3.5, 3.5, 2.0, 4.0, 4.5 (the last along y)."""
    pix = np.stack(np.mgrid[0:1, 0:6], axis=-1).astype(np.float32)
    gt = pix.copy()
    gt[0, :5, 1] += [0, 10, 40, 100, 0]
    gt[0, 4, 0] += 80
    nnf = gt.copy()
    nnf[0, :5, 1] += [3.5, -3.5, 2.0, 0.0, 0.0]
    nnf[0, 3] += [2.4, 3.2]  # |(2.4, 3.2)| = 4
    nnf[0, 4, 0] += 4.5
    nnf[0, 5] += 50.0
    valid = np.array([[1, 1, 1, 1, 1, 0]], bool)
    noc = np.array([[1, 1, 0, 0, 1, 1]], bool)
    return nnf, gt, valid, noc


def test_bad_and_outlier_percent_by_hand():
    nnf, gt, valid, _ = _metric_arrays()
    # errors > 2: 3.5, 3.5, 4.0, 4.5 -> 4 of 5
    assert metrics.bad_percent(nnf, gt, valid) == pytest.approx(80.0)
    # > 3 px and > 5 % of 0, 10, 40, 100, 80: 3.5 (> 0), 3.5 (> 0.5), 4.5 (> 4.0); not 2.0, 4 (< 5)
    assert metrics.outlier_percent(nnf, gt, valid) == pytest.approx(60.0)
    assert math.isnan(metrics.bad_percent(nnf, gt, np.zeros_like(valid)))
    assert math.isnan(metrics.outlier_percent(nnf, None, None))


@pytest.mark.parametrize("dataset, own", [("middlebury", {"bad_2_0": 80.0}),
                                          ("kitti-flow", {"fl": 60.0}),
                                          ("kitti-stereo", {"d1": 60.0}),
                                          ("sintel", {}), (None, {})])
def test_dataset_metrics_columns(dataset, own):
    nnf, gt, valid, noc = _metric_arrays()
    img = np.zeros((1, 6, 3), np.float32)
    info = {} if dataset is None else {"dataset": dataset}
    pair = Pair("p", img, img, gt, valid, info=info, masks={"noc": noc})
    out = metrics.dataset_metrics(pair, nnf)
    assert tuple(out) == metrics.DATASET_COLUMNS == ("bad_2_0", "fl", "d1", "epe_noc", "epe_occ")
    for key in ("bad_2_0", "fl", "d1"):
        if key in own:
            assert out[key] == pytest.approx(own[key])
        else:
            assert math.isnan(out[key])
    assert out["epe_noc"] == pytest.approx((3.5 + 3.5 + 4.5) / 3)  # pixels 0, 1, 4
    assert out["epe_occ"] == pytest.approx((2.0 + 4.0) / 2)  # pixels 2, 3
    no_masks = metrics.dataset_metrics(Pair("p", img, img, gt, valid, info=info), nnf)
    assert math.isnan(no_masks["epe_noc"]) and math.isnan(no_masks["epe_occ"])
    no_gt = metrics.dataset_metrics(Pair("p", img, img, info=info), nnf)
    assert tuple(no_gt) == metrics.DATASET_COLUMNS and all(math.isnan(v) for v in no_gt.values())


def test_dataset_metrics_on_loaded_pair(data):
    """The true correspondence scores zero everywhere it applies."""
    pair = _load(f"kitti-stereo:{data['kitti']}", "kitti-stereo/000000")
    out = metrics.dataset_metrics(pair, np.nan_to_num(pair.gt))
    assert out["d1"] == 0.0 and out["epe_noc"] == 0.0 and out["epe_occ"] == 0.0
    assert math.isnan(out["fl"]) and math.isnan(out["bad_2_0"])
