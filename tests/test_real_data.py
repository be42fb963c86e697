"""Real data in ../shared/data: RetinaMNIST (official npz) and HAM10000 (= Skin7, resized copy + masks)."""
from __future__ import annotations

from pathlib import Path

import medmnist
import numpy as np
import pandas as pd
import pytest

from kitlib.data.catalog import dataset_status, get_manifest, load
from kitlib.data.sources import file_digest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent")


@pytest.fixture(autouse=True)
def _shared_root(monkeypatch):
    monkeypatch.setenv("KITLIB_DATA", str(SHARED))


@pytest.mark.skipif(not (SHARED / "retinamnist" / "retinamnist.npz").exists(), reason="retinamnist.npz absent")
def test_retinamnist_checksum_and_counts():
    m = get_manifest("retinamnist")
    want = next(f.md5 for f in m.files if f.path == "retinamnist.npz")
    assert want == medmnist.INFO["retinamnist"]["MD5"]
    assert file_digest(SHARED / "retinamnist" / "retinamnist.npz") == want
    assert dataset_status("retinamnist") == ("present", str(SHARED / "retinamnist"))
    a = load("retinamnist")
    assert a.images.shape == (1600, 28, 28, 3) and a.class_names == ["0", "1", "2", "3", "4"]
    train = a.labels[a.split == "train"]
    assert np.bincount(train, minlength=5).tolist() == [486, 128, 206, 194, 66]
    assert list(m.counts[0]["values"].values()) == [486, 128, 206, 194, 66]
    assert [(a.split == s).sum() for s in ("val", "test")] == [120, 400]


HAM = SHARED / "ham10000"
needs_ham = pytest.mark.skipif(not (HAM / "HAM10000_metadata.csv").exists(), reason="ham10000 copy absent")


@needs_ham
def test_skin7_is_found_as_the_resized_copy_and_verifies():
    st, detail = dataset_status("skin7", verify=True)  # hashes all 20,033 files listed in MANIFEST.md5 (~1 s)
    assert st == "present" and str(HAM) in detail and "ham10000_200x150" in detail


@needs_ham
def test_ham10000_loads_small_with_counts_groups_and_boxes():
    a = load("skin7", size=32, progress=False)  # decoded once (~20 s on 2 cores), then cached
    assert a.meta["layout"] == "ham10000_200x150"
    assert a.images.shape == (10015, 32, 32, 3) and a.images.dtype == np.uint8
    counts = dict(zip(a.class_names, a.class_counts().tolist()))
    assert counts == {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
    assert len(np.unique(a.groups)) == 7470 and a.groups[0].startswith("HAM_")
    meta = pd.read_csv(HAM / "HAM10000_metadata.csv").set_index("image_id")
    assert (meta.loc[a.meta["ids"], "lesion_id"].to_numpy() == a.groups).all()
    assert a.masks.shape == (10015, 32, 32) and a.has_lesion.all()
    x0, y0, x1, y1 = a.boxes.T
    assert (x0 < x1).all() and (y0 < y1).all() and x1.max() <= 32 and y1.max() <= 32


@needs_ham
def test_mask_boxes_agree_with_the_metadata_ext_boxes():
    ext = pd.read_csv(HAM / "HAM10000_metadata_ext.csv")
    ids = np.random.default_rng(0).choice(ext["image_id"].to_numpy(), 60, replace=False).tolist()
    a = load("skin7", ids=ids, cache=False, progress=False)  # native 200x150, masks resized nearest from 600x450
    assert a.images.shape == (60, 150, 200, 3)
    ref = ext.set_index("image_id").loc[a.meta["ids"], ["left", "top", "right", "bottom"]].to_numpy(float)
    diff = np.abs(a.boxes - ref)
    assert diff.max() <= 3, f"largest disagreement {diff.max()} px"
    assert np.median(diff) <= 1
