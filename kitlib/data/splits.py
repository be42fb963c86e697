"""Protocol splits: k-fold, ratio, validation carve-out, long-tail subsampling, official. All seeded.

Every function returns int64 index arrays into the dataset. `groups` (e.g. HAM10000 lesion_id) keeps all
images of a group on one side of a split.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

from .core import ImageArrays


def _idx(a) -> np.ndarray:
    return np.sort(np.asarray(a, dtype=np.int64))


def kfold(labels, k: int, seed: int = 0, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold: k (train_idx, test_idx) pairs; every sample is tested exactly once."""
    y = np.asarray(labels)
    if k < 2:
        raise ValueError(f"k (folds) must be >= 2, got {k}")
    if groups is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(y)), y)
    else:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(y)), y, groups=np.asarray(groups))
    return [(_idx(tr), _idx(te)) for tr, te in parts]


def _split_once(idx: np.ndarray, y: np.ndarray, frac: float, seed: int, groups=None):
    """Stratified split of `idx` into (rest, part) with about `frac` of the samples in part."""
    if not 0 < frac < 1:
        raise ValueError(f"split fraction must be in (0, 1), got {frac}")
    if groups is None:
        sss = StratifiedShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
        try:
            rest, part = next(sss.split(np.zeros(len(idx)), y[idx]))
        except ValueError:  # a class too small to stratify: fall back to a plain shuffled split per class
            rng = np.random.default_rng(seed)
            part = np.concatenate([rng.permutation(np.flatnonzero(y[idx] == c))[: int(round(frac * (y[idx] == c).sum()))]
                                   for c in np.unique(y[idx])])
            rest = np.setdiff1d(np.arange(len(idx)), part)
        return _idx(idx[rest]), _idx(idx[part])
    k = max(2, int(round(1 / frac)))
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    rest, part = next(splitter.split(np.zeros(len(idx)), y[idx], groups=np.asarray(groups)[idx]))
    return _idx(idx[rest]), _idx(idx[part])


def carve_val(idx, labels, frac: float = 0.1, seed: int = 0, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """A stratified validation split of about `frac` carved from the index set `idx`: (train_idx, val_idx)."""
    return _split_once(np.asarray(idx, dtype=np.int64), np.asarray(labels), frac, seed, groups)


def ratio_split(labels, ratios, seed: int = 0, groups=None) -> tuple[np.ndarray, ...]:
    """Stratified random split by ratios, e.g. (0.7, 0.3) or (7.5, 0.5, 2): one index array per ratio."""
    r = np.asarray(ratios, dtype=float)
    if len(r) < 2 or (r <= 0).any():
        raise ValueError(f"ratios must be >= 2 positive numbers, got {ratios}")
    r = r / r.sum()
    y = np.asarray(labels)
    rest = np.arange(len(y), dtype=np.int64)
    out, left = [], 1.0
    for i in range(len(r) - 1, 0, -1):  # peel off the last parts first
        rest, part = _split_once(rest, y, r[i] / left, seed + i, groups)
        out.insert(0, part)
        left -= r[i]
    return (rest, *out)


def long_tail(idx, labels, ratio: float, seed: int = 0) -> np.ndarray:
    """Subsample `idx` to an exponential profile with imbalance ratio rho (largest class keeps all).

    Classes are ranked by their count in `idx`; the class of rank r keeps n_max * rho^(-r/(C-1)) samples
    (PathMNIST-LT: rho = 100; Flower-LT, Stanford-Dogs-LT: rho = 10).
    """
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    idx = np.asarray(idx, dtype=np.int64)
    y = np.asarray(labels)[idx]
    classes, counts = np.unique(y, return_counts=True)
    order = classes[np.argsort(-counts, kind="stable")]
    n_max = counts.max()
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
    return {s: _idx(np.flatnonzero(arrays.split == s)) for s in np.unique(arrays.split)}


def check_split(labels, idx, class_names, where: str = "split") -> None:
    """Raise naming every class with no sample in `idx`."""
    counts = np.bincount(np.asarray(labels)[np.asarray(idx, dtype=np.int64)], minlength=len(class_names))
    empty = [class_names[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(f"{where}: no sample of class(es) {empty}; use fewer folds, another seed, or merge classes")
