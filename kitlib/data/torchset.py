"""A torch Dataset over ImageArrays (no decoding, no copies) and a seeded DataLoader."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from .core import ImageArrays


class TorchImageSet(Dataset):
    """Rows `indices` of an ImageArrays, transformed on the fly.

    Item: dict(image=float (3, H, W), label=int64, index=int (row in `arrays`)), plus, when the arrays
    have masks and `with_masks`, mask=float (1, H, W) transformed with the image and has_lesion=bool. views=2 adds image2
    (and mask2), a second independent random view of the same sample (supervised contrastive learning).
    """

    def __init__(self, arrays: ImageArrays, transform, views: int = 1, indices=None, with_masks: bool = True):
        self.arrays = arrays
        self.transform = transform
        self.views = views
        self.indices = np.arange(len(arrays), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        self._images = torch.from_numpy(arrays.images)  # shares memory with the numpy array
        self._masks = None if arrays.masks is None or not with_masks else torch.from_numpy(arrays.masks)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray:
        return self.arrays.labels[self.indices]

    @property
    def num_classes(self) -> int:
        return self.arrays.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.arrays.class_names

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def _view(self, i: int):
        img = tv_tensors.Image(self._images[i].permute(2, 0, 1))
        if self._masks is None:
            return self.transform(img), None
        x, m = self.transform(img, tv_tensors.Mask(self._masks[i][None]))
        return x, m.as_subclass(torch.Tensor).float()

    def __getitem__(self, k: int) -> dict:
        i = int(self.indices[k])
        x, m = self._view(i)
        item = {"image": x.as_subclass(torch.Tensor), "label": torch.as_tensor(self.arrays.labels[i]), "index": i}
        if m is not None:
            item["mask"] = m
            has = True if self.arrays.has_lesion is None else bool(self.arrays.has_lesion[i])
            item["has_lesion"] = torch.as_tensor(has)
        for v in range(2, self.views + 1):
            x2, m2 = self._view(i)
            item[f"image{v}"] = x2.as_subclass(torch.Tensor)
            if m2 is not None:
                item[f"mask{v}"] = m2
        return item


def make_loader(dataset, batch_size: int, sampler=None, shuffle: bool = False, num_workers: int = 0,
                drop_last: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader with a seeded generator (shuffling and worker seeds reproducible), pinned memory on CUDA."""
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle if sampler is None else False,
                      num_workers=num_workers, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                      persistent_workers=num_workers > 0, generator=g)
