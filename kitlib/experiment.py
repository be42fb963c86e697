"""An experiment = one dataset, its protocol splits, its transforms and its training settings.

The paper notebooks build one and ask it for trained runs and test predictions; everything is cached
by the run registry, so re-rendering a table never retrains:

    exp = Experiment(kitlib.data.load("synthetic"), protocol="kfold", folds=5, image_size=32,
                     train={"epochs": 20, "lr": 1e-3})
    run = exp.train(fold=0, backbone="resnet50", method="ldam_drw")
    probs = exp.predict(run, fold=0)          # test split of fold 0
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from kitlib import metrics as M
from kitlib.data import TorchImageSet, build_transform
from kitlib.data import splits as S
from kitlib.data.core import ImageArrays
from kitlib.infer import predict
from kitlib.methods import build_method
from kitlib.train import ModelSpec, TrainConfig, TrainedRun, fit, retrain_head

PROTOCOLS = ("kfold", "official", "ratio")


@dataclass
class Split:
    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def make_splits(arrays: ImageArrays, protocol: str = "kfold", folds: int = 5, seed: int = 0, val_frac: float = 0.1,
                ratios=(0.75, 0.05, 0.2), group: bool = True) -> list[Split]:
    """Protocol splits, each with train / val / test indices into `arrays`.

    kfold: stratified k folds (grouped by arrays.groups when `group`), one test fold each; a validation split of
        `val_frac` is carved from the training folds (paper 000 chose eps on "an extra small validation set").
    official: the dataset's own train/val/test (val carved from train when the dataset has none).
    ratio: stratified random train/val/test by `ratios` (e.g. 7.5:0.5:2 as paper 004); two ratios = train/test
        with val carved from train.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    y = arrays.labels
    groups = arrays.groups if group else None
    out = []
    if protocol == "kfold":
        for i, (tr, te) in enumerate(S.kfold(y, folds, seed, groups=groups)):
            tr, va = S.carve_val(tr, y, val_frac, seed + i, groups=groups)
            out.append(Split(i, tr, va, te))
    elif protocol == "official":
        parts = S.official(arrays)
        tr, te = parts["train"], parts["test"]
        va = parts.get("val")
        if va is None or len(va) == 0:
            tr, va = S.carve_val(tr, y, val_frac, seed, groups=groups)
        out.append(Split(0, tr, va, te))
    else:
        parts = S.ratio_split(y, ratios, seed, groups=groups)
        if len(parts) == 3:
            tr, va, te = parts
        else:
            (tr, te), va = parts, None
            tr, va = S.carve_val(tr, y, val_frac, seed, groups=groups)
        out.append(Split(0, tr, va, te))
    for sp in out:
        for name in ("train", "test"):
            S.check_split(y, getattr(sp, name), arrays.class_names, where=f"fold {sp.fold} {name}")
    return out


class Experiment:
    """Dataset + splits + transforms + training settings; hands out cached trained runs and predictions.

    augment: build_transform options for training (flip, rotation, color_jitter, crop); test images are
        only resized (and centre-cropped when `crop` is set), as the papers do.
    model: extra ModelSpec fields for every run (e.g. {"width": 16} for tiny_cnn).
    with_masks: batches carry lesion masks (methods that use them, e.g. CARE); off saves loading time.
    small_input: the small-image stem; default on for images of 64 px or less.
    train: TrainConfig fields shared by every run of the experiment (per-call overrides in `train()`).
    stage2: TrainConfig fields for the second stage of every two-stage run ("X->crw", "X->crs"): epochs,
        lr, batch_size, schedule, min_lr, select, ... (per-call overrides in `train(stage2=...)`); unset
        fields take `retrain_head`'s defaults (paper 004: 10 epochs, lr 0.1 cosine to 1e-6).
    """

    def __init__(self, arrays: ImageArrays, protocol: str = "kfold", folds: int = 5, seed: int = 0,
                 val_frac: float = 0.1, ratios=(0.75, 0.05, 0.2), image_size: int | None = None,
                 augment: dict | None = None, train: dict | None = None, device: str = "auto",
                 run_root=None, progress: bool = True, pretrained: bool = False, small_input: bool | None = None,
                 model: dict | None = None, with_masks: bool = False, stage2: dict | None = None):
        self.arrays = arrays
        self.splits = make_splits(arrays, protocol, folds, seed, val_frac, ratios)
        self.size = image_size or arrays.images.shape[1]
        self.augment = {"flip": True, **(augment or {})}
        self.train_defaults = {"seed": seed, **(train or {}), "device": device}
        self.stage2_defaults = dict(stage2 or {})
        self.run_root, self.progress, self.pretrained = run_root, progress, pretrained
        self.model_kwargs = dict(model or {})
        self.small_input = self.size <= 64 if small_input is None else small_input
        crop = self.augment.get("crop")
        self.t_train = build_transform(train=True, size=self.size, **self.augment)
        self.t_test = build_transform(train=False, size=self.size, crop=crop)
        self.with_masks = with_masks
        self._images: dict = {}
        self.max_cached_bytes = 2 * 1024**3

    @property
    def class_names(self) -> list[str]:
        return self.arrays.class_names

    def dataset(self, fold: int, part: str, train_transform: bool | None = None) -> TorchImageSet:
        """The TorchImageSet of one split part ("train", "val", "test")."""
        idx = getattr(self.splits[fold], part)
        aug = part == "train" if train_transform is None else train_transform
        return TorchImageSet(self.arrays, self.t_train if aug else self.t_test, indices=idx, with_masks=self.with_masks)

    def images(self, fold: int, part: str = "test"):
        """Test-time (deterministic) images of a split part as one (N, 3, H, W) tensor, built once and kept,
        so repeated evaluations (sweeps, ablations) do not re-run the transforms; the Dataset itself when the
        tensor would exceed `max_cached_bytes`."""
        key = (fold, part)
        if key not in self._images:
            ds = self.dataset(fold, part, train_transform=False)
            c, h, w = ds[0]["image"].shape
            if len(ds) * c * h * w * 4 > self.max_cached_bytes:
                return ds
            self._images[key] = torch.cat([b["image"] for b in DataLoader(ds, batch_size=256)])
        return self._images[key]

    def train_counts(self, fold: int) -> np.ndarray:
        return np.bincount(self.arrays.labels[self.splits[fold].train], minlength=self.arrays.num_classes)

    def config(self, **train_overrides) -> TrainConfig:
        return TrainConfig(**{**self.train_defaults, **train_overrides})

    def spec(self, backbone: str, **kw) -> ModelSpec:
        kw = {"pretrained": self.pretrained, "small_input": self.small_input, **self.model_kwargs, **kw}
        if backbone != "tiny_cnn":
            kw.pop("width", None)
        return ModelSpec(backbone, self.arrays.num_classes, **kw)

    def train(self, fold: int, backbone: str, method: str, method_params: dict | None = None,
              seed: int | None = None, stage2: dict | None = None, **train_overrides) -> TrainedRun:
        """Train (or fetch from the cache) `backbone` with `method` on one fold's training split.

        Two-stage methods are written "<stage-1 method>-><crw|crs>" (e.g. "ce->crw"): the first stage is
        trained (cached) with the experiment's `train` settings and `train_overrides`, and its head re-trained
        on frozen features with the stage-2 settings: seed, device and batch_size from the call, then the
        experiment's `stage2`, then this call's `stage2` (each later one wins).
        """
        if seed is not None:
            train_overrides["seed"] = seed
        if "->" in method:
            first, second = (s.strip() for s in method.split("->"))
            stage1 = self.train(fold, backbone, first, method_params, **train_overrides)
            head_cfg = {k: v for k, v in train_overrides.items() if k in ("seed", "device", "batch_size")}
            return retrain_head(stage1, self.dataset(fold, "train"), self.dataset(fold, "val"), kind=second,
                                cfg={**{"seed": self.train_defaults["seed"], "device": self.train_defaults["device"]},
                                     **head_cfg, **self.stage2_defaults, **(stage2 or {})},
                                run_root=self.run_root, progress=self.progress)
        if stage2:
            raise ValueError(f"Experiment.train: stage2 settings given for the one-stage method {method!r}; "
                             f"two-stage methods are written 'X->crw' or 'X->crs'")
        return fit(self.spec(backbone), build_method(method, **(method_params or {})), self.dataset(fold, "train"),
                   self.dataset(fold, "val"), self.config(**train_overrides), run_root=self.run_root,
                   progress=self.progress)

    def predict(self, run: TrainedRun, fold: int, part: str = "test", tta: str = "none",
                amp: bool = True) -> np.ndarray:
        """Probabilities of one fold's split; amp: bfloat16 autocast on CUDA (a no-op on CPU)."""
        return predict(run.model, self.images(fold, part), tta=tta, batch_size=256, amp=amp)

    def predict_arrays(self, run: TrainedRun, arrays: ImageArrays, tta: str = "none") -> np.ndarray:
        """Probabilities (N, C) of `run` on every image of another dataset (an external test set, no retraining),
        resized as this experiment's test images. Its classes must be this experiment's, in the same order."""
        if list(arrays.class_names) != list(self.class_names):
            raise ValueError(f"predict_arrays: {arrays.name!r} has classes {list(arrays.class_names)} but the model "
                             f"was trained on {list(self.class_names)}; give a dataset with the same classes in the "
                             f"same order")
        return predict(run.model, TorchImageSet(arrays, self.t_test, with_masks=False), tta=tta, batch_size=256)

    def labels(self, fold: int, part: str = "test") -> np.ndarray:
        return self.arrays.labels[getattr(self.splits[fold], part)]

    def evaluate(self, probs: np.ndarray, fold: int, part: str = "test", class_groups=None) -> dict:
        return M.evaluate(self.labels(fold, part), probs, train_counts=self.train_counts(fold),
                          class_groups=class_groups, num_classes=self.arrays.num_classes)

    def statistics(self) -> pd.DataFrame:
        """Dataset statistics as the papers' Table 1: classes, image size, smallest/largest class, ratio."""
        counts = self.arrays.class_counts()
        h, w = self.arrays.images.shape[1:3]
        return pd.DataFrame([{
            "dataset": self.arrays.name, "classes": self.arrays.num_classes, "loaded_size": f"{w}*{h}",
            "smallest": int(counts.min()), "largest": int(counts.max()),
            "imbalance": round(float(counts.max() / counts.min()), 1), "images": int(counts.sum()),
        }])


def _finetune(self, fold: int, backbone: str, pretrain: str, method: str, method_params: dict | None = None,
              pretrain_params: dict | None = None, seed: int | None = None, finetune: dict | None = None,
              pretrain_train: dict | None = None, pretrained_from: "Experiment | None" = None) -> TrainedRun:
    """Two stages through the run cache: `pretrain` (cached, `train(fold, backbone, pretrain, pretrain_params,
    seed, **pretrain_train)`), then `method` started from its weights (`fit(init=...)`, e.g. CARE's attention
    fine-tuning) with the experiment's train settings, the seed, then `finetune` (e.g. AdamW lr 1e-4).
    The fine-tuned run's identity includes the pretrained run's key, so each pair is cached once.
    pretrained_from: another Experiment with the same images, labels and splits that pretrains (e.g. the one
    with the ground-truth masks, when this one carries automatic boxes as masks)."""
    overrides = dict(pretrain_train or {})
    if seed is not None:
        overrides["seed"] = seed
    stage1 = (pretrained_from or self).train(fold, backbone, pretrain, pretrain_params, **overrides)
    cfg = self.config(**{**overrides, **(finetune or {})})
    return fit(self.spec(backbone), build_method(method, **(method_params or {})), self.dataset(fold, "train"),
               self.dataset(fold, "val"), cfg, init=stage1, run_root=self.run_root, progress=self.progress)


Experiment.finetune = _finetune
