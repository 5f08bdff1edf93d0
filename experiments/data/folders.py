"""User pairs in the DeepPruner demo layout: ``BASE/image_1/*`` with ``BASE/image_2/*``.

Pairs are formed by sorted file name; every file must be an image (hidden files are ignored).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UserError
from .builtin import BUILTIN_PAIRS
from .images import IMAGE_SUFFIXES, read_image
from .pairs import Pair, resize_pair


def _is_image_candidate(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".")


def scan_folder(base: str | Path) -> list[tuple[Path, Path]]:
    """Pairs of a DeepPruner demo folder: ``BASE/image_1/*`` with ``BASE/image_2/*`` by sorted name.

    Checks the layout only (no decoding). Hidden files are ignored; every other file must have an
    image suffix. Raises :class:`UserError` on a missing or empty folder or unequal counts.
    """
    base = Path(base)
    if not base.is_dir():
        raise UserError(f"data folder {base} does not exist; pass a built-in pair name "
                        f"({', '.join(BUILTIN_PAIRS)}) or a folder with image_1/ and image_2/")
    lists = []
    for sub in ("image_1", "image_2"):
        d = base / sub
        if not d.is_dir():
            raise UserError(f"{base} has no {sub}/ folder; put A images in {base}/image_1/ and "
                            f"B images in {base}/image_2/ (paired by sorted file name)")
        files = sorted((p for p in d.iterdir() if _is_image_candidate(p)), key=lambda p: p.name)
        if not files:
            raise UserError(f"{d} is empty; add images (PNG, JPEG or TIFF)")
        for p in files:
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"{p} is not an image file (suffix {p.suffix or 'none'}); "
                                f"remove it, or use one of {', '.join(IMAGE_SUFFIXES)}")
        lists.append(files)
    if len(lists[0]) != len(lists[1]):
        raise UserError(f"{base}: image_1/ has {len(lists[0])} images but image_2/ has "
                        f"{len(lists[1])}; every A needs exactly one B (paired by sorted name)")
    return list(zip(*lists))


def name_mismatch_note(base: str | Path, pairs: list[tuple[Path, Path]]) -> str | None:
    """One-line note when paired files have different stems (pairing is by sorted order)."""
    bad = [(a, b) for a, b in pairs if a.stem != b.stem]
    if not bad:
        return None
    a, b = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return (f"note: {base}: image_1/{a.name} is paired with image_2/{b.name}{more}; file names "
            "differ, pairing is by sorted order")


def nonfinite_note(path: Path, count: int) -> str:
    """The one-line note printed when an image file held non-finite values."""
    return (f"note: {path}: {count} pixel{'s' if count != 1 else ''} with NaN or inf values "
            "replaced (NaN and -inf by 0, +inf by 1)")


def folder_pair(path_a: Path, path_b: Path, name: str, max_size: int | None, *,
                log: Callable[[str], None] | None = None) -> Pair:
    """Load one user pair (no ground truth) and downscale it.

    ``log`` receives a one-line note (:func:`nonfinite_note`) for each image file whose
    non-finite values were replaced; the counts are kept in ``Pair.nonfinite_pixels``.
    """
    a, b, bad = read_pair_images(path_a, path_b, log=log)
    pair = Pair(name, a, b, None, None, f"{path_a} | {path_b}",
                dict(file_a=path_a.name, file_b=path_b.name), nonfinite_pixels=bad)
    return resize_pair(pair, max_size)


def read_pair_images(path_a: Path, path_b: Path, *, log: Callable[[str], None] | None = None):
    """Both images of a pair (:func:`read_image`) and ``{"a": n, "b": m}``, the pixels of each that
    held NaN or inf; ``log`` gets a one-line note (:func:`nonfinite_note`) per such file."""
    (a, bad_a), (b, bad_b) = read_image(path_a), read_image(path_b)
    for path, count in ((path_a, bad_a), (path_b, bad_b)):
        if count and log is not None:
            log(nonfinite_note(path, count))
    return a, b, {"a": bad_a, "b": bad_b}
