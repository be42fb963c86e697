"""Bad inputs to kitlib.data: a stale or corrupt cache, lossy npz contents, broken manifests, your own data.

Every error is a DatasetError subclass whose message names the culprit (file, array, field); after an
error no cache file is left half-written. All data is made on the fly under tmp_path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from kitlib.cli import main
from kitlib.data import ImageArrays, catalog, sources
from kitlib.data.catalog import UnknownDatasetError, dataset_status, format_status_table, get_manifest, load
from kitlib.data.manifest import ManifestError
from kitlib.data.sources import (
    CacheWarning,
    DatasetError,
    DatasetMissingError,
    ImageReadError,
    LabelError,
    load_image_csv,
    load_image_folder,
    load_medmnist_npz,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Own cache, empty data root, no private manifests."""
    monkeypatch.setenv("KITLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("KITLIB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("KITLIB_MANIFESTS", raising=False)


def _cache_files(tmp_path) -> list[str]:
    """Cache files other than the digest memo (decoded arrays, temporaries)."""
    d = tmp_path / "cache"
    return sorted(p.name for p in d.iterdir() if p.name != "digests.json") if d.exists() else []


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _csv_set(folder: Path):
    """image_csv dataset: a, b (24x12 PNG), masks for both."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for iid, colour in (("a", RED), ("b", GREEN)):
        Image.new("RGB", (24, 12), colour).save(folder / "images" / f"{iid}.png")
        m = np.zeros((12, 24), np.uint8)
        m[2:6, 3:9] = 255
        Image.fromarray(m).save(folder / "masks" / f"{iid}_seg.png")
    (folder / "meta.csv").write_text("image_id,dx\na,nv\nb,mel\n")


CSV_OPTS = dict(name="toy", class_names=["nv", "mel"], csv="meta.csv", id_column="image_id", label_column="dx",
                image_pattern="images/{id}.png", mask_pattern="masks/{id}_seg.png", progress=False)


# ---------------------------------------------------------------------------------------------
# 4. the cache notices change and survives corruption


def test_replaced_image_is_decoded_again_not_served_from_the_cache(tmp_path):
    _csv_set(tmp_path)
    first = load_image_csv(tmp_path, **CSV_OPTS)
    assert first.images[0, 0, 0].tolist() == list(RED)
    Image.new("RGB", (24, 12), BLUE).save(tmp_path / "images" / "a.png")  # same CSV, new pixels
    again = load_image_csv(tmp_path, **CSV_OPTS)
    assert again.images[0, 0, 0].tolist() == list(BLUE)
    assert again.meta["cache"] != first.meta["cache"]


def test_deleted_mask_is_noticed(tmp_path):
    _csv_set(tmp_path)
    assert load_image_csv(tmp_path, **CSV_OPTS).has_lesion.tolist() == [True, True]
    (tmp_path / "masks" / "b_seg.png").unlink()
    again = load_image_csv(tmp_path, **CSV_OPTS)
    assert again.has_lesion.tolist() == [True, False] and again.masks[1].sum() == 0


def test_image_folder_notices_a_same_size_replacement(tmp_path):
    # BMP files of one size always have the same byte count: only the mtime (or content) tells them apart
    (tmp_path / "imgs" / "x").mkdir(parents=True)
    path = tmp_path / "imgs" / "x" / "one.bmp"
    Image.new("RGB", (8, 8), RED).save(path)
    opts = dict(name="f", class_names=None, image_pattern="*/*.bmp", progress=False)
    assert load_image_folder(tmp_path / "imgs", **opts).images[0, 0, 0].tolist() == list(RED)
    st = path.stat()
    Image.new("RGB", (8, 8), GREEN).save(path)
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_image_folder(tmp_path / "imgs", **opts).images[0, 0, 0].tolist() == list(GREEN)
    # same size and the old mtime put back: only verify=True (content hashes) notices
    Image.new("RGB", (8, 8), BLUE).save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_image_folder(tmp_path / "imgs", verify=True, **opts).images[0, 0, 0].tolist() == list(BLUE)


def test_corrupt_cache_file_is_deleted_and_rebuilt_with_a_warning(tmp_path):
    _csv_set(tmp_path)
    first = load_image_csv(tmp_path, **CSV_OPTS)
    cache = Path(first.meta["cache"])
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # truncated: raised BadZipFile before
    with pytest.warns(CacheWarning, match=f"cache file {cache} is corrupt"):
        again = load_image_csv(tmp_path, **CSV_OPTS)
    assert np.array_equal(again.images, first.images) and np.array_equal(again.masks, first.masks)
    assert zipfile.is_zipfile(cache) and _cache_files(tmp_path) == [cache.name]  # rebuilt, no temporaries


def _checksummed_manifest(tmp_path, monkeypatch) -> Path:
    """A manifest dir holding one dataset 'sums' whose one file has a known md5 (not a key file)."""
    import hashlib

    folder = tmp_path / "data" / "sums"
    folder.mkdir()
    f = folder / "blob.bin"
    f.write_bytes(b"A" * 64)
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    shutil.copy(REPO / "kitlib" / "data" / "manifests" / "synthetic.yaml", mdir / "synthetic.yaml")
    data = yaml.safe_load((REPO / "kitlib" / "data" / "manifests" / "breastmnist.yaml").read_text())
    data.update(name="sums", folder="sums", copies=[], checksum_list=None,
                files=[{"path": "blob.bin", "md5": hashlib.md5(b"A" * 64).hexdigest()}])
    data["loader"] = {"kind": "image_folder", "image_pattern": "*/*.png"}
    (mdir / "sums.yaml").write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    monkeypatch.setattr(catalog, "MANIFEST_DIR", mdir)
    return f


def test_verify_rehashes_instead_of_trusting_remembered_digests(tmp_path, monkeypatch, capsys):
    f = _checksummed_manifest(tmp_path, monkeypatch)
    assert dataset_status("sums", verify=True)[0] == "present"  # its digest is now remembered
    st = f.stat()
    f.write_bytes(b"B" * 64)  # same size, then the old mtime put back
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dataset_status("sums")[0] == "present"  # non-key file: not hashed without --verify
    status, detail = dataset_status("sums", verify=True)
    assert status == "checksum mismatch" and str(f) in detail
    main(["datasets", "--verify"])
    assert "checksum mismatch" in capsys.readouterr().out


# --- npz: no silent conversions


def _npz_arrays(size=28):
    rng = np.random.default_rng(0)
    out = {}
    for part, n in (("train", 6), ("val", 2), ("test", 3)):
        out[f"{part}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        out[f"{part}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    return out


def _float_inexact(a):
    a["train_images"] = np.full((6, 28, 28, 3), 0.5, np.float32)


def _float_255(a):
    a["train_images"] = a["train_images"].astype(np.float32)
    a["train_images"][0, 0, 0, 0] = 255.0


def _nan(a):
    a["val_images"] = a["val_images"].astype(np.float32) / 255
    a["val_images"][1, 2, 3, 0] = np.nan


def _out_of_range(a):
    a["test_images"] = a["test_images"].astype(np.int16)
    a["test_images"][0, 0, 0, 0] = 300


def _negative(a):
    a["test_images"] = a["test_images"].astype(np.int16)
    a["test_images"][2, 0, 0, 1] = -4


def _float_labels(a):
    a["val_labels"] = np.array([[0.0], [1.5]])


def _split_sizes(a):
    a["val_images"] = np.zeros((2, 32, 32, 3), np.uint8)


def _object_labels(a):
    a["train_labels"] = np.array([0, 1, 2, "x", 1, 2], dtype=object)


def _length(a):
    a["test_labels"] = a["test_labels"][:2]


NPZ_CASES = {
    "float_not_k_over_255": (_float_inexact, ["'train_images'", "not multiples of 1/255"]),
    "float_0_255": (_float_255, ["'train_images'", "values in [0, 255]", "uint8"]),
    "nan": (_nan, ["'val_images'", "NaN", "(1, 2, 3, 0)"]),
    "above_255": (_out_of_range, ["'test_images'", "[0, 300]", "outside 0-255"]),
    "negative": (_negative, ["'test_images'", "[-4,", "outside 0-255"]),
    "float_labels": (_float_labels, ["'val_labels'", "non-integer label 1.5"]),
    "split_sizes": (_split_sizes, ["'val_images'", "'train_images'", "32x32", "28x28"]),
    "object_array": (_object_labels, ["'train_labels'", "dtype=object"]),
    "lengths": (_length, ["test_images holds 3 images but test_labels 2"]),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_npz_refuses_silent_conversions(tmp_path, case):
    mutate, expect = NPZ_CASES[case]
    arrays = _npz_arrays()
    mutate(arrays)
    path = tmp_path / "toy.npz"
    np.savez(path, **arrays, allow_pickle=True) if case == "object_array" else np.savez(path, **arrays)
    for call in (lambda: load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", size=32,
                                           progress=False),
                 lambda: load(str(path), size=32, progress=False)):
        with pytest.raises(DatasetError) as e:
            call()
        msg = str(e.value)
        assert str(path) in msg and all(s in msg for s in expect), msg
        assert _cache_files(tmp_path) == []  # nothing half-written


def test_npz_exact_float_images_are_scaled_from_0_1(tmp_path):
    arrays = _npz_arrays()
    want = arrays["train_images"].copy()
    arrays["train_images"] = (want / 255.0).astype(np.float32)
    np.savez(tmp_path / "toy.npz", **arrays)
    a = load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", progress=False)
    assert a.images.dtype == np.uint8 and np.array_equal(a.images[:6], want)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_npz_archive_names_the_file(tmp_path, how):
    path = tmp_path / "toy.npz"
    np.savez(path, **_npz_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"not a zip at all" * 10)
    with pytest.raises(DatasetError) as e:
        load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", size=32, progress=False)
    assert str(path) in str(e.value) and "re-download or re-save it" in str(e.value)
    assert _cache_files(tmp_path) == []


def test_npz_corrupt_member_names_the_array(tmp_path):
    path = tmp_path / "toy.npz"
    np.savez(path, **_npz_arrays())
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("val_images.npy")
    start = info.header_offset + 30 + len(info.filename) + 200  # inside val_images' data: CRC now fails
    raw[start:start + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"array 'val_images' cannot be read .*the file is corrupt"):
        load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", progress=False)


# --- one invalid manifest is one error row


def test_one_invalid_manifest_is_an_error_row_and_the_rest_are_listed(tmp_path, monkeypatch, capsys):
    mdir = tmp_path / "manifests"
    shutil.copytree(REPO / "kitlib" / "data" / "manifests", mdir)
    data = yaml.safe_load((mdir / "skin7.yaml").read_text())
    data["task"] = "detection"
    (mdir / "skin7.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(catalog, "MANIFEST_DIR", mdir)
    table = format_status_table()
    lines = table.splitlines()
    row = next(line for line in lines if line.startswith("skin7 "))
    assert "invalid manifest" in row and f"{mdir / 'skin7.yaml'}: field 'task'" in row
    assert any(line.startswith("retinamnist ") for line in lines) and any(line.startswith("xray6 ") for line in lines)
    assert lines[-1].startswith("1 of 20 datasets present; 1 invalid manifest(s)")
    assert main(["datasets"]) == 1
    out = capsys.readouterr().out
    assert "invalid manifest" in out and "octmnist" in out
    with pytest.raises(ManifestError, match="field 'task'"):
        get_manifest("skin7")


# ---------------------------------------------------------------------------------------------
# 5. your own data in one line


def _user_folder(root: Path) -> Path:
    """my_lesions/{nv,mel}/...: mixed suffixes and case, a nested folder, hidden junk and a text file."""
    top = root / "my_lesions"
    (top / "nv" / "clinic2").mkdir(parents=True)
    (top / "mel").mkdir()
    (top / ".thumbs").mkdir()
    Image.new("RGB", (16, 16), RED).save(top / "nv" / "n1.PNG")
    Image.new("RGB", (16, 16), RED).save(top / "nv" / "n2.jpeg", quality=100)
    Image.new("RGB", (16, 16), RED).save(top / "nv" / "clinic2" / "n3.JPG", quality=100)
    Image.new("L", (16, 16), 0).save(top / "mel" / "m1.bmp")
    Image.new("RGB", (16, 16), BLUE).save(top / "mel" / "m2.TIF")
    (top / "mel" / "._m2.TIF").write_bytes(b"AppleDouble junk")  # hidden: skipped, never decoded
    (top / ".DS_Store").write_bytes(b"junk")
    Image.new("RGB", (16, 16), GREEN).save(top / ".thumbs" / "t.png")  # hidden folder: skipped
    (top / "mel" / "notes.txt").write_text("not an image")
    return top


def test_load_a_folder_of_class_folders(tmp_path, monkeypatch):
    top = _user_folder(tmp_path)
    a = load(str(top), progress=False)
    assert isinstance(a, ImageArrays) and a.name == "my_lesions"
    assert a.class_names == ["mel", "nv"] and a.class_counts().tolist() == [2, 3]
    assert a.images.shape == (5, 16, 16, 3)
    assert sorted(a.meta["ids"].tolist()) == ["m1", "m2", "n1", "n2", "n3"]
    assert a.images[a.meta["ids"].tolist().index("m2"), 0, 0].tolist() == list(BLUE)
    assert Path(a.meta["cache"]).exists() and a.meta["user_data"]
    # the decode cache serves the second call; Path objects and size= work too
    monkeypatch.setattr(sources, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    b = load(top, progress=False)
    assert np.array_equal(a.images, b.images) and b.labels.tolist() == a.labels.tolist()
    monkeypatch.undo()
    monkeypatch.setenv("KITLIB_CACHE", str(tmp_path / "cache"))
    assert load(top, size=8, progress=False).images.shape == (5, 8, 8, 3)
    # as a notebook does it: load(name, **dataset_options.get(name, {}))
    name = str(top)
    assert len(load(name, **{name: {"size": 8}}.get(name, {}))) == 5
    assert load(top, classes=["nv", "mel"], progress=False).class_counts().tolist() == [3, 2]


def test_user_folder_errors_name_the_file(tmp_path):
    top = _user_folder(tmp_path)
    Image.new("RGB", (16, 16), RED).save(top / "loose.png")
    with pytest.raises(DatasetError, match=f"image {top / 'loose.png'} is not inside a class folder"):
        load(top, progress=False)
    (top / "loose.png").unlink()
    (top / "nv" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageReadError, match=str(top / "nv" / "broken.png")):
        load(top, progress=False)
    assert _cache_files(tmp_path) == []
    (top / "nv" / "broken.png").unlink()
    Image.new("RGB", (20, 16), RED).save(top / "nv" / "wide.png")
    with pytest.raises(DatasetError, match="pass size=<pixels>"):
        load(top, progress=False)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match=f"no image with a suffix .* matches {empty}"):
        load(empty)
    assert _cache_files(tmp_path) == []


def test_load_a_csv_of_path_label_rows(tmp_path):
    (tmp_path / "imgs").mkdir()
    for k, colour in enumerate((RED, GREEN, BLUE)):
        Image.new("RGB", (10, 10), colour).save(tmp_path / "imgs" / f"{k}.png")
    absolute = tmp_path / "imgs" / "2.png"
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\nimgs/0.png,10\nimgs/1.png,2\n{absolute},2\n")
    a = load(str(csv), progress=False)
    assert a.name == "labels" and a.class_names == ["2", "10"] and a.labels.tolist() == [1, 0, 0]
    assert a.images[2, 0, 0].tolist() == list(BLUE) and Path(a.meta["cache"]).exists()
    bad = tmp_path / "noheader.csv"
    bad.write_text("imgs/0.png,10\n")
    with pytest.raises(DatasetError, match=f"{bad}: a CSV of your own images needs a header row 'path,label'"):
        load(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nimgs/9.png,a\n")
    with pytest.raises(DatasetMissingError, match="imgs/9.png"):
        load(missing, progress=False)
    with pytest.raises(LabelError, match="'10'"):
        load(csv, classes=["2"], progress=False)
    assert _cache_files(tmp_path) == [Path(a.meta["cache"]).name]


def test_load_a_medmnist_style_npz(tmp_path):
    arrays = {k: v for k, v in _npz_arrays(size=40).items() if not k.startswith("val")}  # no val split
    path = tmp_path / "scans.npz"
    np.savez(path, **arrays)
    a = load(str(path), progress=False)
    assert a.name == "scans" and a.images.shape == (9, 40, 40, 3) and a.class_names == ["0", "1", "2"]
    assert a.split.tolist() == ["train"] * 6 + ["test"] * 3 and a.meta["cache"] is None
    b = load(path, size=20, progress=False)
    assert b.images.shape == (9, 20, 20, 3) and Path(b.meta["cache"]).exists()


def test_a_path_that_does_not_exist_says_so(tmp_path):
    gone = tmp_path / "no" / "such_folder"
    with pytest.raises(DatasetMissingError) as e:
        load(str(gone))
    assert f"{gone}: no such file or folder" in str(e.value) and not isinstance(e.value, UnknownDatasetError)
    with pytest.raises(DatasetMissingError, match="gone.npz: no such file or folder"):
        load("gone.npz")
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'skin8'"):
        load("skin8")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['flag'\]"):
        load(_user_folder(tmp_path), flag="x")


def test_private_manifest_folder_needs_no_provenance(tmp_path, monkeypatch, capsys):
    top = _user_folder(tmp_path)
    mdir = tmp_path / "my_manifests"
    mdir.mkdir()
    (mdir / "lesions.yaml").write_text(yaml.safe_dump({
        "classes": ["nv", "mel"], "folder": str(top),
        "loader": {"kind": "image_folder", "image_pattern": "**/*", "label_from": "top_dir",
                   "extensions": [".png", ".jpg", ".jpeg", ".bmp", ".tif"]},
    }))
    (mdir / "broken.yaml").write_text(yaml.safe_dump({"classes": ["a"], "folder": "x", "loader": {"kind": "csv"}}))
    (mdir / "skin7.yaml").write_text(yaml.safe_dump({"classes": ["a"], "folder": "x", "loader": {"kind": "synthetic"}}))
    monkeypatch.setenv("KITLIB_MANIFESTS", str(mdir))
    m = get_manifest("lesions")
    assert m.title == "lesions (private data)" and m.papers == () and m.licence == "private"
    assert dataset_status("lesions") == ("present", str(top))
    a = load("lesions", progress=False)
    assert a.name == "lesions" and a.class_counts().tolist() == [3, 2]
    table = format_status_table()
    rows = {line.split()[0]: line for line in table.splitlines()[2:-1]}
    assert "present" in rows["lesions"]
    assert "invalid manifest" in rows["broken"] and f"{mdir / 'broken.yaml'}: field 'loader.kind'" in rows["broken"]
    assert "invalid manifest" in rows["skin7"] and "is a built-in dataset" in rows["skin7"]
    assert "present" in rows["synthetic"] and "missing" in rows["retinamnist"]
    assert main(["datasets"]) == 1


def test_the_manifests_are_package_data():
    assert catalog.MANIFEST_DIR == REPO / "kitlib" / "data" / "manifests"
    assert (REPO / "data_manifests" / "skin7.yaml").resolve() == (catalog.MANIFEST_DIR / "skin7.yaml").resolve()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"kitlib.data" = ["manifests/*.yaml"]' in pyproject


@pytest.mark.slow
def test_a_built_wheel_holds_the_manifests(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "kitlib", src / "kitlib", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          str(src), "-w", str(tmp_path / "whl")], capture_output=True, text=True)
    if res.returncode != 0 and "No module named" in res.stderr:
        pytest.skip(f"cannot build without isolation here: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "whl").glob("kitlib-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).stem for n in names if n.startswith("kitlib/data/manifests/") and n.endswith(".yaml")}
    assert shipped == {p.stem for p in catalog.MANIFEST_DIR.glob("*.yaml")} and len(shipped) == 20
