"""The data room: what is matched, and what is true.

* :mod:`.images`: image files and arrays (the one dtype policy: float32 RGB in [0, 1]).
* :mod:`.pairs`: :class:`Pair` (A, B, ground truth ``gt[y, x] = (y_B, x_B)`` with a valid mask),
  resizing with the ground truth, known warps, :class:`PairSource` (a pair loaded on demand).
* :mod:`.builtin`: the built-in pairs (scikit-image's images; no download).
* :mod:`.folders`: user pairs in the DeepPruner demo layout.
* :mod:`.readers`: the standard datasets' file formats (PFM, ``.flo``, KITTI PNG, homographies).
* :mod:`.datasets`: Middlebury, MPI-Sintel, KITTI 2015, HPatches as distributed.
* :mod:`.resolve`: ``--data`` values (built-in names, ``KIND:PATH``, detected folders) as sources.

May import: the foundation (:mod:`experiments.errors`) and external libraries; no other room.
"""
from .builtin import ALL_BUILTIN_PAIRS, BUILTIN_PAIRS, builtin_pair, builtin_sources, motorcycle_pair
from .datasets import KINDS
from .folders import folder_pair, name_mismatch_note, read_pair_images, scan_folder
from .images import load_image, nonfinite_pixels, read_image, save_image, to_rgb_float
from .pairs import (Pair, PairSource, check_pair, file_stem, make_warped_pair, resize_pair,
                    safe_name, warp_matrix, warp_pair)
from .readers import read_flo, read_homography, read_kitti_disparity, read_kitti_flow, read_pfm
from .resolve import (check_subset_options, detect_layout, is_builtin, parse_spec, resolve_data,
                      resolve_dataset)

__all__ = ["ALL_BUILTIN_PAIRS", "BUILTIN_PAIRS", "KINDS", "Pair", "PairSource", "builtin_pair", "builtin_sources",
           "motorcycle_pair", "folder_pair", "name_mismatch_note", "read_pair_images",
           "scan_folder", "load_image", "nonfinite_pixels", "read_image", "save_image", "to_rgb_float", "check_pair",
           "file_stem", "make_warped_pair", "resize_pair", "safe_name", "warp_matrix", "warp_pair",
           "read_flo", "read_homography", "read_kitti_disparity", "read_kitti_flow", "read_pfm",
           "check_subset_options", "detect_layout", "is_builtin", "parse_spec", "resolve_data",
           "resolve_dataset"]
