"""Grad-CAM maps (paper 003, CARE, Eqs. 1-3), lesion boxes and how much of a map lies inside them.

Two uses of one map:

    F = grad_cam(model, x, target)                       # differentiable, for a training loss (CARE)
    with GradCAM(model) as cam:                           # figures: no graph kept, ReLU, hooks removed on exit
        maps = cam(x, target)                             # numpy (B, H, W) in [0, 1]
    energy_inside(maps, masks)                            # share of each map's mass inside its box/mask

Eq. 1: Y^c = sum_k w^c_k (1/Z) sum_ij A^k_ij for a global-average-pooling + linear head, Z = u * v.
Eq. 2: alpha^c_k = (1/Z) sum_ij dY^c / dA^k_ij (the gradient of the class *score*, not of the loss: the
       appendix's Algorithm 2 differentiates L_c, which flips the sign; min-max is not sign-invariant).
Eq. 3: F^c = sum_k alpha^c_k A^k, min-max normalised per image to [0, 1] (+ eps in the denominator),
       resized (bilinear) to the input size.
Boxes are (x0, y0, x1, y1) in pixels, x1/y1 exclusive, as kitlib.data.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from kitlib.models import KitModel

EPS = 1e-6  # min-max denominator: a constant map becomes 0, not NaN


def unwrap(model: nn.Module) -> nn.Module:
    """The KitModel inside a DistributedDataParallel / DataParallel wrapper (its head sits at .module.head)."""
    while hasattr(model, "module") and isinstance(getattr(model, "module"), nn.Module):
        model = model.module
    return model


def has_linear_shortcut(model: nn.Module) -> bool:
    """True when the head is global average pooling + one linear layer: then alpha^c = w^c / Z exactly."""
    m = unwrap(model)
    return isinstance(m, KitModel) and type(m).pool is KitModel.pool and isinstance(m.head, nn.Linear)


def minmax(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(B, h, w) -> each map shifted and scaled to [0, 1]: (F - min) / (max - min + eps)."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    return (maps - lo[:, None, None]) / (hi - lo + eps)[:, None, None]


def channel_weights(model: nn.Module, fmap: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
                    path: str = "auto") -> torch.Tensor:
    """alpha^c_k of Eq. 2, (B, K), detached (constants in a loss, as the authors' code).

    path: "shortcut" = w^c / Z (pooling + linear head only), "autograd" = the spatial mean of dY^c/dA
    (any head, e.g. VGG19 with its FC layers), "auto" = the shortcut where it applies.
    """
    if path not in ("auto", "shortcut", "autograd"):
        raise ValueError(f"grad_cam: path must be 'auto', 'shortcut' or 'autograd', got {path!r}")
    use_short = path == "shortcut" or (path == "auto" and has_linear_shortcut(model))
    if use_short:
        if not has_linear_shortcut(model):
            raise ValueError("grad_cam: path='shortcut' needs a global-average-pooling + linear head; use 'autograd'")
        z = fmap.shape[2] * fmap.shape[3]
        return unwrap(model).head.weight[target].detach() / z  # Eq. 1-2: dY^c/dA^k_ij = w^c_k / Z everywhere
    score = logits.gather(1, target.view(-1, 1)).sum()  # Eq. 2: the class score Y^c (images are independent)
    (grad,) = torch.autograd.grad(score, fmap, retain_graph=True)
    return grad.mean(dim=(2, 3)).detach()


def cam_from(fmap: torch.Tensor, weights: torch.Tensor, size, relu: bool = False, eps: float = EPS) -> torch.Tensor:
    """Eq. 3: sum_k alpha_k A^k, optional ReLU, min-max per image, bilinear resize to `size` -> (B, H, W)."""
    cam = torch.einsum("bk,bkhw->bhw", weights.to(fmap.dtype), fmap)
    if relu:
        cam = F.relu(cam)
    cam = minmax(cam.float(), eps)
    return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, out: dict | None = None, path: str = "auto",
             relu: bool = False, eps: float = EPS) -> torch.Tensor:
    """Differentiable Grad-CAM (B, H, W) of class `target` (B,) for images x (B, 3, H, W).

    The map keeps its graph to the activations A; the channel weights are constants. No ReLU by default
    (the authors' training code). out: the model's `out="all"` dict of this very batch, to reuse its forward.
    """
    out = model(x, out="all") if out is None else out
    w = channel_weights(model, out["fmap"], out["logits"], target.long(), path)
    return cam_from(out["fmap"], w, x.shape[-2:], relu=relu, eps=eps)


def _last_conv_module(model: nn.Module) -> nn.Module:
    return unwrap(model).backbone


class GradCAM:
    """Grad-CAM for figures: hooks on the feature extractor live only inside the `with` block.

        with GradCAM(model) as cam:
            maps = cam(images, target)       # numpy float32 (B, H, W) in [0, 1], ReLU applied (standard)

    target: (B,) class ids, or None for the predicted class. Nothing is kept between calls (no graph).
    """

    def __init__(self, model: nn.Module, relu: bool = True, batch_size: int = 64, eps: float = EPS):
        self.model, self.relu, self.batch_size, self.eps = model, relu, batch_size, eps
        self._handles: list = []
        self._act = None

    def __enter__(self):
        def keep(_module, _inp, output):
            self._act = output
        self._handles.append(_last_conv_module(self.model).register_forward_hook(keep))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._act = None
        return False

    def __call__(self, x: torch.Tensor, target=None) -> np.ndarray:
        if not self._handles:
            raise RuntimeError("GradCAM: call it inside `with GradCAM(model) as cam:`")
        model = unwrap(self.model)
        was = model.training
        model.eval()
        dev = next(model.parameters()).device
        maps = []
        try:
            for i in range(0, len(x), self.batch_size):
                xb = x[i:i + self.batch_size].to(dev).clone().requires_grad_(True)  # a graph even for frozen weights
                with torch.enable_grad():
                    logits = model(xb)
                    act = self._act
                    tb = logits.argmax(1) if target is None else torch.as_tensor(target[i:i + self.batch_size]).to(dev).long()
                    score = logits.gather(1, tb.view(-1, 1)).sum()  # Eq. 2, sign of dY^c/dA
                    (grad,) = torch.autograd.grad(score, act)
                cam = cam_from(act.detach(), grad.mean(dim=(2, 3)), xb.shape[-2:], relu=self.relu, eps=self.eps)
                maps.append(cam.detach().cpu().numpy().astype(np.float32))
                self._act = None
        finally:
            model.train(was)
        return np.concatenate(maps) if maps else np.zeros((0, *x.shape[-2:]), np.float32)


# --------------------------------------------------------------------------- boxes and masks

def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) float32 of a (H, W) {0,1} mask, x1/y1 exclusive; NaNs when the mask is empty."""
    rows, cols = np.flatnonzero(np.asarray(mask).any(1)), np.flatnonzero(np.asarray(mask).any(0))
    if not len(rows):
        return np.full(4, np.nan, np.float32)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def scale_box(box, factor: float, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Box scaled about its centre by `factor` (Fig. 11: 0.7-1.1), clipped to the image when its size is given."""
    if not (isinstance(factor, (int, float)) and factor > 0):
        raise ValueError(f"scale_box: factor must be a number > 0, got {factor!r}")
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    out = np.array([cx - hw, cy - hh, cx + hw, cy + hh])
    if width is not None:
        out[[0, 2]] = out[[0, 2]].clip(0, width)
    if height is not None:
        out[[1, 3]] = out[[1, 3]].clip(0, height)
    return out.astype(np.float32)


def box_mask(box, height: int, width: int) -> np.ndarray:
    """M_in of Eq. 6 as uint8 (H, W): 1 on pixels whose centre lies inside the box (rounded edges), else 0."""
    m = np.zeros((height, width), np.uint8)
    if np.isnan(np.asarray(box, float)).any():
        return m
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    m[y0:y1, x0:x1] = 1
    return m


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1); NaN when either is missing."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else float("nan")


def batch_box_masks(masks: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, H, W) lesion masks (already augmented with the image) -> (M_in (B, H, W) float of each mask's
    tight box scaled by `scale` about its centre, has_box (B,) bool: the mask is not empty). Torch, on device."""
    m = masks[:, 0] > 0.5
    b, h, w = m.shape
    has = m.flatten(1).any(1)
    rows, cols = m.any(2), m.any(1)  # (B, H), (B, W)
    ar_h = torch.arange(h, device=m.device).expand(b, h)
    ar_w = torch.arange(w, device=m.device).expand(b, w)
    big = max(h, w) + 1
    y0 = torch.where(rows, ar_h, big).min(1).values.float()
    y1 = torch.where(rows, ar_h, -1).max(1).values.float() + 1
    x0 = torch.where(cols, ar_w, big).min(1).values.float()
    x1 = torch.where(cols, ar_w, -1).max(1).values.float() + 1
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    x0, x1 = (cx - hw).round().clamp(0, w), (cx + hw).round().clamp(0, w)
    y0, y1 = (cy - hh).round().clamp(0, h), (cy + hh).round().clamp(0, h)
    x1, y1 = torch.maximum(x1, (x0 + 1).clamp(max=w)), torch.maximum(y1, (y0 + 1).clamp(max=h))
    px = torch.arange(w, device=m.device).view(1, 1, w).float()
    py = torch.arange(h, device=m.device).view(1, h, 1).float()
    inside = ((px >= x0.view(-1, 1, 1)) & (px < x1.view(-1, 1, 1)) & (py >= y0.view(-1, 1, 1)) & (py < y1.view(-1, 1, 1)))
    return (inside & has.view(-1, 1, 1)).float(), has


def energy_inside(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside its region ("energy inside the box"): sum(F * M) / sum(F), (B,).

    maps: (B, H, W) non-negative (figure maps, ReLU'd); regions: (B, H, W) {0, 1} masks or rasterised boxes.
    A map with no mass gives NaN.
    """
    maps, regions = np.asarray(maps, np.float64), np.asarray(regions, np.float64)
    if maps.shape != regions.shape:
        raise ValueError(f"energy_inside: maps {maps.shape} and regions {regions.shape} differ in shape")
    tot = maps.reshape(len(maps), -1).sum(1)
    ins = (maps * regions).reshape(len(maps), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, ins / tot, np.nan)


# --------------------------------------------------------------------------- automatic boxes (Section 3.3)

SALIENCY = ("spectral_residual", "fine_grained")


def saliency_map(image: np.ndarray, method: str = "spectral_residual") -> np.ndarray:
    """Unsupervised saliency of a uint8 (H, W, 3) image, float32 (H, W) in [0, 1] (OpenCV contrib `cv2.saliency`:
    Hou & Zhang's spectral residual, or Montabone & Soto's fine-grained static saliency). Stands in for the
    paper's DSR / BMS, which no maintained library provides."""
    import cv2

    if method not in SALIENCY:
        raise ValueError(f"saliency_map: method must be one of {SALIENCY}, got {method!r}")
    algo = (cv2.saliency.StaticSaliencySpectralResidual_create() if method == "spectral_residual"
            else cv2.saliency.StaticSaliencyFineGrained_create())
    ok, sal = algo.computeSaliency(np.ascontiguousarray(image))
    if not ok:
        raise RuntimeError(f"saliency_map: OpenCV {method} failed on an image of shape {image.shape}")
    sal = sal.astype(np.float32)
    return (sal - sal.min()) / (sal.max() - sal.min() + EPS)


def largest_component_box(binary: np.ndarray) -> np.ndarray:
    """Box of the largest 8-connected component of a (H, W) binary map (connected-component labelling, OpenCV);
    NaNs when the map is empty."""
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(np.asarray(binary, np.uint8), connectivity=8)
    if n <= 1:
        return np.full(4, np.nan, np.float32)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (stats[k, i] for i in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    return np.array([x, y, x + w, y + h], np.float32)


def saliency_box(image: np.ndarray, method: str = "spectral_residual", threshold: str | float = "otsu",
                 blur: int = 0) -> np.ndarray:
    """Saliency map -> threshold ("otsu" or a number in (0, 1)) -> largest connected component -> its box."""
    import cv2

    sal = saliency_map(image, method)
    if blur:
        sal = cv2.GaussianBlur(sal, (0, 0), blur)
    s8 = np.round(255 * (sal - sal.min()) / (sal.max() - sal.min() + EPS)).astype(np.uint8)
    if threshold == "otsu":
        _, binary = cv2.threshold(s8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    elif isinstance(threshold, (int, float)) and 0 < threshold < 1:
        binary = (s8 >= 255 * threshold).astype(np.uint8)
    else:
        raise ValueError(f"saliency_box: threshold must be 'otsu' or a number in (0, 1), got {threshold!r}")
    return largest_component_box(binary)


def segmentation_model(arch: str = "deeplabv3_mobilenet_v3_large") -> nn.Module:
    """A torchvision DeepLabV3 for lesion / background (2 classes), random init (no download)."""
    from torchvision.models import segmentation as seg

    archs = {"deeplabv3_mobilenet_v3_large": seg.deeplabv3_mobilenet_v3_large,
             "deeplabv3_resnet50": seg.deeplabv3_resnet50}
    if arch not in archs:
        raise ValueError(f"segmentation_model: arch must be one of {sorted(archs)}, got {arch!r}")
    return archs[arch](weights=None, weights_backbone=None, num_classes=2, aux_loss=False)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of the lesion channel: 1 - (2 |P.T| + eps) / (|P| + |T| + eps) averaged over the batch."""
    p = logits.softmax(1)[:, 1]
    t = target.float()
    inter = (p * t).flatten(1).sum(1)
    return (1 - (2 * inter + eps) / (p.flatten(1).sum(1) + t.flatten(1).sum(1) + eps)).mean()


def train_segmenter(images: torch.Tensor, masks: torch.Tensor, steps: int = 50, batch_size: int = 16, lr: float = 1e-3,
                    seed: int = 0, arch: str = "deeplabv3_mobilenet_v3_large", device: str = "cpu",
                    progress: bool = True) -> nn.Module:
    """DeepLabV3 trained with Dice loss (Section 3.3) on normalised images (N, 3, H, W) and masks (N, H, W)."""
    from kitlib.progress import bar

    if len(images) < 2:
        raise ValueError("train_segmenter: needs at least 2 images with masks")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = segmentation_model(arch).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    net.train()
    for _ in bar(range(steps), desc="DeepLabV3", leave=False, progress=progress):
        idx = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=g)
        out = net(images[idx].to(device))["out"]
        loss = dice_loss(out, masks[idx].to(device)) + F.cross_entropy(out, masks[idx].long().to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def segmentation_boxes(net: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """argmax lesion map -> largest connected component -> box, (N, 4) float32 (NaN rows where none)."""
    dev = next(net.parameters()).device
    boxes = []
    for i in range(0, len(images), batch_size):
        pred = net(images[i:i + batch_size].to(dev))["out"].argmax(1).cpu().numpy().astype(np.uint8)
        boxes += [largest_component_box(p) for p in pred]
    return np.stack(boxes) if boxes else np.zeros((0, 4), np.float32)


@contextlib.contextmanager
def no_hooks_left(module: nn.Module):
    """Asserts on exit that `module` and its children hold no more forward/backward hooks than on entry."""
    def count():
        return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
    before = count()
    yield
    after = count()
    if after != before:
        raise AssertionError(f"{after - before} hook(s) left registered")
