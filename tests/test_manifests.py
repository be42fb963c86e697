"""Manifests validate; broken ones name file+field; loaders read small hand-made files correctly."""
from __future__ import annotations

import hashlib
from pathlib import Path

import medmnist
import numpy as np
import pytest
import yaml
from PIL import Image

from kitlib.data import catalog, sources
from kitlib.data.catalog import (
    MANIFEST_DIR,
    UnknownDatasetError,
    dataset_status,
    fetch,
    format_status_table,
    get_manifest,
    list_datasets,
    load,
)
from kitlib.data.manifest import PAPERS, ManifestError, read_manifest
from kitlib.data.sources import (
    ChecksumError,
    DatasetError,
    DatasetMissingError,
    ImageReadError,
    LabelError,
    boxes_from_masks,
    load_flowers102,
    load_image_csv,
    load_image_folder,
    load_medmnist_npz,
    mask_to_box,
    read_mask,
)

REQUIRED = {
    "skin7", "octmnist", "xray6", "xray9", "pathmnist_lt", "eyepacs", "messidor2", "hyper_kvasir", "aptos2019",
    "rsna_pneumonia", "isic2018_task1", "flowers_lt", "stanford_dogs_lt", "dermamnist", "retinamnist",
    "pneumoniamnist", "breastmnist", "bloodmnist", "pathmnist", "synthetic",
}
MEDMNIST_TASK = {"multi-class": "multiclass", "ordinal-regression": "ordinal", "binary-class": "binary"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own cache and an empty data root."""
    monkeypatch.setenv("KITLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("KITLIB_DATA", str(tmp_path / "data"))


# ---------------------------------------------------------------------------------------------
# manifests


def test_every_manifest_validates_and_the_catalog_is_complete():
    ms = list_datasets()
    names = [m.name for m in ms]
    assert set(names) == REQUIRED
    assert names == sorted(p.stem for p in MANIFEST_DIR.glob("*.yaml"))
    used = {p for m in ms for p in m.papers} | {p for m in ms for s in m.split_protocol for p in s["papers"]}
    assert used == set(PAPERS)  # every paper's datasets are described
    for m in ms:
        assert m.num_classes == (len(m.classes) if m.classes else m.num_classes) >= 1
        for s in m.stands_in_for:
            assert s in REQUIRED, f"{m.name} stands in for unknown {s}"
        for lay in m.layouts():
            assert lay.folder or m.kind == "synthetic"


def test_published_counts_add_up():
    skin = get_manifest("skin7")
    assert sum(skin.counts[0]["values"].values()) == 10015
    assert skin.counts[0]["values"]["nv"] / skin.counts[0]["values"]["df"] == pytest.approx(58.3, abs=0.05)
    assert sum(get_manifest("hyper_kvasir").counts[0]["values"].values()) == 10662
    assert sum(get_manifest("aptos2019").counts[0]["values"].values()) == 3662
    ey = get_manifest("eyepacs")
    assert [sum(c["values"].values()) for c in ey.counts] == [35126, 53576]
    rsna = get_manifest("rsna_pneumonia")
    assert rsna.counts[0]["values"] == {"Normal": 8851, "Lung Opacity": 105, "No Lung Opacity / Not Normal": 6012}
    assert sum(rsna.counts[1]["values"].values()) == 26684
    x6 = get_manifest("xray6").counts[0]["values"]
    assert round(0.8 * x6["Hernia"]) == 88 and abs(0.8 * x6["Atelectasis"] - 3368) < 5  # paper 000 Table 1
    x9 = get_manifest("xray9").counts[0]["values"]
    assert abs(0.75 * x9["Hernia"] - 83) <= 0.5 and abs(0.75 * x9["Atelectasis"] - 3158) < 5  # paper 004 Table 1


@pytest.mark.parametrize("name", ["dermamnist", "retinamnist", "pneumoniamnist", "breastmnist", "bloodmnist",
                                  "pathmnist", "octmnist", "pathmnist_lt"])
def test_medmnist_manifests_match_medmnist_info(name):
    m = get_manifest(name)
    flag = m.loader["flag"]
    info = medmnist.INFO[flag]
    assert m.source["medmnist_flag"] == flag and m.folder == flag
    assert list(m.classes) == [info["label"][str(k)] for k in range(len(info["label"]))]
    assert m.task == MEDMNIST_TASK[info["task"]]
    assert m.licence == info["license"]
    md5 = {f.path: f.md5 for f in m.files}
    assert md5[f"{flag}.npz"] == info["MD5"]
    for s in (64, 128, 224):
        assert md5[f"{flag}_{s}.npz"] == info[f"MD5_{s}"]
    assert m.source["download"] == info["url"].split("?")[0]
    train = m.counts[0]
    assert train["split"].startswith("train") and sum(train["values"].values()) == info["n_samples"]["train"]
    assert [c["total"] for c in m.counts[1:3]] == [info["n_samples"]["val"], info["n_samples"]["test"]]


def _broken(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((MANIFEST_DIR / "skin7.yaml").read_text())
    edit(data)
    path = tmp_path / "skin7.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.pop("licence"), "licence"),
        (lambda d: d.update(classes="nv"), "classes"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d.update(task="regression"), "task"),
        (lambda d: d["files"][0].update(md5="xyz"), "files[0].md5"),
        (lambda d: d["files"][0].update(sizes=3), "files[0].sizes"),
        (lambda d: d["loader"].update(kind="hdf5"), "loader.kind"),
        (lambda d: d["loader"].update(id_column=3), "loader.id_column"),
        (lambda d: d["counts"][0]["values"].update(melanoma=3), "counts[0].values"),
        (lambda d: d["split_protocol"][0].pop("k"), "split_protocol[0].k"),
        (lambda d: d.update(papers=["007"]), "papers"),
        (lambda d: d["copies"][0].pop("files_note", None) or d["copies"][0]["files"].append({"path": "x"}),
         "copies[0].files_note"),
        (lambda d: d.update(name="skin8"), "name"),
    ],
)
def test_a_broken_manifest_names_file_and_field(tmp_path, edit, field):
    path = _broken(tmp_path, edit)
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    msg = str(e.value)
    assert str(path) in msg and f"'{field}'" in msg


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownDatasetError) as e:
        load("skin8")
    assert "skin7" in str(e.value) and "octmnist" in str(e.value)
    with pytest.raises(DatasetError, match="copies: \\['canonical', 'ham10000_200x150'\\]"):
        load("skin7", copy="original_600x450")


# ---------------------------------------------------------------------------------------------
# status, data root, fetch


def test_missing_dataset_status_says_what_to_download_and_where(tmp_path):
    st, detail = dataset_status("aptos2019")
    assert st == "missing"
    assert "kaggle competitions download -c aptos2019-blindness-detection" in detail
    assert str(tmp_path / "data" / "aptos2019") in detail and "train_images/<id_code>.png" in detail
    st, detail = dataset_status("octmnist")
    assert st == "missing" and "python -m kitlib fetch octmnist" in detail and medmnist.INFO["octmnist"]["MD5"] in detail
    with pytest.raises(DatasetMissingError, match="aptos2019-blindness-detection"):
        load("aptos2019")
    with pytest.raises(DatasetMissingError, match="cannot be downloaded automatically"):
        fetch("hyper_kvasir")


def test_checksum_mismatch_names_file_expected_and_found(tmp_path):
    folder = tmp_path / "data" / "retinamnist"
    folder.mkdir()
    (folder / "retinamnist.npz").write_bytes(b"not the official file")
    st, detail = dataset_status("retinamnist")
    assert st == "checksum mismatch"
    assert str(folder / "retinamnist.npz") in detail
    found = hashlib.md5(b"not the official file").hexdigest()
    assert f"md5 expected bd4c0672f1bba3e3a89f0e4e876791e4, found {found}" in detail
    with pytest.raises(ChecksumError):
        load("retinamnist")


def test_data_root_order(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo.parent / "shared" / "data" / "aptos2019").mkdir(parents=True)
    monkeypatch.setattr(catalog, "REPO", repo)
    monkeypatch.delenv("KITLIB_DATA")
    assert catalog.data_root() == repo.parent / "shared" / "data"  # <repo>/data does not exist
    (repo / "data").mkdir(parents=True)
    assert catalog.data_root() == repo / "data"  # first existing wins
    assert catalog.data_roots() == [repo / "data", repo.parent / "shared" / "data"]
    # a dataset folder is found in whichever root holds it
    lay = get_manifest("aptos2019").layouts()[0]
    assert catalog._find_folder(lay, None) == repo.parent / "shared" / "data" / "aptos2019"
    monkeypatch.setenv("KITLIB_DATA", str(tmp_path / "elsewhere"))
    assert catalog.data_root() == tmp_path / "elsewhere"
    assert catalog.data_root(root=tmp_path) == tmp_path


def test_fetch_medmnist_failure_gives_manual_steps(tmp_path, monkeypatch):
    class Offline:
        def __init__(self, **kw):
            raise RuntimeError("Automatic download failed!")

    monkeypatch.setattr(medmnist, "BreastMNIST", Offline)
    with pytest.raises(DatasetMissingError) as e:
        fetch("breastmnist")
    msg = str(e.value)
    assert medmnist.INFO["breastmnist"]["MD5"] in msg and "zenodo.org" in msg
    assert str(tmp_path / "data" / "breastmnist" / "breastmnist.npz") in msg
    assert not (tmp_path / "data" / "breastmnist").exists()  # no empty folder left behind


def test_fetch_medmnist_calls_the_package_download_into_the_folder(tmp_path, monkeypatch):
    calls = []

    class Fake:
        def __init__(self, split, root, size, download, mmap_mode):
            calls.append((root, size, download))

    monkeypatch.setattr(medmnist, "BreastMNIST", Fake)
    st, _ = fetch("breastmnist", sizes=(28, 64))
    assert calls == [(str(tmp_path / "data" / "breastmnist"), 28, True), (str(tmp_path / "data" / "breastmnist"), 64, True)]
    assert st == "missing"  # the fake wrote nothing


def test_status_table_lists_every_dataset(tmp_path):
    table = format_status_table()
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["dataset", "status", "papers", "task", "C"]
    for name in REQUIRED:
        assert any(line.startswith(name + " ") for line in lines)
    assert lines[-1].startswith(f"1 of {len(REQUIRED)} datasets present")  # only synthetic, data root is empty
    skin = next(line for line in lines if line.startswith("skin7 "))
    assert "missing" in skin and str(tmp_path / "data" / "skin7") in skin


# ---------------------------------------------------------------------------------------------
# loaders on hand-made files


def _npz(path: Path, grey: bool, bad_label: bool = False):
    rng = np.random.default_rng(0)
    parts = {"train": 6, "val": 2, "test": 3}
    arrays = {}
    for p, n in parts.items():
        shape = (n, 28, 28) if grey else (n, 28, 28, 3)
        arrays[f"{p}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{p}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    if bad_label:
        arrays["val_labels"][1, 0] = 7
    np.savez(path, **arrays)
    return arrays


def test_medmnist_loader_grey_to_rgb_squeezed_labels_split(tmp_path):
    arrays = _npz(tmp_path / "toy.npz", grey=True)
    a = load_medmnist_npz(tmp_path, name="toy", class_names=["a", "b", "c"], flag="toy", progress=False)
    assert a.images.shape == (11, 28, 28, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images[0, ..., 2], arrays["train_images"][0])
    np.testing.assert_array_equal(a.images[6, ..., 0], arrays["val_images"][0])
    assert a.labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2]
    assert a.split.tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 3
    # a size that is not native: resized from the 28 px file and cached
    b = load_medmnist_npz(tmp_path, name="toy", class_names=["a", "b", "c"], flag="toy", size=32, progress=False)
    assert b.images.shape == (11, 32, 32, 3) and b.meta["native_size"] == 28 and Path(b.meta["cache"]).exists()
    flat = np.full((1, 28, 28, 3), 77, np.uint8)
    assert np.all(sources._resize_stack(flat, 32, "", False) == 77)
    with pytest.raises(ChecksumError, match="md5 expected"):
        load_medmnist_npz(tmp_path, name="toy", class_names=["a", "b", "c"], flag="toy", expected_md5={28: "0" * 32})


def test_medmnist_loader_errors(tmp_path):
    _npz(tmp_path / "toy.npz", grey=False, bad_label=True)
    with pytest.raises(LabelError, match="label 7 is outside the 3 classes"):
        load_medmnist_npz(tmp_path, name="toy", class_names=["a", "b", "c"], flag="toy")
    with pytest.raises(DatasetMissingError, match="no MedMNIST file other_64.npz"):
        load_medmnist_npz(tmp_path, name="toy", class_names=["a"], flag="other", size=64)
    np.savez(tmp_path / "nokey.npz", train_images=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="key 'train_labels' missing"):
        load_medmnist_npz(tmp_path, name="toy", class_names=["a"], flag="nokey")


COLOURS = {"a": (255, 0, 0), "b": (0, 255, 0), "c": (0, 0, 255), "d": (255, 255, 0), "e": (0, 255, 255)}


def _csv_set(folder: Path, rows, with_masks=True):
    """A tiny image_csv dataset: 24x12 PNGs of one colour each, 8x4 masks with a known rectangle."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    lines = ["image_id,dx,lesion_id"]
    for iid, label, group in rows:
        Image.new("RGB", (24, 12), COLOURS[iid]).save(folder / "images" / f"{iid}.png")
        lines.append(f"{iid},{label},{group}")
        if with_masks and iid != "c":  # image c has no mask file
            m = np.zeros((4, 8), np.uint8)
            m[1:3, 2:5] = 255  # rows 1-2, cols 2-4 of an 8x4 mask
            Image.fromarray(m).save(folder / "masks" / f"{iid}_seg.png")
    (folder / "meta.csv").write_text("\n".join(lines) + "\n")


OPTS = dict(csv="meta.csv", id_column="image_id", label_column="dx", image_pattern="images/{id}.png",
            group_column="lesion_id", mask_pattern="masks/{id}_seg.png", progress=False)


def test_image_csv_loader_images_labels_groups_masks_boxes_cache(tmp_path):
    _csv_set(tmp_path, [("a", "nv", "L1"), ("b", "df", "L1"), ("c", "mel", "L2")])
    classes = ["nv", "mel", "df"]
    a = load_image_csv(tmp_path, name="toy", class_names=classes, **OPTS)
    assert a.images.shape == (3, 12, 24, 3)
    assert a.images[1, 5, 5].tolist() == [0, 255, 0]
    assert a.labels.tolist() == [0, 2, 1] and a.groups.tolist() == ["L1", "L1", "L2"]
    assert a.meta["ids"].tolist() == ["a", "b", "c"]
    # mask 8x4 -> nearest x3 to 24x12: mask rows 1-2 -> image rows 3..8, mask cols 2-4 -> image cols 6..14
    assert a.masks.shape == (3, 12, 24)
    assert a.boxes[0].tolist() == [6.0, 3.0, 15.0, 9.0]
    assert np.isnan(a.boxes[2]).all() and a.has_lesion.tolist() == [True, True, False]
    assert a.masks[0].sum() == (15 - 6) * (9 - 3)
    # decoded once, then read from the cache file
    cache = Path(a.meta["cache"])
    assert cache.exists() and cache.parent == tmp_path / "cache"
    (tmp_path / "images" / "a.png").unlink()  # image paths are resolved before the cache is consulted
    with pytest.raises(DatasetMissingError, match="1 of 3 images not found"):
        load_image_csv(tmp_path, name="toy", class_names=classes, **OPTS)
    # size: square resize; ids: subset in file order
    Image.new("RGB", (24, 12), COLOURS["a"]).save(tmp_path / "images" / "a.png")
    c = load_image_csv(tmp_path, name="toy", class_names=classes, size=8, ids=["c", "a"], **OPTS)
    assert c.images.shape == (2, 8, 8, 3) and c.meta["ids"].tolist() == ["a", "c"] and c.labels.tolist() == [0, 1]
    assert c.boxes[0].tolist() == [2.0, 2.0, 5.0, 6.0]  # mask resized nearest to 8x8: cols 2-4, rows 2-5


def test_image_csv_reuses_the_cache(tmp_path, monkeypatch):
    _csv_set(tmp_path, [("a", "nv", "L1"), ("b", "df", "L1")])
    first = load_image_csv(tmp_path, name="toy", class_names=["nv", "df"], **OPTS)
    calls = []
    monkeypatch.setattr(sources, "decode_images", lambda *a, **k: calls.append(1))
    again = load_image_csv(tmp_path, name="toy", class_names=["nv", "df"], **OPTS)
    assert calls == [] and np.array_equal(first.images, again.images) and np.array_equal(first.boxes, again.boxes)


def test_image_csv_unreadable_image_and_unknown_label(tmp_path):
    _csv_set(tmp_path, [("a", "nv", "L1"), ("b", "df", "L2")])
    (tmp_path / "images" / "b.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageReadError) as e:
        load_image_csv(tmp_path, name="toy", class_names=["nv", "df"], **OPTS)
    assert str(tmp_path / "images" / "b.png") in str(e.value)
    with pytest.raises(LabelError) as e:
        load_image_csv(tmp_path, name="toy", class_names=["nv", "mel"], **OPTS)
    msg = str(e.value)
    assert "'df'" in msg and str(tmp_path / "meta.csv") in msg and "image_id='b'" in msg
    with pytest.raises(DatasetError, match=r"column\(s\) \['diagnosis'\] not found"):
        load_image_csv(tmp_path, name="toy", class_names=["nv"], **{**OPTS, "label_column": "diagnosis"})


def test_chestxray14_keeps_single_listed_findings(tmp_path):
    (tmp_path / "images").mkdir()
    rows = [("1.png", "Hernia", "p1"), ("2.png", "Mass|Hernia", "p1"), ("3.png", "No Finding", "p2"),
            ("4.png", "Mass", "p3"), ("5.png", "Nodule", "p3")]
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
    for iid, lab, pid in rows:
        Image.new("L", (16, 16), 100).save(tmp_path / "images" / iid)
        lines.append(f"{iid},{lab},0,{pid}")
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    a = sources.load_chestxray14(tmp_path, name="x", class_names=["Mass", "Hernia"], progress=False)
    assert a.meta["ids"].tolist() == ["1.png", "4.png"] and a.labels.tolist() == [1, 0]
    assert a.groups.tolist() == ["p1", "p3"] and a.images.shape == (2, 16, 16, 3) and (a.images == 100).all()


def test_catalog_load_end_to_end_with_label_map(tmp_path):
    root = tmp_path / "data" / "aptos2019"
    (root / "train_images").mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (30, 20), (10 * i, 0, 0)).save(root / "train_images" / f"id{i}.png")
    (root / "train.csv").write_text("id_code,diagnosis\n" + "".join(f"id{i},{(i * 2) % 5}\n" for i in range(5)))
    assert dataset_status("aptos2019")[0] == "present"
    a = load("aptos2019", size=8, progress=False)
    assert a.class_names == ["no_dr", "mild", "moderate", "severe", "proliferative"]
    assert a.labels.tolist() == [0, 2, 4, 1, 3] and a.images.shape == (5, 8, 8, 3)
    assert a.meta["manifest"] == "aptos2019" and a.images[2, 4, 4, 0] == 20
    with pytest.raises(TypeError, match="unknown option"):
        load("aptos2019", size=8, colour="red")


def test_rsna_boxes_are_scaled_and_rasterised(tmp_path):
    root = tmp_path / "data" / "rsna_pneumonia"
    (root / "img").mkdir(parents=True)
    for pid in ("p1", "p2", "p3"):
        Image.new("L", (16, 16), 50).save(root / "img" / f"{pid}.png")
    (root / "stage_2_detailed_class_info.csv").write_text(
        "patientId,class\np1,Lung Opacity\np1,Lung Opacity\np2,Normal\np3,No Lung Opacity / Not Normal\n")
    (root / "stage_2_train_labels.csv").write_text(
        "patientId,x,y,width,height,Target\np1,2,4,4,2,1\np1,10,10,4,4,1\np2,,,,,0\np3,,,,,0\n")
    a = load("rsna_pneumonia", size=8, image_pattern="img/{id}.png", class_counts={}, progress=False)
    assert a.meta["ids"].tolist() == ["p1", "p2", "p3"] and a.labels.tolist() == [1, 0, 2]
    # boxes (x0,y0,x1,y1) at 16 px: (2,4,6,6) and (10,10,14,14) -> halved at 8 px
    np.testing.assert_allclose(a.meta["all_boxes"], [[0, 1, 2, 3, 3], [0, 5, 5, 7, 7]])
    assert a.boxes[0].tolist() == [1, 2, 7, 7] and np.isnan(a.boxes[1]).all()
    assert a.masks[0].sum() == 2 * 1 + 2 * 2 and a.has_lesion.tolist() == [True, False, False]
    sub = load("rsna_pneumonia", size=8, image_pattern="img/{id}.png",
               class_counts={"Normal": 0}, subset_seed=3, progress=False)
    assert sub.meta["ids"].tolist() == ["p1", "p3"]


def test_image_folder_parent_dir_labels_and_split_lists(tmp_path):
    for cls, n in (("n01-beagle", 3), ("n02-pug", 2)):
        (tmp_path / "Images" / cls).mkdir(parents=True)
        for k in range(n):
            Image.new("RGB", (12, 9), (k, 0, 0)).save(tmp_path / "Images" / cls / f"{cls[:3]}_{k}.jpg")
    (tmp_path / "train.txt").write_text("n01-beagle/n01_0.jpg\nn02-pug/n02_1.jpg\n")
    a = load_image_folder(tmp_path, name="dogs", class_names=None, num_classes=2, image_pattern="Images/*/*.jpg",
                          split_lists={"train": "train.txt"}, size=6, progress=False)
    assert a.class_names == ["n01-beagle", "n02-pug"] and a.labels.tolist() == [0, 0, 0, 1, 1]
    assert a.split.tolist() == ["train", "", "", "", "train"] and a.images.shape == (5, 6, 6, 3)
    with pytest.raises(DatasetError, match="found 2 classes"):
        load_image_folder(tmp_path, name="dogs", class_names=None, num_classes=120, image_pattern="Images/*/*.jpg")
    with pytest.raises(LabelError, match="n02-pug"):
        load_image_folder(tmp_path, name="dogs", class_names=["n01-beagle"], image_pattern="Images/*/*.jpg")


def test_flowers102_labels_and_official_split(tmp_path):
    from scipy.io import savemat

    (tmp_path / "jpg").mkdir()
    for k in range(1, 5):
        Image.new("RGB", (10, 10), (k, k, k)).save(tmp_path / "jpg" / f"image_{k:05d}.jpg")
    savemat(tmp_path / "imagelabels.mat", {"labels": np.array([[1, 3, 3, 2]])})
    savemat(tmp_path / "setid.mat", {"trnid": np.array([[2]]), "valid": np.array([[4]]), "tstid": np.array([[1, 3]])})
    a = load_flowers102(tmp_path, name="fl", class_names=None, num_classes=3, size=4, progress=False)
    assert a.class_names == ["1", "2", "3"] and a.labels.tolist() == [0, 2, 2, 1]
    assert a.split.tolist() == ["test", "train", "test", "val"]


def test_synthetic_delegates_to_make_synthetic():
    from kitlib.data.synthetic import make_synthetic

    a = load("synthetic", size=16, n=60, seed=3)
    b = make_synthetic(size=16, n=60, seed=3)
    assert a.images.shape[1:] == (16, 16, 3) and np.array_equal(a.images, b.images)
    assert np.array_equal(a.labels, b.labels)
    assert dataset_status("synthetic")[0] == "present"


# ---------------------------------------------------------------------------------------------
# masks -> boxes by hand


def test_mask_to_box_by_hand(tmp_path):
    m = np.zeros((6, 8), np.uint8)
    m[1:4, 2:6] = 1  # rows 1..3, cols 2..5
    m[5, 7] = 0
    assert mask_to_box(m).tolist() == [2.0, 1.0, 6.0, 4.0]
    m[5, 0] = 1
    assert mask_to_box(m).tolist() == [0.0, 1.0, 6.0, 6.0]
    assert np.isnan(mask_to_box(np.zeros((3, 3), np.uint8))).all()
    stacked = boxes_from_masks(np.stack([m, np.zeros_like(m)]))
    assert stacked.shape == (2, 4) and stacked.dtype == np.float32 and np.isnan(stacked[1]).all()
    # nearest-neighbour resize x2 keeps the box exactly x2; values 0/255 -> 0/1
    src = np.zeros((4, 4), np.uint8)
    src[1:3, 0:2] = 255
    Image.fromarray(src).save(tmp_path / "m.png")
    big = read_mask(tmp_path / "m.png", 8, 8)
    assert set(np.unique(big)) == {0, 1} and mask_to_box(big).tolist() == [0.0, 2.0, 4.0, 6.0]
