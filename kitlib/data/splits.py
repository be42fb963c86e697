"""Protocol splits: k-fold, ratio, validation carve-out, long-tail subsampling, official. All seeded.

Every function returns sorted int64 index arrays into the dataset (`labels` is always the full (N,) label
array; `idx` arguments index into it). `groups` (e.g. HAM10000 lesion_id, (N,)) keeps all images of a group
on one side of a split. Stratification uses scikit-learn's splitters.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

from .core import ImageArrays

_MAX_GROUP_FOLDS = 20  # resolution of grouped fractions: 1/20


def _idx(a) -> np.ndarray:
    return np.sort(np.asarray(a, dtype=np.int64))


def _labels_groups(labels, groups, where: str):
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D (N,), got shape {y.shape}")
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != len(y):
            raise ValueError(f"{where}: groups has {len(groups)} rows but labels has {len(y)}")
    return y, groups


def kfold(labels, k: int, seed: int = 0, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold: k (train_idx, test_idx) pairs; every sample is tested exactly once.

    With `groups`, StratifiedGroupKFold: a group never straddles train and test (folds are then only
    approximately stratified).
    """
    y, groups = _labels_groups(labels, groups, "kfold")
    if k < 2:
        raise ValueError(f"kfold: k (folds) must be >= 2, got {k}")
    if k > len(y):
        raise ValueError(f"kfold: k={k} folds but only {len(y)} samples")
    if groups is None:
        parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    else:
        if k > len(np.unique(groups)):
            raise ValueError(f"kfold: k={k} folds but only {len(np.unique(groups))} groups")
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(y)), y, groups=groups)
    return [(_idx(tr), _idx(te)) for tr, te in parts]


def _group_folds(frac: float) -> tuple[int, int]:
    """(k, m): taking m of k group folds approximates `frac` best (smallest k on ties)."""
    best = None
    for k in range(2, _MAX_GROUP_FOLDS + 1):
        m = min(k - 1, max(1, int(round(frac * k))))
        err = abs(m / k - frac)
        if best is None or err < best[0] - 1e-12:
            best = (err, k, m)
    return best[1], best[2]


def _split_once(idx: np.ndarray, y: np.ndarray, frac: float, seed: int, groups=None):
    """Stratified split of `idx` into (rest, part) with about `frac` of the samples in part."""
    if not 0 < frac < 1:
        raise ValueError(f"split fraction must be in (0, 1), got {frac}")
    if len(idx) < 2:
        raise ValueError(f"cannot split {len(idx)} sample(s)")
    yi = y[idx]
    if groups is None:
        sss = StratifiedShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
        try:
            rest, part = next(sss.split(np.zeros(len(idx)), yi))
        except ValueError:
            # a class with a single member (or a part smaller than the number of classes): split each class
            # on its own, rounding its share, so the common classes stay stratified
            rng = np.random.default_rng(seed)
            part = np.concatenate([rng.permutation(np.flatnonzero(yi == c))[: int(round(frac * (yi == c).sum()))]
                                   for c in np.unique(yi)])
            rest = np.setdiff1d(np.arange(len(idx)), part)
        return _idx(idx[rest]), _idx(idx[part])
    g = groups[idx]
    k, m = _group_folds(frac)
    k = min(k, len(np.unique(g)))
    if k < 2:
        raise ValueError(f"cannot split: all {len(idx)} samples belong to one group")
    m = min(m, k - 1)
    folds = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(idx)), yi, g))
    part = np.concatenate([te for _, te in folds[:m]])
    rest = np.setdiff1d(np.arange(len(idx)), part)
    return _idx(idx[rest]), _idx(idx[part])


def carve_val(idx, labels, frac: float = 0.1, seed: int = 0, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """A stratified validation split of about `frac` carved from the index set `idx`: (train_idx, val_idx).

    With groups, the fraction is met to within 1/20 (whole group folds are taken).
    """
    y, groups = _labels_groups(labels, groups, "carve_val")
    return _split_once(np.asarray(idx, dtype=np.int64).reshape(-1), y, frac, seed, groups)


def ratio_split(labels, ratios, seed: int = 0, groups=None) -> tuple[np.ndarray, ...]:
    """Stratified random split by ratios, e.g. (0.7, 0.3), (0.75, 0.05, 0.2) or (7.5, 0.5, 2) (normalised):
    one sorted index array per ratio, disjoint, covering all samples."""
    y, groups = _labels_groups(labels, groups, "ratio_split")
    r = np.asarray(ratios, dtype=float).reshape(-1)
    if len(r) < 2 or not np.all(r > 0):
        raise ValueError(f"ratio_split: ratios must be >= 2 positive numbers, got {ratios}")
    r = r / r.sum()
    rest = np.arange(len(y), dtype=np.int64)
    out, left = [], 1.0
    for i in range(len(r) - 1, 0, -1):  # peel off the last parts first
        rest, part = _split_once(rest, y, r[i] / left, seed + i, groups)
        out.insert(0, part)
        left -= r[i]
    return (rest, *out)


LONG_TAIL_ORDERS = ("count", "label")


def long_tail(idx, labels, ratio: float, seed: int = 0, order: str = "count") -> np.ndarray:
    """Subsample the index set `idx` to an exponential profile with imbalance ratio rho = `ratio`.

    order="count": classes are ranked by their count in `idx` (ties by label) and n_max is the largest count;
    order="label": the rank is the label itself and n_max is the count of label 0 (the LDAM-DRW code's
    convention n_c = n_max * rho^(-c/(C-1)); paper 004's PathMNIST-LT: N_max 9366, N_min 94).
    The class of rank r keeps min(available, round(n_max * rho^(-r/(C-1)))) samples, at least 1, drawn at
    random (PathMNIST-LT: rho = 100; Flower-LT, Stanford-Dogs-LT: rho = 10). Returns sorted indices.
    """
    if ratio < 1:
        raise ValueError(f"long_tail: ratio must be >= 1, got {ratio}")
    if order not in LONG_TAIL_ORDERS:
        raise ValueError(f"long_tail: order must be one of {LONG_TAIL_ORDERS}, got {order!r}")
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    y = np.asarray(labels)[idx]
    classes, counts = np.unique(y, return_counts=True)
    if order == "count":
        order = classes[np.argsort(-counts, kind="stable")]
        n_max = counts.max()
    else:
        order, n_max = classes, counts[0]
    rng = np.random.default_rng(seed)
    keep = []
    for r, c in enumerate(order):
        want = max(1, int(round(n_max * ratio ** (-r / max(len(order) - 1, 1)))))
        members = idx[y == c]
        keep.append(rng.permutation(members)[: min(want, len(members))])
    return _idx(np.concatenate(keep))


def official(arrays: ImageArrays) -> dict[str, np.ndarray]:
    """The dataset's own split: {"train": idx, "val": idx, "test": idx} (only the parts it has)."""
    if arrays.split is None:
        raise ValueError(f"{arrays.name} has no official split; use kfold or ratio_split")
    split = np.asarray(arrays.split).astype(str)
    return {s: _idx(np.flatnonzero(split == s)) for s in np.unique(split)}


def check_split(labels, idx, class_names, where: str = "split") -> None:
    """Raise ValueError naming every class (of `class_names`, in label order) with no sample in `idx`."""
    counts = np.bincount(np.asarray(labels)[np.asarray(idx, dtype=np.int64)], minlength=len(class_names))
    empty = [f"{class_names[c]!r} (label {c})" for c in np.flatnonzero(counts[: len(class_names)] == 0)]
    if empty:
        raise ValueError(f"{where}: no sample of class(es) {', '.join(empty)}; "
                         f"use fewer folds, another seed or a larger split, or merge classes")
