"""Loaders by kind: files on disk -> :class:`~kitlib.data.core.ImageArrays`.

Every loader returns uint8 RGB images (N, H, W, 3), int64 labels in manifest class order, and where the
data has them: lesion masks (N, H, W) in {0, 1}, boxes (N, 4) = (x0, y0, x1, y1) in pixels of the
returned images with x1/y1 exclusive (``mask[y0:y1, x0:x1]`` is the box; NaN rows = no annotation),
``has_lesion``, ``groups`` (e.g. HAM10000 lesion_id, ChestX-ray14 patient id) and ``split``.

Kinds (options as in the manifest's ``loader`` block):

- ``medmnist_npz``: official MedMNIST ``.npz`` (keys ``{train,val,test}_{images,labels}``).
- ``image_csv``: a CSV with an id and a label column + an image file pattern (HAM10000, APTOS, EyePACS,
  Hyper-Kvasir, Messidor-2); optional group/split columns and a per-image mask pattern.
- ``chestxray14``: ``Data_Entry_2017.csv`` filtered to single-label images of the manifest's classes.
- ``rsna_boxes``: RSNA pneumonia CSVs: 3 classes, lesion boxes rasterised to masks.
- ``image_folder``: one file per image found by a glob; label = parent folder name or a constant.
- ``flowers102``: Oxford Flowers-102 (``imagelabels.mat`` / ``setid.mat``).

Your own data (``kitlib.data.load(path)``): a folder of class sub-folders (``load_image_folder`` with
``label_from='top_dir'`` and ``IMAGE_EXTENSIONS``), a ``path,label`` CSV (:func:`load_path_csv`) or a
MedMNIST-style npz (:func:`load_npz_file`).

Decoding full-size image sets is done once: images are decoded with PIL in a thread pool (JPEG draft
mode when shrinking), resized to ``size x size`` and cached as an uncompressed ``.npz`` under
``$KITLIB_CACHE`` (default ``~/.cache/kitlib``) keyed by dataset, size, loader options, the
checksums of the label files and a fingerprint of every source image and mask (path, size and mtime of
each; their content hashes when loading with ``verify=True``), so a replaced image or a deleted mask
rebuilds the cache. The cache file is written atomically; a corrupt one is deleted and rebuilt with a
warning naming it.

npz files (MedMNIST and your own) are read without silent conversions: float images are scaled from
[0, 1] only when that is exact, and NaN, values outside 0-255, non-integer labels, splits of different
image sizes, object arrays and corrupt archives are errors naming the file and the array.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from kitlib.progress import bar as progress_bar

from .core import ImageArrays

MEDMNIST_SIZES = (28, 64, 128, 224)
CACHE_VERSION = 1


class DatasetError(RuntimeError):
    """A dataset cannot be read as its manifest describes."""


class DatasetMissingError(DatasetError):
    """A file of the dataset is not on disk (the message says what to download and where to put it)."""


class ChecksumError(DatasetError):
    """A file's checksum differs from its manifest (the message names the file, expected and found)."""


class ImageReadError(DatasetError):
    """An image or mask file could not be decoded (the message names it)."""


class LabelError(DatasetError):
    """A label is outside the manifest's class list (the message names file, row and label)."""


# ---------------------------------------------------------------------------------------------
# cache and checksums


def cache_dir() -> Path:
    """$KITLIB_CACHE, else ~/.cache/kitlib (created on first write)."""
    env = os.environ.get("KITLIB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kitlib"


def _atomic_write_bytes(path: Path, write: Callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


_memo_lock = threading.Lock()


def _hash_file(path: Path, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path | str, algo: str = "md5", memo: bool = True) -> str:
    """Hex digest of a file; memoised in <cache>/digests.json by (path, size, mtime).

    memo=False always re-hashes the bytes (``verify``) and refreshes the memo.
    """
    path = Path(path)
    st = path.stat()
    key = f"{algo}:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    memo_path = cache_dir() / "digests.json"
    if memo:
        with _memo_lock:
            try:
                known = json.loads(memo_path.read_text())
            except (OSError, ValueError):
                known = {}
            if isinstance(known, dict) and key in known:
                return known[key]
    digest = _hash_file(path, algo)
    with _memo_lock:
        try:
            known = json.loads(memo_path.read_text())
            known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):
            known = {}
        known[key] = digest
        try:
            _atomic_write_bytes(memo_path, lambda f: f.write(json.dumps(known).encode()))
        except OSError:
            pass  # a read-only cache only costs re-hashing
    return digest


def sources_fingerprint(paths: Sequence[Path | str | None], content: bool = False) -> str:
    """One hash over every source file of a dataset, for cache keys.

    Each path contributes (path, size, mtime) - or (path, md5 of its bytes) when content=True, hashed in
    a thread pool - and an absent file (None or not on disk) contributes 'absent', so replacing, adding or
    deleting any image or mask changes the fingerprint.
    """
    def tag(p) -> str:
        if p is None:
            return "-"
        try:
            if content:
                return _hash_file(Path(p))
            st = os.stat(p)
            return f"{st.st_size}:{st.st_mtime_ns}"
        except FileNotFoundError:
            return "absent"

    if content:
        with ThreadPoolExecutor(_workers()) as ex:
            tags = list(ex.map(tag, paths))
    else:
        tags = [tag(p) for p in paths]
    h = hashlib.sha1()
    for p, t in zip(paths, tags):
        h.update(f"{p}\t{t}\n".encode())
    return h.hexdigest()


class CacheWarning(UserWarning):
    """A decoded-array cache file was unreadable (it is deleted and rebuilt) or could not be written."""


def cached_build(name: str, size, key: dict, build: Callable[[], dict], use_cache: bool = True):
    """Return build()'s dict of arrays, read from / written to the cache under a hash of `key`.

    A cache file that cannot be read (truncated, not a zip, ...) is deleted and rebuilt, with a
    :class:`CacheWarning` naming it. Returns (arrays, cache_path or None).
    """
    if not use_cache:
        return build(), None
    blob = json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True, default=str).encode()
    digest = hashlib.sha1(blob).hexdigest()[:16]
    path = cache_dir() / f"{name}-{size or 'native'}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, path
        except MemoryError:
            raise  # the file may be fine, the machine is short of memory
        except Exception as e:  # BadZipFile, EOFError, zlib.error, ValueError, OSError ...
            warnings.warn(f"cache file {path} is corrupt ({type(e).__name__}: {e}); deleted it, rebuilding",
                          CacheWarning, stacklevel=2)
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # rewritten atomically below
    arrays = build()
    try:
        _atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
    except OSError as e:
        warnings.warn(f"could not write cache {path}: {e}", CacheWarning, stacklevel=2)
        return arrays, None
    return arrays, path


# ---------------------------------------------------------------------------------------------
# decoding


def _read_dicom(path: Path) -> Image.Image:
    try:
        import pydicom
    except ImportError:
        raise DatasetError(
            f"{path} is DICOM and the optional package pydicom is not installed: "
            "either `pip install pydicom` or convert the images to PNG (same file stem) and set the "
            "loader's image_pattern to '...{id}.png'"
        ) from None
    ds = pydicom.dcmread(str(path))
    a = ds.pixel_array.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo if hi > lo else 1.0) * 255.0
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        a = 255.0 - a
    return Image.fromarray(a.round().astype(np.uint8))


def read_image(path: Path | str, size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one image to uint8 (H, W, 3) RGB, resized to (size, size) when size is given.

    Returns (array, (original_width, original_height)). Raises ImageReadError naming the file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".dcm":
            im = _read_dicom(path)
            orig = im.size
        else:
            im = Image.open(path)
            orig = im.size
            if size is not None and im.format == "JPEG":
                im.draft("RGB", (size, size))  # DCT-domain shrink: much faster for large JPEGs
        with im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8), orig
    except DatasetError:
        raise
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}. Re-download this file.") from e


def read_mask(path: Path | str, width: int, height: int) -> np.ndarray:
    """Decode a mask image to uint8 (height, width) in {0, 1} (nearest-neighbour resize, foreground >= 128)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.NEAREST)
            return (np.asarray(im) >= 128).astype(np.uint8)
    except Exception as e:
        raise ImageReadError(f"cannot read mask {path}: {type(e).__name__}: {e}. Re-download this file.") from e


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Box of the foreground of a (H, W) mask: float32 (x0, y0, x1, y1), x1/y1 exclusive; NaN if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.full(4, np.nan, dtype=np.float32)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) masks -> (N, 4) float32 boxes (see :func:`mask_to_box`)."""
    return np.stack([mask_to_box(m) for m in masks]) if len(masks) else np.zeros((0, 4), np.float32)


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def decode_images(paths: Sequence[Path], size: int | None, desc: str = "decode", progress: bool = True):
    """Decode many images in a thread pool.

    Returns (images uint8 (N, H, W, 3), original sizes int (N, 2) as (width, height)).
    With size=None all images must share one size (else an error asks for size=).
    """
    n = len(paths)
    first, _ = read_image(paths[0], size) if n else (np.zeros((1, 1, 3), np.uint8), None)
    out = np.empty((n, *first.shape), dtype=np.uint8)
    orig = np.zeros((n, 2), dtype=np.int64)

    def one(i):
        arr, wh = read_image(paths[i], size)
        if arr.shape != first.shape:
            raise DatasetError(
                f"{paths[i]} is {arr.shape[1]}x{arr.shape[0]} but {paths[0]} is {first.shape[1]}x{first.shape[0]}: "
                "the images differ in size, pass size=<pixels> to resize them all"
            )
        out[i] = arr
        orig[i] = wh

    with ThreadPoolExecutor(_workers()) as ex:
        for _ in progress_bar(ex.map(one, range(n)), total=n, desc=desc, leave=False, progress=progress):
            pass
    return out, orig


def decode_masks(paths: Sequence[Path | None], width: int, height: int, desc="masks", progress=True):
    """Decode masks (None or a non-existent path = no annotation).

    Returns (masks uint8 (N, height, width) {0,1}, present bool (N,)).
    """
    n = len(paths)
    masks = np.zeros((n, height, width), dtype=np.uint8)
    present = np.zeros(n, dtype=bool)

    def one(i):
        p = paths[i]
        if p is not None and Path(p).exists():
            masks[i] = read_mask(p, width, height)
            present[i] = True

    with ThreadPoolExecutor(_workers()) as ex:
        for _ in progress_bar(ex.map(one, range(n)), total=n, desc=desc, leave=False, progress=progress):
            pass
    return masks, present


# ---------------------------------------------------------------------------------------------
# helpers shared by the loaders


def _read_csv(path: Path, sep: str = ",") -> pd.DataFrame:
    if not path.exists():
        raise DatasetMissingError(f"label file {path} not found")
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as e:
        raise DatasetError(f"cannot parse CSV {path}: {e}") from e


def _need_columns(df: pd.DataFrame, path: Path, columns) -> None:
    missing = [c for c in columns if c and c not in df.columns]
    if missing:
        raise DatasetError(
            f"{path}: column(s) {missing} not found (it has {list(df.columns)}); fix the manifest's loader options"
        )


def resolve_paths(folder: Path, pattern: str, ids: Sequence[str]) -> list[Path | None]:
    """Paths of `pattern.format(id=...)` under folder; a '**/' segment searches subfolders by file name.

    Returns one Path per id, None where no such file exists.
    """
    if "**/" in pattern:
        base, _, name_pat = pattern.partition("**/")
        if "/" in name_pat:
            raise DatasetError(f"pattern {pattern!r}: only a file-name pattern may follow '**/'")
        index: dict[str, Path] = {}
        root = folder / base
        if root.exists():
            for p in sorted(root.rglob(name_pat.replace("{id}", "*"))):
                index.setdefault(p.name, p)
        return [index.get(name_pat.format(id=i)) for i in ids]
    out = []
    for i in ids:
        p = folder / pattern.format(id=i)
        out.append(p if p.exists() else None)
    return out


def _check_found(name: str, folder: Path, pattern: str, ids, paths) -> list[Path]:
    missing = [i for i, p in zip(ids, paths) if p is None]
    if missing:
        eg = ", ".join(str(folder / pattern.format(id=i)) for i in missing[:3])
        raise DatasetMissingError(
            f"{name}: {len(missing)} of {len(ids)} images not found (e.g. {eg}); "
            "check that the files exist (for a manifest: the folder layout its 'obtain' describes)"
        )
    return list(paths)


def _label_indices(name, path, ids, raw, class_names, id_column) -> np.ndarray:
    index = {c: k for k, c in enumerate(class_names)}
    out = np.empty(len(raw), dtype=np.int64)
    for j, (i, lab) in enumerate(zip(ids, raw)):
        k = index.get(lab)
        if k is None:
            raise LabelError(
                f"{path}: {id_column}={i!r} has label {lab!r}, which is not one of the classes {list(class_names)} "
                f"of '{name}'; fix the file, or the manifest's 'classes' / loader 'label_map'"
            )
        out[j] = k
    return out


def _subset_ids(name: str, all_ids: Sequence[str], ids) -> np.ndarray:
    """Positions (in file order) of the requested ids; unknown ids are an error."""
    if ids is None:
        return np.arange(len(all_ids))
    pos = {i: k for k, i in enumerate(all_ids)}
    unknown = [i for i in ids if i not in pos]
    if unknown:
        raise DatasetError(f"{name}: ids not in the dataset: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return np.sort(np.array([pos[i] for i in ids], dtype=np.int64))


def _finish(name: str, arrays: dict, class_names, meta: dict) -> ImageArrays:
    """Build the ImageArrays from a dict of arrays (as cached)."""
    extra = {}
    if "all_boxes" in arrays:
        extra["all_boxes"] = arrays["all_boxes"]
    return ImageArrays(
        images=arrays["images"],
        labels=arrays["labels"],
        class_names=list(class_names),
        name=name,
        masks=arrays.get("masks"),
        boxes=arrays.get("boxes"),
        has_lesion=arrays.get("has_lesion"),
        groups=arrays.get("groups"),
        split=arrays.get("split"),
        meta={**meta, "ids": arrays.get("ids"), **extra},
    )


def _mask_paths(folder: Path, mask_pattern: str | None, ids, masks: bool) -> list[Path]:
    """The mask file of each id (whether or not it exists); [] when masks are not read."""
    return [folder / mask_pattern.format(id=i) for i in ids] if mask_pattern and masks else []


def _decode_with_masks(name, folder, img_paths, ids, size, mask_pattern, masks, progress) -> dict:
    images, _ = decode_images(img_paths, size, desc=f"{name}: images", progress=progress)
    out = {"images": images}
    if mask_pattern and masks:
        mpaths = _mask_paths(folder, mask_pattern, ids, masks)
        if not any(p.exists() for p in mpaths):
            raise DatasetMissingError(
                f"{name}: no mask file matches {folder / mask_pattern} (e.g. {mpaths[0] if mpaths else ''}); "
                "pass masks=False to load without masks"
            )
        h, w = images.shape[1:3]
        m, present = decode_masks(mpaths, w, h, desc=f"{name}: masks", progress=progress)
        out["masks"] = m
        out["boxes"] = boxes_from_masks(m)
        out["has_lesion"] = present & m.reshape(len(m), -1).any(axis=1)
    return out


# ---------------------------------------------------------------------------------------------
# loader kinds


def load_medmnist_npz(
    folder: Path,
    *,
    name: str,
    class_names,
    size: int | None = None,
    flag: str,
    sizes=MEDMNIST_SIZES,
    ids=None,
    masks: bool = False,
    cache: bool = True,
    progress: bool = True,
    expected_md5: dict | None = None,
    verify: bool = False,
    **_,
) -> ImageArrays:
    """Official MedMNIST npz: native sizes 28/64/128/224 (file ``{flag}.npz`` or ``{flag}_{size}.npz``).

    size=None -> 28. A size that is not available natively is resized (bilinear) from the smallest
    available native file at least that large (else the largest). Grey images become 3 channels;
    labels (N, 1) are squeezed; ``split`` holds 'train'/'val'/'test'.
    expected_md5: {native size: md5} checked on the file actually read (re-hashed when verify=True).
    The arrays are checked as :func:`read_npz` describes.
    """
    if ids is not None:
        raise DatasetError(f"{name}: ids= is not supported for MedMNIST files; use ImageArrays.subset()")

    def fname(s):
        return f"{flag}.npz" if s == 28 else f"{flag}_{s}.npz"

    want = size or 28
    present = [s for s in sizes if (folder / fname(s)).exists()]
    if not present:
        raise DatasetMissingError(
            f"{name}: no MedMNIST file {fname(want)} in {folder}; run kitlib.data.fetch('{name}') "
            f"or download it from medmnist.INFO['{flag}'] url and put it there"
        )
    if want in present:
        src = want
    else:
        larger = [s for s in present if s >= want]
        src = min(larger) if larger else max(present)
    path = folder / fname(src)
    if expected_md5 and expected_md5.get(src):
        found = file_digest(path, memo=not verify)
        if found != expected_md5[src]:
            raise ChecksumError(f"{path}: md5 expected {expected_md5[src]}, found {found}; re-download it")

    def build():
        return _npz_build(path, name, class_names, want, progress)

    if src != want:  # resizing ~100k small images is worth caching; reading a native file is not
        key = {"kind": "medmnist_npz", "file": path.name, "md5": file_digest(path, memo=not verify), "size": want}
        arrays, cpath = cached_build(name, want, key, build, use_cache=cache)
    else:
        arrays, cpath = build(), None
    meta = {"kind": "medmnist_npz", "file": str(path), "native_size": src, "size": want, "cache": cpath}
    return _finish(name, arrays, class_names, meta)


NPZ_PARTS = ("train", "val", "test")


def _npz_array(z, path: Path, key: str) -> np.ndarray:
    try:
        return z[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DatasetError(
                f"{path}: array {key!r} holds Python objects (dtype=object), which kitlib does not unpickle; "
                "save it as a numeric array (uint8 images, integer labels)"
            ) from None
        raise DatasetError(f"{path}: array {key!r} cannot be read ({e}); the file is corrupt: re-download or re-save it") from e
    except Exception as e:  # BadZipFile (bad CRC), EOFError, zlib.error on a truncated member
        raise DatasetError(
            f"{path}: array {key!r} cannot be read ({type(e).__name__}: {e}); the file is corrupt: "
            "re-download or re-save it"
        ) from e


def _first_bad(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _as_uint8_images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """(N,H,W) / (N,H,W,1) / (N,H,W,3) -> uint8 (N,H,W,3) without any lossy conversion (else DatasetError)."""
    where = f"{path}: array {key!r}"
    if x.dtype.kind not in "uif":
        raise DatasetError(f"{where} has dtype {x.dtype}; images must be uint8 0-255 (or float exactly k/255)")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DatasetError(f"{where} has shape {x.shape}, expected (N,H,W[,C]) 2-D images with 1 or 3 channels")
    if x.dtype.kind == "f" and x.size:
        bad = ~np.isfinite(x)
        if bad.any():
            raise DatasetError(
                f"{where} holds {int(bad.sum())} NaN/inf value(s) (first at index {_first_bad(bad)}); "
                "fix or drop those images"
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DatasetError(
                f"{where} is float with values in [{lo:g}, {hi:g}]; float images are read only from [0, 1] "
                "(scaled x255); save the images as uint8 0-255"
            )
        scaled = x.astype(np.float64) * 255.0
        off = np.abs(scaled - np.round(scaled)) > 1e-3
        if off.any():
            i = _first_bad(off)
            raise DatasetError(
                f"{where} is float in [0, 1] but {int(off.sum())} value(s) are not multiples of 1/255 (e.g. "
                f"{float(x[i]):.6g} at index {i}), so x255 would round them; convert to uint8 yourself"
            )
        x = np.round(scaled).astype(np.uint8)
    elif x.dtype != np.uint8 and x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DatasetError(
                f"{where} ({x.dtype}) has values in [{lo}, {hi}], outside 0-255; kitlib does not guess a "
                "window: rescale to uint8 yourself"
            )
    x = x.astype(np.uint8, copy=False)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _as_int_labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    """(N,) / (N,1) integer (or whole-valued float, or bool) labels -> int64 (N,) (else DatasetError)."""
    where = f"{path}: array {key!r}"
    if y.ndim == 2 and y.shape[1] != 1:
        raise DatasetError(f"{where} is multi-label {y.shape}; only single-label sets are supported")
    if y.ndim > 2:
        raise DatasetError(f"{where} has shape {y.shape}, expected (N,) or (N, 1) class indices")
    y = y.reshape(-1)
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{where} holds non-integer label {float(y[i])!r} (index {i}, {int(bad.sum())} such); labels must "
                "be whole class indices 0..C-1"
            )
    elif y.dtype.kind not in "uib":
        raise DatasetError(f"{where} has dtype {y.dtype}; labels must be integer class indices 0..C-1")
    y = y.astype(np.int64)
    if (y < 0).any():
        i = int(np.flatnonzero(y < 0)[0])
        raise LabelError(f"{where} holds negative label {int(y[i])} (index {i}); labels must be 0..C-1")
    return y


def read_npz(path: Path | str, require_all: bool = True) -> dict:
    """Read a MedMNIST-style npz (keys ``{train,val,test}_{images,labels}``) and check it.

    Returns {"images": uint8 (N,H,W,3), "labels": int64 (N,), "split": str (N,)} in train, val, test
    order. Grey images become 3 channels; float images are scaled x255 only when they lie in [0, 1] and
    are exact multiples of 1/255. DatasetError naming the file and the array for: a corrupt archive, an
    object array, NaN/inf, values outside 0-255, non-integer or negative labels, images and labels of
    different lengths, splits with different image sizes, a missing key (require_all=False: a split may
    be absent, as long as one is there and each present split has both arrays).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetMissingError(f"{path} not found")
    if not zipfile.is_zipfile(path):
        raise DatasetError(
            f"{path}: not a readable .npz archive (truncated, or not a zip file at all); re-download or re-save it"
        )
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DatasetError(
            f"{path}: not a readable .npz archive ({type(e).__name__}: {e}); re-download or re-save it"
        ) from e
    if not hasattr(z, "files"):
        raise DatasetError(f"{path}: holds a single array, not an .npz archive with {{train,val,test}}_{{images,labels}}")
    imgs, labels, split = [], [], []
    with z:
        files = list(z.files)
        parts = NPZ_PARTS if require_all else [p for p in NPZ_PARTS if f"{p}_images" in files or f"{p}_labels" in files]
        if not parts:
            raise DatasetError(
                f"{path}: no train_/val_/test_images arrays (has {files}); save your data as "
                "np.savez(path, train_images=..., train_labels=..., [val_..., test_...])"
            )
        for part in parts:
            for key in (f"{part}_images", f"{part}_labels"):
                if key not in files:
                    raise DatasetError(f"{path}: key {key!r} missing (has {files}); not an official MedMNIST file?")
            x = _as_uint8_images(_npz_array(z, path, f"{part}_images"), path, f"{part}_images")
            y = _as_int_labels(_npz_array(z, path, f"{part}_labels"), path, f"{part}_labels")
            if len(x) != len(y):
                raise DatasetError(f"{path}: {part}_images holds {len(x)} images but {part}_labels {len(y)} labels")
            if imgs and x.shape[1:3] != imgs[0].shape[1:3]:
                raise DatasetError(
                    f"{path}: array '{part}_images' holds {x.shape[2]}x{x.shape[1]} images but "
                    f"'{parts[0]}_images' {imgs[0].shape[2]}x{imgs[0].shape[1]}; every split must have one image size"
                )
            imgs.append(x)
            labels.append(y)
            split.append(np.full(len(y), part))
    return {"images": np.concatenate(imgs), "labels": np.concatenate(labels), "split": np.concatenate(split)}


def _npz_build(path: Path, name: str, class_names, want: int | None, progress: bool, require_all: bool = True) -> dict:
    out = read_npz(path, require_all=require_all)
    y = out["labels"]
    bad = y >= len(class_names) if class_names is not None else np.zeros(len(y), bool)
    if bad.any():
        raise LabelError(
            f"{path}: label {int(y[bad][0])} is outside the {len(class_names)} classes "
            f"{list(class_names)} of '{name}'"
        )
    if want is not None and out["images"].shape[1:3] != (want, want):
        out["images"] = _resize_stack(out["images"], want, desc=f"{name}: resize to {want}", progress=progress)
    return out


def load_npz_file(
    path: Path,
    *,
    name: str,
    class_names=None,
    size: int | None = None,
    ids=None,
    cache: bool = True,
    progress: bool = True,
    verify: bool = False,
    **_,
) -> ImageArrays:
    """Your own MedMNIST-style npz (any image size; train/val/test splits optional, at least one).

    Class k = label k: class names '0'..str(max label) unless class_names is given. size=None keeps the
    native size; another size resizes (bilinear) and caches the result under a fingerprint of the file.
    Arrays are checked as :func:`read_npz` describes.
    """
    path = Path(path)
    if ids is not None:
        raise DatasetError(f"{name}: ids= is not supported for npz files; use ImageArrays.subset()")

    def build():
        return _npz_build(path, name, class_names, size, progress, require_all=False)

    if size is not None:
        key = {"kind": "npz", "file": str(path.resolve()), "size": size, "classes": class_names,
               "sources": sources_fingerprint([path], content=verify)}
        arrays, cpath = cached_build(name, size, key, build, use_cache=cache)
    else:
        arrays, cpath = build(), None
    names = list(class_names) if class_names is not None else [
        str(k) for k in range(int(arrays["labels"].max()) + 1 if len(arrays["labels"]) else 1)]
    return _finish(name, arrays, names, {"kind": "npz", "file": str(path), "size": size, "cache": cpath})


def _resize_stack(x: np.ndarray, size: int, desc: str, progress: bool) -> np.ndarray:
    out = np.empty((len(x), size, size, 3), dtype=np.uint8)

    def one(i):
        out[i] = np.asarray(Image.fromarray(x[i]).resize((size, size), Image.Resampling.BILINEAR))

    with ThreadPoolExecutor(_workers()) as ex:
        for _ in progress_bar(ex.map(one, range(len(x))), total=len(x), desc=desc, leave=False, progress=progress):
            pass
    return out


def load_image_csv(
    folder: Path,
    *,
    name: str,
    class_names,
    id_column: str,
    label_column: str,
    csv: str | None = None,
    image_pattern: str | None = None,
    tables: list | None = None,
    group_column: str | None = None,
    split_column: str | None = None,
    mask_pattern: str | None = None,
    label_map: dict | None = None,
    where: dict | None = None,
    multi_label_sep: str | None = None,
    drop_unlisted: bool = False,
    sep: str = ",",
    size: int | None = None,
    ids=None,
    masks: bool = True,
    cache: bool = True,
    progress: bool = True,
    verify: bool = False,
    **_,
) -> ImageArrays:
    """Images listed in one or more CSVs (id + label columns) with a file pattern containing ``{id}``.

    label_map: raw CSV value -> class name (e.g. APTOS 0 -> no_dr); where: {column: allowed values};
    multi_label_sep: drop rows whose label holds this separator (multi-label rows);
    drop_unlisted: drop rows whose label is not a manifest class (else such a label is an error);
    mask_pattern: per-image mask file (``{id}``), resized nearest to the image size, boxes derived from it.
    The decode cache is keyed by the CSVs' md5 and every image and mask file (see module docstring);
    verify=True re-hashes the CSVs and keys by the content of every file.
    """
    if class_names is None:
        raise DatasetError(f"{name}: the image_csv loader needs 'classes' listed in the manifest")
    tables = tables or [{"csv": csv, "image_pattern": image_pattern}]
    lmap = {str(k): str(v) for k, v in (label_map or {}).items()}
    rows = []
    digests = []
    for t in tables:
        path = folder / t["csv"]
        df = _read_csv(path, sep)
        _need_columns(df, path, [id_column, label_column, group_column, split_column, *(where or {})])
        for col, allowed in (where or {}).items():
            allowed = allowed if isinstance(allowed, list) else [allowed]
            df = df[df[col].isin([str(a) for a in allowed])]
        raw = df[label_column].str.strip()
        if multi_label_sep:
            keep = ~raw.str.contains(multi_label_sep, regex=False)
            df, raw = df[keep], raw[keep]
        if lmap:
            raw = raw.map(lambda v: lmap.get(v, lmap.get(_int_str(v), v)))
        if drop_unlisted:
            keep = raw.isin(list(class_names))
            df, raw = df[keep], raw[keep]
        ids_t = df[id_column].str.strip().tolist()
        labels_t = _label_indices(name, path, ids_t, raw.tolist(), class_names, id_column)
        paths_t = resolve_paths(folder, t["image_pattern"], ids_t)
        rows.append(
            {
                "ids": ids_t,
                "labels": labels_t,
                "paths": paths_t,
                "pattern": t["image_pattern"],
                "groups": df[group_column].tolist() if group_column else None,
                "split": (df[split_column].tolist() if split_column
                          else [t["split"]] * len(df) if t.get("split") else None),
            }
        )
        digests.append(file_digest(path, memo=not verify))

    all_ids = [i for r in rows for i in r["ids"]]
    if len(set(all_ids)) != len(all_ids):
        dup = pd.Series(all_ids)[pd.Series(all_ids).duplicated()].iloc[0]
        raise DatasetError(f"{name}: image id {dup!r} appears more than once in {[t['csv'] for t in tables]}")
    pick = _subset_ids(name, all_ids, ids)
    ids_sel = [all_ids[k] for k in pick]
    paths = [p for r in rows for p in r["paths"]]
    paths = [paths[k] for k in pick]
    patterns = [r["pattern"] for r in rows for _ in r["ids"]]
    missing = [k for k, p in enumerate(paths) if p is None]
    if missing:
        k = missing[0]
        raise DatasetMissingError(
            f"{name}: {len(missing)} of {len(paths)} images not found (e.g. "
            f"{folder / patterns[pick[k]].format(id=ids_sel[k])}); "
            "check that the files exist (for a manifest: the folder layout its 'obtain' describes)"
        )
    labels = np.concatenate([r["labels"] for r in rows])[pick]
    groups = None if rows[0]["groups"] is None else np.array([g for r in rows for g in r["groups"]])[pick]
    split = None if rows[0]["split"] is None else np.array([s for r in rows for s in r["split"]])[pick]

    key = {
        "kind": "image_csv", "folder": str(folder), "size": size, "csv_md5": digests,
        "masks": bool(mask_pattern and masks),
        "mask_pattern": mask_pattern, "patterns": [r["pattern"] for r in rows],
        "ids": hashlib.sha1("\n".join(ids_sel).encode()).hexdigest(), "classes": list(class_names),
        "options": [label_map, where, multi_label_sep, drop_unlisted, id_column, label_column],
        "sources": sources_fingerprint([*paths, *_mask_paths(folder, mask_pattern, ids_sel, masks)], content=verify),
    }

    def build():
        out = _decode_with_masks(name, folder, paths, ids_sel, size, mask_pattern, masks, progress)
        out.update(labels=labels, ids=np.array(ids_sel))
        return out

    arrays, cpath = cached_build(name, size, key, build, use_cache=cache)
    arrays["labels"], arrays["ids"] = labels, np.array(ids_sel)  # labels always from the current CSV
    if groups is not None:
        arrays["groups"] = groups
    if split is not None:
        arrays["split"] = split
    meta = {"kind": "image_csv", "folder": str(folder), "size": size, "cache": cpath}
    return _finish(name, arrays, class_names, meta)


def _int_str(v: str) -> str:
    try:
        f = float(v)
    except ValueError:
        return v
    return str(int(f)) if f.is_integer() else v


def load_chestxray14(
    folder: Path,
    *,
    csv: str = "Data_Entry_2017.csv",
    image_pattern: str = "images/{id}",
    id_column: str = "Image Index",
    label_column: str = "Finding Labels",
    group_column: str = "Patient ID",
    **kw,
) -> ImageArrays:
    """ChestX-ray14: keep images with exactly one finding that is one of the manifest's classes.

    Groups = Patient ID (several images per patient). Images (1024x1024 grey PNG) become RGB.
    """
    arr = load_image_csv(
        folder, csv=csv, image_pattern=image_pattern, id_column=id_column, label_column=label_column,
        group_column=group_column, multi_label_sep="|", drop_unlisted=True, mask_pattern=None, **kw,
    )
    arr.meta["kind"] = "chestxray14"
    return arr


def load_rsna_boxes(
    folder: Path,
    *,
    name: str,
    class_names,
    labels_csv: str = "stage_2_train_labels.csv",
    class_csv: str = "stage_2_detailed_class_info.csv",
    image_pattern: str = "stage_2_train_images/{id}.dcm",
    class_counts: dict | None = None,
    subset_seed: int = 0,
    size: int | None = None,
    ids=None,
    masks: bool = True,
    cache: bool = True,
    progress: bool = True,
    verify: bool = False,
    **_,
) -> ImageArrays:
    """RSNA pneumonia: class per patientId from class_csv; boxes (x, y, width, height in original
    pixels, Target=1 rows) from labels_csv, scaled to the returned size and rasterised into masks
    (union of the boxes). ``boxes`` = the box enclosing all of an image's boxes; every single box is in
    ``meta['all_boxes']`` as rows (image index, x0, y0, x1, y1). class_counts: {class: n} keeps a
    seeded random subset of n images of that class (paper 003 used a 105-image 'Lung Opacity' subset).
    """
    cpath_csv, lpath = folder / class_csv, folder / labels_csv
    cdf = _read_csv(cpath_csv)
    _need_columns(cdf, cpath_csv, ["patientId", "class"])
    cdf = cdf.drop_duplicates("patientId")
    all_ids = cdf["patientId"].tolist()
    y_all = _label_indices(name, cpath_csv, all_ids, cdf["class"].str.strip().tolist(), class_names, "patientId")
    keep = np.ones(len(all_ids), dtype=bool)
    rng = np.random.default_rng(subset_seed)
    for cls, n in (class_counts or {}).items():
        if cls not in class_names:
            raise LabelError(f"{name}: class_counts names {cls!r}, not one of {list(class_names)}")
        idx = np.flatnonzero(y_all == class_names.index(cls))
        if n > len(idx):
            raise DatasetError(f"{name}: class_counts asks {n} images of {cls!r} but {cpath_csv} has {len(idx)}")
        drop = np.setdiff1d(idx, rng.choice(idx, size=n, replace=False))
        keep[drop] = False
    base = np.flatnonzero(keep)
    sel = base[_subset_ids(name, [all_ids[k] for k in base], ids)]
    ids_sel = [all_ids[k] for k in sel]
    labels = y_all[sel]

    ldf = _read_csv(lpath)
    _need_columns(ldf, lpath, ["patientId", "x", "y", "width", "height", "Target"])
    ldf = ldf[ldf["Target"].str.strip() == "1"]
    pos = {i: k for k, i in enumerate(ids_sel)}
    raw_boxes = [
        (pos[r.patientId], float(r.x), float(r.y), float(r.x) + float(r.width), float(r.y) + float(r.height))
        for r in ldf.itertuples()
        if r.patientId in pos
    ]
    paths = _check_found(name, folder, image_pattern, ids_sel, resolve_paths(folder, image_pattern, ids_sel))

    key = {"kind": "rsna_boxes", "folder": str(folder), "size": size,
           "csv_md5": [file_digest(cpath_csv, memo=not verify), file_digest(lpath, memo=not verify)],
           "ids": hashlib.sha1("\n".join(ids_sel).encode()).hexdigest(), "pattern": image_pattern,
           "classes": list(class_names), "sources": sources_fingerprint(paths, content=verify)}

    def build():
        images, orig = decode_images(paths, size, desc=f"{name}: images", progress=progress)
        h, w = images.shape[1:3]
        all_boxes = np.array(raw_boxes, dtype=np.float32).reshape(-1, 5)
        if len(all_boxes):
            k = all_boxes[:, 0].astype(int)
            sx, sy = w / orig[k, 0], h / orig[k, 1]
            all_boxes[:, 1] *= sx
            all_boxes[:, 3] *= sx
            all_boxes[:, 2] *= sy
            all_boxes[:, 4] *= sy
        m = np.zeros((len(images), h, w), dtype=np.uint8)
        for k, x0, y0, x1, y1 in all_boxes:
            m[int(k), int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))] = 1
        return {"images": images, "masks": m, "boxes": boxes_from_masks(m),
                "has_lesion": m.reshape(len(m), -1).any(axis=1), "all_boxes": all_boxes}

    arrays, cpath = cached_build(name, size, key, build, use_cache=cache)
    arrays.update(labels=labels, ids=np.array(ids_sel))
    if not masks:
        for k in ("masks", "boxes", "has_lesion"):
            arrays.pop(k, None)
    meta = {"kind": "rsna_boxes", "folder": str(folder), "size": size, "cache": cpath}
    return _finish(name, arrays, class_names, meta)


def _read_split_list(path: Path) -> list[str]:
    """Relative image paths listed in a .txt (one per line) or a .mat file (key 'file_list')."""
    if not path.exists():
        raise DatasetMissingError(f"split list {path} not found")
    if path.suffix == ".mat":
        from scipy.io import loadmat

        fl = loadmat(path)["file_list"]
        return [str(np.asarray(e).ravel()[0]) for e in np.asarray(fl, dtype=object).ravel()]
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".dcm")


def load_image_folder(
    folder: Path,
    *,
    name: str,
    class_names,
    num_classes: int | None = None,
    image_pattern: str,
    label_from: str = "parent_dir",
    label: str | None = None,
    extensions=None,
    mask_pattern: str | None = None,
    split_lists: dict | None = None,
    size: int | None = None,
    ids=None,
    masks: bool = True,
    cache: bool = True,
    progress: bool = True,
    verify: bool = False,
    **_,
) -> ImageArrays:
    """Images found by a glob (relative to the folder); id = file stem (relative path when stems clash).

    Hidden files and files inside hidden folders (name starting with '.') are skipped; extensions: keep
    only files with one of these suffixes, case insensitive (e.g. IMAGE_EXTENSIONS).
    label_from='parent_dir': class = name of the image's folder; 'top_dir': class = the first folder
    under `folder` (images may sit in nested folders below it; an image directly in `folder` is an
    error); 'constant': every image has `label`. Class names = the manifest's list, or the sorted
    folder names when none is given. split_lists: {split: .txt/.mat list of relative paths} fills
    ``split`` (unlisted images: ''). The decode cache is keyed by every image and mask file (see the
    module docstring).
    """
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions} if extensions else None
    files = sorted(
        p for p in folder.glob(image_pattern)
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (exts is None or p.suffix.lower() in exts) and p.is_file()
    )
    if not files:
        what = f" with a suffix {sorted(exts)}" if exts else ""
        raise DatasetMissingError(f"{name}: no image{what} matches {folder / image_pattern}")
    if label_from == "constant":
        names = list(class_names) if class_names else [label]
        raw = [label] * len(files)
    else:
        if label_from == "top_dir":
            loose = [p for p in files if p.parent == folder]
            if loose:
                raise DatasetError(
                    f"{name}: image {loose[0]} is not inside a class folder ({len(loose)} such); put every image "
                    f"under {folder}/<class name>/"
                )
            raw = [p.relative_to(folder).parts[0] for p in files]
        else:
            raw = [p.parent.name for p in files]
        names = list(class_names) if class_names else sorted(set(raw))
    if num_classes is not None and len(names) != num_classes:
        raise DatasetError(f"{name}: found {len(names)} classes under {folder} but the manifest says {num_classes}")
    all_ids = [p.stem for p in files]
    if len(set(all_ids)) != len(all_ids):
        all_ids = [str(p.relative_to(folder).with_suffix("")) for p in files]
    y = _label_indices(name, folder / image_pattern, all_ids, raw, names, "image")
    pick = _subset_ids(name, all_ids, ids)
    paths = [files[k] for k in pick]
    ids_sel = [all_ids[k] for k in pick]
    split = None
    if split_lists:
        where_split = {}
        for s, lst in split_lists.items():
            for rel in _read_split_list(folder / lst):
                where_split[rel.replace("\\", "/")] = s
        depth = {len(k.split("/")) for k in where_split} or {1}
        split = np.array([
            next((where_split[k] for d in depth if (k := "/".join(p.parts[-d:])) in where_split), "") for p in paths
        ])

    key = {"kind": "image_folder", "folder": str(folder), "size": size, "pattern": image_pattern,
           "masks": bool(mask_pattern and masks), "mask_pattern": mask_pattern,
           "sources": sources_fingerprint([*paths, *_mask_paths(folder, mask_pattern, ids_sel, masks)],
                                          content=verify)}

    def build():
        out = _decode_with_masks(name, folder, paths, ids_sel, size, mask_pattern, masks, progress)
        return out

    arrays, cpath = cached_build(name, size, key, build, use_cache=cache)
    arrays.update(labels=y[pick], ids=np.array(ids_sel))
    if split is not None:
        arrays["split"] = split
    return _finish(name, arrays, names, {"kind": "image_folder", "folder": str(folder), "size": size, "cache": cpath})


def _natural_classes(raw) -> list[str]:
    """Sorted unique labels; numerically when every label is an integer ('2' before '10')."""
    uniq = sorted(set(raw))
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return uniq


def load_path_csv(
    path: Path,
    *,
    name: str,
    class_names=None,
    size: int | None = None,
    ids=None,
    masks: bool = True,
    cache: bool = True,
    progress: bool = True,
    verify: bool = False,
    **_,
) -> ImageArrays:
    """Your own CSV: a header row ``path,label`` (optional columns ``group``, ``split``; others ignored),
    one image per row; a relative path is relative to the CSV's folder. Class names = class_names, else
    the sorted labels (numerically when all are integers). Decoded like :func:`load_image_csv` (same cache).
    """
    path = Path(path)
    df = _read_csv(path)
    if not {"path", "label"} <= set(df.columns):
        raise DatasetError(
            f"{path}: a CSV of your own images needs a header row 'path,label' (optional columns group, split); "
            f"its columns are {list(df.columns)}"
        )
    empty = df.index[(df["path"].str.strip() == "") | (df["label"].str.strip() == "")]
    if len(empty):
        raise DatasetError(f"{path}: line {int(empty[0]) + 2} has an empty path or label ({len(empty)} such rows)")
    names = list(class_names) if class_names is not None else _natural_classes(df["label"].str.strip())
    return load_image_csv(
        path.parent, name=name, class_names=names, csv=path.name, image_pattern="{id}", id_column="path",
        label_column="label", group_column="group" if "group" in df.columns else None,
        split_column="split" if "split" in df.columns else None, size=size, ids=ids, masks=masks, cache=cache,
        progress=progress, verify=verify,
    )


def load_flowers102(
    folder: Path,
    *,
    name: str,
    class_names,
    num_classes: int | None = None,
    image_pattern: str = "jpg/image_{index:05d}.jpg",
    labels_mat: str = "imagelabels.mat",
    setid_mat: str = "setid.mat",
    size: int | None = None,
    ids=None,
    cache: bool = True,
    progress: bool = True,
    verify: bool = False,
    **_,
) -> ImageArrays:
    """Oxford Flowers-102: labels 1..102 in imagelabels.mat (class names '1'..'102': the official
    release has numeric labels only); official split from setid.mat (trnid/valid/tstid -> train/val/test).
    """
    from scipy.io import loadmat

    lpath, spath = folder / labels_mat, folder / setid_mat
    for p in (lpath, spath):
        if not p.exists():
            raise DatasetMissingError(f"{name}: {p} not found")
    raw = np.asarray(loadmat(lpath)["labels"]).ravel().astype(np.int64)
    n_cls = num_classes or int(raw.max())
    names = list(class_names) if class_names else [str(k) for k in range(1, n_cls + 1)]
    bad = (raw < 1) | (raw > len(names))
    if bad.any():
        raise LabelError(f"{lpath}: label {int(raw[bad][0])} is outside 1..{len(names)} of '{name}'")
    sid = loadmat(spath)
    split_all = np.full(len(raw), "", dtype="<U5")
    for key_mat, s in (("trnid", "train"), ("valid", "val"), ("tstid", "test")):
        split_all[np.asarray(sid[key_mat]).ravel().astype(int) - 1] = s
    all_ids = [f"{k:05d}" for k in range(1, len(raw) + 1)]
    pick = _subset_ids(name, all_ids, ids)
    ids_sel = [all_ids[k] for k in pick]
    paths = [folder / image_pattern.format(index=int(i)) for i in ids_sel]
    _check_found(name, folder, image_pattern.replace("{index:05d}", "{id}"), ids_sel,
                 [p if p.exists() else None for p in paths])
    key = {"kind": "flowers102", "folder": str(folder), "size": size, "md5": [file_digest(lpath, memo=not verify), file_digest(spath, memo=not verify)],
           "ids": hashlib.sha1("\n".join(ids_sel).encode()).hexdigest(),
           "sources": sources_fingerprint(paths, content=verify)}

    def build():
        images, _ = decode_images(paths, size, desc=f"{name}: images", progress=progress)
        return {"images": images}

    arrays, cpath = cached_build(name, size, key, build, use_cache=cache)
    arrays.update(labels=raw[pick] - 1, ids=np.array(ids_sel), split=split_all[pick])
    return _finish(name, arrays, names, {"kind": "flowers102", "folder": str(folder), "size": size, "cache": cpath})


LOADERS: dict[str, Callable[..., ImageArrays]] = {
    "medmnist_npz": load_medmnist_npz,
    "image_csv": load_image_csv,
    "chestxray14": load_chestxray14,
    "rsna_boxes": load_rsna_boxes,
    "image_folder": load_image_folder,
    "flowers102": load_flowers102,
}
