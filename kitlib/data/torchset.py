"""A torch Dataset over ImageArrays (no decoding, no copies of the arrays) and a seeded DataLoader."""
from __future__ import annotations

import random
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .core import ImageArrays


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    """torch view of a numpy array (no copy); read-only arrays (e.g. memory maps) are shared as well,
    which is safe here because items are always new tensors built from them, never written back."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(a)


class TorchImageSet(Dataset):
    """Rows `indices` of an ImageArrays, transformed on the fly.

    arrays: the data set; transform: a callable `t(image)` / `t(image, mask)` on uint8 (3, H, W) images and
    (1, H, W) masks, e.g. `build_transform(...)`; views: 1, or 2 for two independent random views per item;
    indices: the rows of `arrays` to expose (default all); with_masks: deliver masks when the arrays have them.

    Item: dict(image=float (3, H', W'), label=int64 0-d tensor, index=int (row in `arrays`)), plus, when
    the arrays have masks and `with_masks`: mask=float (1, H', W') {0, 1} transformed with the image, and
    has_lesion=bool 0-d tensor (from arrays.has_lesion, else whether the mask has any pixel).
    views=2 adds image2 (and mask2): a second independent random view of the same sample.
    """

    def __init__(self, arrays: ImageArrays, transform, views: int = 1, indices=None, with_masks: bool = True):
        if views not in (1, 2):
            raise ValueError(f"TorchImageSet: views must be 1 or 2, got {views}")
        if not callable(transform):
            raise TypeError(f"TorchImageSet: transform must be callable (see build_transform), got {transform!r}")
        self.arrays = arrays
        self.transform = transform
        self.views = views
        n = len(arrays)
        self.indices = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        if len(self.indices) and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"TorchImageSet: indices reach {int(self.indices.max())} but {arrays.name} has {n} rows")
        self.indices = self.indices % max(n, 1)
        self._images = _as_tensor(arrays.images)  # (N, H, W, 3) uint8, shares memory with the numpy array
        self._labels = _as_tensor(arrays.labels)
        self._masks = None
        if arrays.masks is not None and with_masks:
            self._masks = _as_tensor(arrays.masks)
            has = arrays.has_lesion if arrays.has_lesion is not None else arrays.masks.reshape(n, -1).any(1)
            self._has = torch.from_numpy(np.asarray(has, dtype=bool).copy())

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray:
        """Labels of the selected rows, int64 (len(self),)."""
        return self.arrays.labels[self.indices]

    @property
    def num_classes(self) -> int:
        return self.arrays.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.arrays.class_names

    def class_counts(self) -> np.ndarray:
        """Samples per class among the selected rows (num_classes,)."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def _view(self, i: int):
        img = self._images[i].permute(2, 0, 1)  # (3, H, W) view, no copy
        if self._masks is None:
            return self.transform(img), None
        x, m = self.transform(img, self._masks[i][None])
        return x, m.float()

    def __getitem__(self, k: int) -> dict:
        i = int(self.indices[k])
        x, m = self._view(i)
        item = {"image": x, "label": self._labels[i].clone(), "index": i}
        if m is not None:
            item["mask"] = m
            item["has_lesion"] = self._has[i].clone()
        if self.views == 2:
            x2, m2 = self._view(i)
            item["image2"] = x2
            if m2 is not None:
                item["mask2"] = m2
        return item


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a DataLoader worker from its torch seed (set by the loader's generator)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset, batch_size: int, sampler=None, shuffle: bool = False, num_workers: int = 0,
                drop_last: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader whose shuffling and worker seeds come from `seed`.

    Pinned memory when CUDA is available; persistent workers when num_workers > 0. Random augmentations use
    torch's RNG: in workers it is seeded from `seed` (reproducible); with num_workers=0 it is the process's
    global RNG (seed it with torch.manual_seed for reproducible augmentations).
    """
    if batch_size < 1:
        raise ValueError(f"make_loader: batch_size must be >= 1, got {batch_size}")
    if sampler is not None and shuffle:
        raise ValueError("make_loader: pass a sampler or shuffle=True, not both (the sampler decides the order)")
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                      persistent_workers=num_workers > 0, generator=g,
                      worker_init_fn=_seed_worker if num_workers > 0 else None)
