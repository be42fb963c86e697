"""Image transforms as parameters; a lesion mask follows the image's geometry.

`build_transform` returns a `JointTransform`: a fixed chain of torchvision.transforms.v2 functional kernels
(resize, rotate, crop, flip, brightness/contrast/saturation, normalise; hue as an RGB rotation) applied to one image and, optionally, its mask with
the same random geometry. It calls the kernels directly rather than through `v2.Compose`, whose per-op
dispatch dominates the cost at 28-64 px (about 5x faster per item here). Resizing, cropping and flipping
run on uint8 (crops first, so only kept pixels are converted); the image becomes float once, before
rotation or colour jitter. Random draws use torch's global RNG (per worker in a
DataLoader), as v2's random transforms do.
"""
from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class JointTransform:
    """uint8 image (3, H, W) [+ mask (1, H, W)] -> float32 normalised image (3, s, s) [+ mask, its dtype kept].

    Steps, in order: resize to size x size (bilinear, antialiased; nearest for the
    mask; skipped when already that size); when training: rotation by an angle uniform in
    [-rotation, rotation] degrees (bilinear, zero fill; the mask is warped alongside and re-binarised),
    random crop to `crop`, horizontal flip (p = 0.5), colour jitter of strength s (brightness, contrast,
    saturation 0.8 s, hue 0.2 s (at most 0.5 turn): the SimCLR convention, s = 0.5 gives 0.4/0.4/0.4/0.1;
    see `_color_jitter`); at test time a centre crop to `crop`; scale to [0, 1] and normalise by mean/std.
    The mask gets the geometric steps only (never jittered or normalised).
    Accepts plain tensors or tv_tensors (Image/Mask); returns plain tensors: `t(img)` -> image,
    `t(img, mask)` -> (image, mask).
    """

    def __init__(self, train: bool, size: int, crop: int | None = None, flip: bool = True, rotation: float = 0.0,
                 color_jitter: float = 0.0, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if size < 1:
            raise ValueError(f"build_transform: size must be >= 1 pixel, got {size}")
        if crop is not None and not 1 <= crop <= size:
            raise ValueError(f"build_transform: need 1 <= crop <= size, got size={size}, crop={crop}")
        if rotation < 0 or color_jitter < 0:
            raise ValueError(f"build_transform: rotation and color_jitter must be >= 0, got {rotation}, {color_jitter}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"build_transform: mean/std need 3 values each (std > 0), got {mean}, {std}")
        self.train, self.size, self.crop = bool(train), int(size), crop
        self.flip, self.rotation, self.color_jitter = bool(flip), float(rotation), float(color_jitter)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean).view(3, 1, 1)
        self._istd = 1.0 / torch.tensor(self.std).view(3, 1, 1)

    def __repr__(self) -> str:
        return (f"JointTransform(train={self.train}, size={self.size}, crop={self.crop}, flip={self.flip}, "
                f"rotation={self.rotation}, color_jitter={self.color_jitter}, mean={self.mean}, std={self.std})")

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None):
        x = image.as_subclass(torch.Tensor)
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"transform: expected an image (3, H, W), got shape {tuple(x.shape)}")
        m = None if mask is None else mask.as_subclass(torch.Tensor)
        if m is not None and m.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"transform: mask {tuple(m.shape)} and image {tuple(x.shape)} differ in size")
        if x.shape[-2:] != (self.size, self.size):
            x = F.resize_image(x, [self.size, self.size], antialias=True)  # native uint8 path on CPU
            if m is not None:
                m = F.resize_mask(m, [self.size, self.size])
        if self.train:
            if self.rotation:
                angle = float(torch.empty(()).uniform_(-self.rotation, self.rotation))
                x = _to_float(x)
                if m is None:
                    x = F.rotate_image(x, angle, interpolation=InterpolationMode.BILINEAR)
                else:  # one warp for both: the mask rides along as a 4th channel, re-binarised at 0.5
                    xm = F.rotate_image(torch.cat([x, m.to(x.dtype)]), angle, interpolation=InterpolationMode.BILINEAR)
                    x, m = xm[:3], (xm[3:] >= 0.5).to(m.dtype)
            if self.crop and self.crop < self.size:
                top, left = (int(v) for v in torch.randint(0, self.size - self.crop + 1, (2,)))
                x, m = _crop(x, m, top, left, self.crop)
            if self.flip and bool(torch.rand(()) < 0.5):
                x = x.flip(-1)
                m = None if m is None else m.flip(-1)
            x = _to_float(x)
            if self.color_jitter:
                x = _color_jitter(x, self.color_jitter)
        elif self.crop and self.crop < self.size:
            off = int(round((self.size - self.crop) / 2.0))
            x, m = _crop(x, m, off, off, self.crop)
        x = _to_float(x)
        x = (x - self._mean).mul_(self._istd)
        return x if mask is None else (x, m)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned as float32 (never modified in place later)."""
    return x.float().mul_(1 / 255) if x.dtype == torch.uint8 else x.float()


def _hue_rotate(x: torch.Tensor, h: float) -> torch.Tensor:
    """Shift hue by h turns as a rotation of RGB about the grey axis (1,1,1): keeps the channel mean; a fast
    linear stand-in for the HSV round trip of torchvision's adjust_hue (about 10x slower at 32 px)."""
    th = 2 * math.pi * h
    c, s, k = math.cos(th), math.sin(th), 1 / math.sqrt(3)
    a, b = c + (1 - c) / 3, (1 - c) / 3 - s * k
    d = (1 - c) / 3 + s * k
    rot = torch.tensor([[a, b, d], [d, a, b], [b, d, a]], dtype=x.dtype)
    return torch.einsum("ij,jhw->ihw", rot, x).clamp_(0, 1)


def _color_jitter(x: torch.Tensor, s: float) -> torch.Tensor:
    """Colour jitter of strength s on a [0, 1] float image (3, H, W): brightness, contrast and saturation
    factors uniform in [max(0, 1 - 0.8 s), 1 + 0.8 s], hue shift uniform in +-min(0.2 s, 0.5) turns,
    applied in a random order (as torchvision's ColorJitter)."""
    lo, hi, hmax = max(0.0, 1 - 0.8 * s), 1 + 0.8 * s, min(0.2 * s, 0.5)
    f = torch.empty(3).uniform_(lo, hi).tolist()
    h = float(torch.empty(()).uniform_(-hmax, hmax))
    for op in torch.randperm(4).tolist():
        if op == 0:
            x = F.adjust_brightness(x, f[0])
        elif op == 1:
            x = F.adjust_contrast(x, f[1])
        elif op == 2:
            x = F.adjust_saturation(x, f[2])
        else:
            x = _hue_rotate(x, h)
    return x


def _crop(x, m, top: int, left: int, c: int):
    x = x[..., top:top + c, left:left + c]
    return x, (None if m is None else m[..., top:top + c, left:left + c])


def build_transform(train: bool, size: int, crop: int | None = None, flip: bool = True, rotation: float = 0.0,
                    color_jitter: float = 0.0, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> JointTransform:
    """The training (train=True) or test transform: see `JointTransform` for the steps.

    size: side after resizing (pixels); crop: side after the random (train) / centre (test) crop, or None;
    flip/rotation/color_jitter act in training only; mean/std: per-channel normalisation of [0, 1] pixels.
    """
    return JointTransform(train, size, crop, flip, rotation, color_jitter, mean, std)


def denormalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Back to [0, 1] pixels: x * std + mean per channel; x is (..., 3, H, W)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x * s + m
