"""Image transforms as parameters (torchvision.transforms.v2); a lesion mask follows the image's geometry."""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transform(train: bool, size: int, crop: int | None = None, flip: bool = True, rotation: float = 0.0,
                    color_jitter: float = 0.0, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    source_size: int | None = None) -> v2.Compose:
    """uint8 (3, H, W) tv_tensors.Image [+ tv_tensors.Mask] -> normalised float image [+ mask].

    Resize to `size` x `size`; when training: random rotation (degrees, +-rotation), random crop to `crop`,
    horizontal flip (p = 0.5), colour jitter (brightness/contrast/saturation = color_jitter, hue = half of it,
    at most 0.5); at test time a centre crop to `crop` only. Masks get the same geometric ops (nearest
    neighbour) and are neither jittered nor normalised. source_size: the side of the (square) input images
    when known; the resize is left out when it equals `size`.
    """
    if size < 1 or (crop is not None and crop > size):
        raise ValueError(f"need 1 <= crop <= size, got size={size}, crop={crop}")
    ops = [] if source_size == size else [v2.Resize((size, size), antialias=True)]
    if train:
        if rotation:
            ops.append(v2.RandomRotation(rotation))
        if crop:
            ops.append(v2.RandomCrop(crop))
        if flip:
            ops.append(v2.RandomHorizontalFlip())
        if color_jitter:
            ops.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, min(color_jitter / 2, 0.5)))
    elif crop:
        ops.append(v2.CenterCrop(crop))
    ops += [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def denormalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Back to [0, 1] pixels: x * std + mean per channel ((..., 3, H, W))."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x * s + m
