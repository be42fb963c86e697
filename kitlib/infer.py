"""Inference: a trained model and a dataset (or loader, or tensor) in, class probabilities out."""
from __future__ import annotations

import contextlib
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from kitlib.progress import bar as progress_bar

TTA = ("none", "flip")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto"/None -> cuda when available, else cpu; otherwise the device named, checked to exist here.

    A device string torch does not know, or a CUDA device on a machine without that GPU, is a ValueError in
    one line saying what to use instead.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for but no CUDA GPU is available on this machine "
                             f"(torch {torch.__version__}); use device='cpu' or 'auto'")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device {device!r} asked for but this machine has {n} CUDA GPU(s) "
                             f"(cuda:0 to cuda:{n - 1}); use one of those or 'auto'")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for but MPS is not available here; use device='cpu' or 'auto'")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bfloat16 autocast on CUDA (no loss scaling needed); a no-op context on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_images(batch) -> torch.Tensor:
    """The image tensor of a batch given as a dict (key "image"), a (x, y) tuple or a tensor."""
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"a batch dict has no 'image' key (keys: {sorted(batch)}); "
                             f"use kitlib.data.TorchImageSet or yield (x, y) tuples")
        return batch["image"]
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, torch.Tensor):
        return batch
    raise TypeError(f"cannot read a batch of type {type(batch).__name__}; yield dicts with 'image', "
                    f"(x, y) tuples or tensors")


def batch_labels(batch):
    """The labels of a batch (dict key "label" or the second tuple item), or None when it has none."""
    if isinstance(batch, dict):
        return batch.get("label")
    if isinstance(batch, (tuple, list)) and len(batch) > 1:
        return batch[1]
    return None


def iter_batches(data, batch_size: int = 256, num_workers: int = 0):
    """Batches of a Dataset (in order), an (N, 3, H, W) tensor, or any iterable of batches (a DataLoader)."""
    if isinstance(data, torch.Tensor):
        return data.split(batch_size)
    if isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          pin_memory=torch.cuda.is_available())
    if hasattr(data, "__iter__"):
        return data
    raise TypeError(f"expected a Dataset, DataLoader, iterable of batches or tensor, got {type(data).__name__}")


@torch.no_grad()
def predict(model: nn.Module, data, tta: str = "none", batch_size: int = 256, device=None,
            amp: bool = True, progress: bool = False, num_workers: int = 0) -> np.ndarray:
    """Softmax probabilities (N, C) float32 numpy, in data order.

    tta="flip" averages the probabilities of each image and its horizontal flip (Balanced-MixUp's protocol).
    The model is put in eval mode and left there.
    """
    if tta not in TTA:
        raise ValueError(f"tta must be one of {TTA}, got {tta!r}")
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.eval().to(device)
    out = []
    for batch in progress_bar(iter_batches(data, batch_size, num_workers), desc="predict", progress=progress, leave=False):
        x = batch_images(batch).to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            p = model(x).float().softmax(1)
            if tta == "flip":
                p = 0.5 * (p + model(x.flip(-1)).float().softmax(1))
        out.append(p.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


# ------------------------------------------------------------------ post-hoc corrections of a trained model
POSTHOC = ("logit_adj", "tau_norm")


def logit_adjust(probs, train_counts, tau: float = 1.0) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): softmax(logits - tau * log prior).

    probs: (N, C) softmax probabilities of the trained model; log(probs) differs from the logits by a
    per-row constant, so the result is exactly softmax(logits - tau * log pi) with pi = train_counts /
    sum(train_counts). tau = 0 returns the input; tau = 1 is the Bayes-optimal correction for a balanced
    error when the model is calibrated. Zero cost: no forward pass.
    """
    p = np.asarray(probs, dtype=np.float64)
    counts = np.asarray(train_counts, dtype=np.float64)
    if p.ndim != 2 or counts.shape != (p.shape[1],):
        raise ValueError(f"logit_adjust: probs (N, C) and train_counts (C,) must agree, got {p.shape} and "
                         f"{counts.shape}")
    if (counts <= 0).any():
        raise ValueError(f"logit_adjust: every class needs a training image, got train_counts {counts.tolist()}")
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"logit_adjust: tau must be a finite number >= 0, got {tau!r}")
    z = np.log(np.clip(p, 1e-30, None)) - tau * np.log(counts / counts.sum())
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def tau_normalize(model: nn.Module, tau: float = 1.0, bias: str = "drop") -> nn.Module:
    """tau-normalised classifier (Kang et al., ICLR 2020): a copy of `model` whose head weights are
    w_c / ||w_c||^tau (each class's row), so that frequent classes lose the larger norms they learnt.

    model: a kitlib model (``model.head`` an ``nn.Linear``, or a cosine head, on which it changes nothing).
    bias: "drop" (zeroed, as the decoupling code scores features by a dot product without bias) or "keep".
    tau = 0 with bias="keep" returns an identical copy. The original model is not modified.
    """
    import copy

    if bias not in ("drop", "keep"):
        raise ValueError(f"tau_normalize: bias must be 'drop' or 'keep', got {bias!r}")
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau_normalize: tau must be a finite number >= 0, got {tau!r}")
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "weight") or head.weight.ndim != 2:
        raise ValueError(f"tau_normalize: {type(model).__name__} has no linear `head` (a kitlib model has one)")
    out = copy.deepcopy(model)
    with torch.no_grad():
        w = out.head.weight
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-12).pow(tau))
        if bias == "drop" and getattr(out.head, "bias", None) is not None:
            out.head.bias.zero_()
    return out


def time_calls(fns: dict, repeats: int = 3, device=None, every: bool = False) -> dict:
    """Median wall seconds of each zero-argument callable over `repeats` rounds (every=True: the list of
    per-round seconds instead). The callables alternate within a round so that a change in machine load
    affects them alike; CUDA is synchronised around each call. Warm up before calling this (allocator,
    cuDNN autotune)."""
    cuda = device is not None and torch.device(device).type == "cuda"
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return times if every else {name: statistics.median(ts) for name, ts in times.items()}
