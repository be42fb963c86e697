"""kitlib.data core: synthetic set, splits, transforms, TorchImageSet, loader."""
import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from kitlib.data import (IMAGENET_MEAN, IMAGENET_STD, ImageArrays, TorchImageSet, build_transform, carve_val,
                         check_split, denormalize, kfold, long_tail, make_loader, make_synthetic, official,
                         ratio_split)
from kitlib.data.synthetic import class_profile


@pytest.fixture(scope="module")
def syn():
    return make_synthetic(n=700, num_classes=7, ratio=50.0, size=32, seed=0)


# ---------------------------------------------------------------- synthetic
def test_synthetic_deterministic(syn):
    again = make_synthetic(n=700, num_classes=7, ratio=50.0, size=32, seed=0)
    assert again.images.tobytes() == syn.images.tobytes()
    assert again.masks.tobytes() == syn.masks.tobytes()
    assert np.array_equal(again.labels, syn.labels) and np.array_equal(again.boxes, syn.boxes)
    other = make_synthetic(n=700, num_classes=7, ratio=50.0, size=32, seed=1)
    assert other.images.tobytes() != syn.images.tobytes()
    assert not np.array_equal(other.labels, syn.labels)  # same counts, different order


def test_synthetic_arrays_and_meta(syn):
    assert syn.images.shape == (700, 32, 32, 3) and syn.images.dtype == np.uint8
    assert syn.masks.shape == (700, 32, 32) and syn.masks.dtype == np.uint8
    assert set(np.unique(syn.masks)) == {0, 1}
    assert syn.boxes.shape == (700, 4) and syn.boxes.dtype == np.float32
    assert syn.has_lesion.dtype == bool and syn.has_lesion.all()
    assert syn.class_names[0] == "class0 (major)" and syn.class_names[-1] == "class6 (minor)"
    assert syn.meta["seed"] == 0 and syn.meta["ratio"] == 50.0 and syn.meta["size"] == 32
    assert syn.meta["class_counts"] == syn.class_counts().tolist()
    # the images are not flat: background and lesion both vary
    assert syn.images.std() > 10


def test_class_profile_exponential():
    c = class_profile(3000, 7, 50.0)
    assert c.sum() == 3000
    assert np.all(np.diff(c) < 0)
    # n_c = n_max * rho^(-c/(K-1)) up to rounding, n_max = 3000 / sum_c 50^(-c/6) = 1452.4
    rel = 50.0 ** (-np.arange(7) / 6)
    expect = 3000 / rel.sum() * rel
    assert np.all(np.abs(c - expect) <= 1.0)
    assert c[0] / c[-1] == pytest.approx(50.0, rel=0.05)
    assert class_profile(100, 2, 4.0).tolist() == [80, 20]


def test_synthetic_class_profile(syn):
    counts = syn.class_counts()
    assert counts.sum() == 700 and np.all(np.diff(counts) < 0)
    assert counts.tolist() == class_profile(700, 7, 50.0).tolist()


def test_synthetic_masks_inside_boxes(syn):
    for i in range(0, 700, 7):
        ys, xs = np.nonzero(syn.masks[i])
        x0, y0, x1, y1 = syn.boxes[i]
        assert len(xs) > 0
        # tight boxes, x1/y1 exclusive
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_synthetic_lesion_darker_than_skin(syn):
    lum = syn.images.astype(float).mean(-1)
    m = syn.masks.astype(bool)
    inside = (lum * m).sum((1, 2)) / m.sum((1, 2))
    outside = (lum * ~m).sum((1, 2)) / (~m).sum((1, 2))
    assert np.mean(inside < outside) > 0.95


def test_synthetic_bad_args():
    with pytest.raises(ValueError, match="ratio"):
        make_synthetic(n=50, ratio=0.5)
    with pytest.raises(ValueError, match="num_classes"):
        make_synthetic(n=3, num_classes=7)


# ---------------------------------------------------------------- splits
def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_kfold_disjoint_covering_stratified():
    y = _labels([100, 50, 25, 10])
    folds = kfold(y, 5, seed=0)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(y)))  # each sample tested exactly once
    for tr, te in folds:
        assert tr.dtype == np.int64 and te.dtype == np.int64
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
        assert np.bincount(y[te]).tolist() == [20, 10, 5, 2]  # exact stratification
    again = kfold(y, 5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not np.array_equal(kfold(y, 5, seed=1)[0][1], folds[0][1])


def test_kfold_groups_never_straddle():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(120), rng.integers(1, 4, 120))
    glabel = rng.integers(0, 3, 120)
    y = glabel[groups]
    for tr, te in kfold(y, 4, seed=0, groups=groups):
        assert len(np.intersect1d(groups[tr], groups[te])) == 0
        assert len(tr) + len(te) == len(y)
        assert set(y[te]) == {0, 1, 2}


def test_ratio_split_three_parts():
    y = _labels([400, 200, 100, 40])
    tr, va, te = ratio_split(y, (0.75, 0.05, 0.2), seed=0)
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(len(y)))
    assert len(te) == 148 and len(va) == 37  # 20% of 740; 5% of 740
    for part, frac in ((te, 0.2), (va, 0.05)):
        assert np.allclose(np.bincount(y[part], minlength=4), frac * np.array([400, 200, 100, 40]), atol=1)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), ratio_split(y, (7.5, 0.5, 2), seed=0)))


def test_ratio_split_groups():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(300), rng.integers(1, 4, 300))
    y = rng.integers(0, 2, 300)[groups]
    tr, te = ratio_split(y, (0.7, 0.3), seed=0, groups=groups)
    assert len(np.intersect1d(groups[tr], groups[te])) == 0
    assert abs(len(te) / len(y) - 0.3) < 0.05


def test_carve_val_groups():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(200), rng.integers(1, 4, 200))
    y = rng.integers(0, 3, 200)[groups]
    idx = np.flatnonzero(groups < 150)
    a, v = carve_val(idx, y, 0.1, seed=0, groups=groups)
    assert np.array_equal(np.sort(np.concatenate([a, v])), idx)
    assert len(np.intersect1d(groups[a], groups[v])) == 0
    assert abs(len(v) / len(idx) - 0.1) < 0.04


def test_carve_val_inside_train():
    y = _labels([200, 60, 20])
    tr, te = kfold(y, 5, seed=0)[0]
    a, v = carve_val(tr, y, 0.1, seed=0)
    assert np.array_equal(np.sort(np.concatenate([a, v])), tr)
    assert np.bincount(y[v]).tolist() == [16, 5, 2]  # 10% of 160/48/16, rounded


def test_long_tail_ratio():
    y = _labels([500, 500, 500, 500, 500])
    idx = np.arange(len(y))
    lt = long_tail(idx, y, 100.0, seed=0)
    counts = np.bincount(y[lt])
    # n_r = round(500 * 100^(-r/4)) = 500, 158, 50, 16, 5
    assert sorted(counts.tolist(), reverse=True) == [500, 158, 50, 16, 5]
    assert counts.max() / counts.min() == 100.0
    assert np.array_equal(lt, long_tail(idx, y, 100.0, seed=0))
    # order by count: the largest class keeps all its samples
    y2 = _labels([50, 300, 100])
    c2 = np.bincount(y2[long_tail(np.arange(len(y2)), y2, 10.0, seed=0)])
    assert c2.tolist() == [30, 300, 95]  # ranks: class1 keeps 300, class2 300/sqrt(10) = 95, class0 300/10 = 30


def test_official_and_check_split(syn):
    arr = ImageArrays(images=np.zeros((4, 2, 2, 3), np.uint8), labels=[0, 1, 0, 1], class_names=["a", "b"],
                      split=np.array(["train", "test", "train", "train"]))
    parts = official(arr)
    assert parts["train"].tolist() == [0, 2, 3] and parts["test"].tolist() == [1]
    with pytest.raises(ValueError, match="no official split"):
        official(syn)
    check_split(arr.labels, parts["train"], arr.class_names, "train")  # both classes present
    with pytest.raises(ValueError, match=r"test: no sample of class\(es\) 'a' \(label 0\)"):
        check_split(arr.labels, parts["test"], arr.class_names, "test")


# ---------------------------------------------------------------- transforms
def _img_mask():
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g)
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, 3:9, 1:5] = 1
    return img, mask


def test_transform_test_shapes_and_normalisation():
    img, mask = _img_mask()
    t = build_transform(False, 16)
    x, m = t(tv_tensors.Image(img), tv_tensors.Mask(mask))
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    expect = (img.float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(x, expect, atol=1e-6)
    assert torch.equal(m, mask)  # not normalised
    assert torch.allclose(denormalize(x), img.float() / 255, atol=1e-6)
    # resize + centre crop
    x, m = build_transform(False, 32, crop=24)(img, mask)
    assert x.shape == (3, 24, 24) and m.shape == (1, 24, 24) and set(m.unique().tolist()) == {0, 1}
    assert build_transform(False, 8)(img).shape == (3, 8, 8)


def test_transform_mask_follows_flip_exactly():
    img, mask = _img_mask()
    t = build_transform(True, 16, flip=True)
    seen = set()
    for s in range(12):
        torch.manual_seed(s)
        x, m = t(img, mask)
        flipped = bool(m[0, 3, 15 - 1] == 1)
        seen.add(flipped)
        ref = img.flip(-1) if flipped else img
        ref_m = mask.flip(-1) if flipped else mask
        assert torch.equal(m, ref_m)
        assert torch.allclose(denormalize(x), ref.float() / 255, atol=1e-6)
    assert seen == {True, False}


def test_transform_geometry_and_jitter_keep_mask_aligned():
    # a mask that equals "pixel is bright": after any rotation/crop/flip the two still coincide
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    img[:, 8:20, 10:26] = 255
    mask = (img[:1] > 0).to(torch.uint8)
    t = build_transform(True, 32, crop=28, rotation=30, color_jitter=0.5, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    for _ in range(5):
        x, m = t(img, mask)
        assert x.shape == (3, 28, 28) and m.shape == (1, 28, 28) and m.dtype == torch.uint8
        lum = x.mean(0)
        bright = lum > (lum.max() + lum.min()) / 2
        assert (bright == m[0].bool()).float().mean() > 0.97
        assert x.min() >= 0 and x.max() <= 1


def test_transform_bad_args():
    with pytest.raises(ValueError, match="crop"):
        build_transform(True, 16, crop=20)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        build_transform(False, 16)(torch.zeros(16, 16, 3, dtype=torch.uint8))


# ---------------------------------------------------------------- TorchImageSet and loader
def test_torchset_items_and_views(syn):
    idx = np.arange(10, 40)
    ds = TorchImageSet(syn, build_transform(True, 32, rotation=20, color_jitter=0.4), views=2, indices=idx)
    assert len(ds) == 30 and np.array_equal(ds.labels, syn.labels[idx])
    assert ds.class_counts().tolist() == np.bincount(syn.labels[idx], minlength=7).tolist()
    assert ds.num_classes == 7 and ds.class_names == syn.class_names
    torch.manual_seed(0)
    it = ds[3]
    assert it["index"] == 13 and it["label"].dtype == torch.int64 and int(it["label"]) == syn.labels[13]
    assert it["image"].shape == (3, 32, 32) and it["image"].dtype == torch.float32
    assert it["mask"].shape == (1, 32, 32) and it["mask"].dtype == torch.float32
    assert it["has_lesion"].dtype == torch.bool and bool(it["has_lesion"])
    assert not torch.equal(it["image"], it["image2"])  # two independent random views
    assert it["mask2"].shape == (1, 32, 32)
    # test transform: exact pixels of the row, mask equals the stored one
    plain = TorchImageSet(syn, build_transform(False, 32), indices=idx)
    x = plain[3]
    assert torch.allclose(denormalize(x["image"]), torch.from_numpy(syn.images[13]).permute(2, 0, 1) / 255, atol=1e-6)
    assert torch.equal(x["mask"][0], torch.from_numpy(syn.masks[13]).float())
    assert "mask" not in TorchImageSet(syn, build_transform(False, 32), with_masks=False)[0]


def test_loader_batches_and_seed(syn):
    ds = TorchImageSet(syn, build_transform(False, 32, crop=28))
    dl = make_loader(ds, batch_size=64, shuffle=True, drop_last=True, seed=3)
    batches = list(dl)
    assert len(batches) == 700 // 64
    b = batches[0]
    assert b["image"].shape == (64, 3, 28, 28) and b["mask"].shape == (64, 1, 28, 28)
    assert b["label"].shape == (64,) and b["label"].dtype == torch.int64 and b["index"].shape == (64,)
    assert torch.equal(b["label"], torch.from_numpy(syn.labels)[b["index"]])
    order = torch.cat([x["index"] for x in batches])
    assert torch.equal(order, torch.cat([x["index"] for x in make_loader(ds, 64, shuffle=True, drop_last=True, seed=3)]))
    assert not torch.equal(order, torch.cat([x["index"] for x in make_loader(ds, 64, shuffle=True, drop_last=True, seed=4)]))
    # augmentations in workers are seeded by the loader's seed: same seed, same augmented pixels
    aug = TorchImageSet(syn, build_transform(True, 32, crop=24, rotation=10), indices=np.arange(64))
    first = [next(iter(make_loader(aug, 16, num_workers=1, seed=s)))["image"] for s in (5, 5, 6)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
    with pytest.raises(ValueError, match="not both"):
        make_loader(ds, 8, sampler=range(10), shuffle=True)
