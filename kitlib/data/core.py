"""The one in-memory form every loader returns: decoded uint8 images plus labels (and lesion masks/boxes)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class ImageArrays:
    """A whole dataset held as arrays, decoded once.

    images: uint8 (N, H, W, 3) RGB (grey images are repeated to 3 channels).
    labels: int64 (N,), values in range(len(class_names)).
    class_names: class names in label order.
    masks: optional uint8 (N, H, W) with values {0, 1}: lesion mask; rows of zeros where unknown.
    boxes: optional float32 (N, 4) as (x0, y0, x1, y1) in pixels of `images`; NaN rows where unknown.
    has_lesion: optional bool (N,): True where masks/boxes hold a real annotation.
    groups: optional (N,) array; samples sharing a value (e.g. HAM10000 lesion_id) never straddle a split.
    split: optional (N,) str array of the official split ('train', 'val', 'test').
    name: dataset name (a manifest name or 'synthetic').
    meta: free-form provenance (source files, size, seed, ...).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    name: str = "unnamed"
    masks: np.ndarray | None = None
    boxes: np.ndarray | None = None
    has_lesion: np.ndarray | None = None
    groups: np.ndarray | None = None
    split: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.labels)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"{self.name}: images must be uint8 (N,H,W,3), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != n:
            raise ValueError(f"{self.name}: {len(self.images)} images but {n} labels")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        bad = (self.labels < 0) | (self.labels >= len(self.class_names))
        if bad.any():
            raise ValueError(
                f"{self.name}: label {int(self.labels[bad][0])} is outside the class list {self.class_names}"
            )
        for key in ("masks", "boxes", "has_lesion", "groups", "split"):
            v = getattr(self, key)
            if v is not None and len(v) != n:
                raise ValueError(f"{self.name}: {key} has {len(v)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """Samples per class, in label order (length num_classes, zeros included)."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def subset(self, idx) -> "ImageArrays":
        """Rows `idx` (int indices or bool mask) as a new ImageArrays (arrays are indexed, not copied lazily)."""
        idx = np.asarray(idx)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            masks=pick(self.masks),
            boxes=pick(self.boxes),
            has_lesion=pick(self.has_lesion),
            groups=pick(self.groups),
            split=pick(self.split),
            meta=dict(self.meta),
        )
