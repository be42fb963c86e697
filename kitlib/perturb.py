"""Perturbed input at inference (paper 000: Chen et al., MICCAI 2021).

A trained classifier is biased toward the classes it saw most. For every test image the input is moved
one signed-gradient step so that the temperature-softened output gets closer to a target distribution
that puts more mass on rare classes; the prediction is the model's ordinary softmax on the moved input.

    p* = target_distribution(train_counts)                  # (C,)  Eq. 2, g(n) = log(M / n)
    x~ = perturb_inputs(model, x, train_counts, eps=1e-3)   # (B, 3, H, W)  Eq. 3
    probs = predict_perturbed(model, loader, train_counts, eps=1e-3)   # (N, C) numpy
    eps, table = choose_eps(model, val_loader, train_counts, [0, 1e-4, 5e-4, 1e-3])

Units: by default (`space="normalized"`, as in the authors' code) eps is measured in units of the normalised
tensor the model receives (pixel/std) and nothing is clamped; with `space="pixel"` eps is in [0, 1] pixel
units and the perturbed image is clamped to [0, 1] before being normalised again.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from kitlib.progress import bar as progress_bar

from kitlib.infer import autocast, batch_images, batch_labels, iter_batches
from kitlib.metrics import evaluate

MEASURES = ("ce", "mse", "focal")
SPACES = ("normalized", "pixel")

__all__ = [
    "MEASURES", "SPACES", "target_distribution", "difference", "signed_gradient", "perturb_inputs",
    "predict_perturbed", "choose_eps",
]


# ----------------------------------------------------------------------------------------------- target


def target_distribution(class_counts) -> torch.Tensor:
    """Target probabilities p* (Eq. 2) from the training-set class counts.

    p*_c = g(n_c) / sum_k g(n_k) with g(n) = log(M / n) and M = max_k n_k, so the largest class gets 0 mass
    and rarer classes get more. class_counts: (C,) non-negative integers (C >= 2), the number of *training*
    images per class. Returns a (C,) float64 tensor that sums to 1.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"class_counts must be a 1-D sequence with one count per class (>= 2 classes), "
                         f"got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"class_counts must be finite and non-negative, got {counts.tolist()}")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"class_counts: class {int(empty[0])} has 0 training images; g(n) = log(M/n) (Eq. 2) is "
                         f"undefined. Give every class at least one training image or drop the class.")
    g = np.log(counts.max() / counts)  # Eq. 2: g(n_c) = log(M / n_c) >= 0
    total = g.sum()
    if total <= 0:
        raise ValueError(f"class_counts are all equal ({counts.tolist()}): Eq. 2 is 0/0, there is no imbalance "
                         f"to correct. Use eps=0 (plain inference) for a balanced training set.")
    return torch.from_numpy(g / total)  # Eq. 2


# ----------------------------------------------------------------------------------- difference measure


def difference(logits: torch.Tensor, target: torch.Tensor, measure: str = "ce", T: float = 1000.0,
               gamma: float = 2.0) -> torch.Tensor:
    """Difference l(p_hat, p*) summed over the batch (a scalar).

    logits: (B, C); target: (C,) p*; p_hat = softmax(logits / T) (Eq. 1). Measures, per sample:
      "ce":    -sum_c p*_c log p_hat_c                      (the paper's default, as in the authors' code)
      "mse":    sum_c (p_hat_c - p*_c)^2
      "focal": -sum_c p*_c (1 - p_hat_c)^gamma log p_hat_c  (the paper names a focal variant but does not
               define it; this is the focal loss of Lin et al. with the one-hot label replaced by the soft
               target p*, i.e. its expectation over labels drawn from p*; gamma = 0 gives "ce").
    The batch sum keeps every sample's input gradient independent of the others (model in eval mode).
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {MEASURES}")
    if not T > 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    if logits.ndim != 2 or logits.shape[1] != target.numel():
        raise ValueError(f"the model gives logits of shape {tuple(logits.shape)} but class_counts has "
                         f"{target.numel()} classes; pass the training counts of the model's classes")
    target = target.to(device=logits.device, dtype=logits.dtype)
    log_p = F.log_softmax(logits / T, dim=1)  # Eq. 1 (log of p_hat)
    if measure == "ce":
        per_class = -target * log_p
    elif measure == "mse":
        per_class = (log_p.exp() - target) ** 2
    else:
        per_class = -target * (1.0 - log_p.exp()).pow(gamma) * log_p
    return per_class.sum()


# -------------------------------------------------------------------------------------------- the step


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return fallback


def _channel_stats(value, name: str, like: torch.Tensor) -> torch.Tensor:
    if value is None:
        raise ValueError(f"space='pixel' needs `{name}` (per-channel normalisation {name}, e.g. the one the "
                         f"dataset transform used) to map the input back to [0, 1] pixels")
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).flatten()
    if t.numel() not in (1, like.shape[1]):
        raise ValueError(f"`{name}` must have 1 or {like.shape[1]} (channel) values, got {t.numel()}")
    if name == "std" and bool((t <= 0).any()):
        raise ValueError(f"`std` must be positive, got {t.tolist()}")
    return t.view(1, -1, *([1] * (like.ndim - 2)))


def signed_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, T: float = 1000.0,
                    measure: str = "ce", gamma: float = 2.0, amp: bool = False) -> torch.Tensor:
    """sign(grad_x l(p_hat, p*)) for a batch x (B, ...) on the model's device, same shape as x.

    amp: the forward under bfloat16 autocast on CUDA (a no-op on CPU); off by default (fp32, as the paper).
    One forward with a graph and one backward to the input only (torch.autograd.grad: parameters never
    receive .grad). Runs in eval mode and restores every submodule's train/eval flag afterwards; works
    inside torch.no_grad() and torch.inference_mode().
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x_req = x.detach().clone().requires_grad_(True)  # clone: a normal tensor even from inference mode
            with autocast(x_req.device, amp):
                logits = model(x_req)
            loss = difference(logits.float(), target, measure=measure, T=T, gamma=gamma)
            (grad,) = torch.autograd.grad(loss, x_req)
    finally:
        for module, mode in modes:
            module.training = mode
    return grad.sign()


def _step(x: torch.Tensor, direction: torch.Tensor, eps: float, space: str, mean, std) -> torch.Tensor:
    """Eq. 3, x~ = x - eps * direction, in the normalised tensor or in [0, 1] pixels."""
    if space == "normalized":
        return x - eps * direction  # Eq. 3
    m, s = _channel_stats(mean, "mean", x), _channel_stats(std, "std", x)
    # grad w.r.t. pixels = grad w.r.t. the normalised tensor / std (std > 0): the same sign
    pixels = (x * s + m - eps * direction).clamp_(0.0, 1.0)  # Eq. 3 in pixel units, kept a valid image
    return (pixels - m) / s


def _check_args(eps: float, measure: str, space: str, mean=None, std=None) -> None:
    if isinstance(eps, bool) or not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {MEASURES}")
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; choose one of {SPACES}")
    if space == "pixel" and (mean is None or std is None):
        raise ValueError("space='pixel' needs `mean` and `std` (the per-channel normalisation the dataset "
                         "transform used) to map the input back to [0, 1] pixels")


def perturb_inputs(model: nn.Module, x: torch.Tensor, class_counts, eps: float, T: float = 1000.0,
                   measure: str = "ce", space: str = "normalized", mean=None, std=None,
                   gamma: float = 2.0) -> torch.Tensor:
    """The perturbed batch x~ = x - eps * sign(grad_x l(softmax(model(x)/T), p*)) (Eqs. 1-3).

    model: any nn.Module mapping a normalised image batch to logits (B, C).
    x: (B, channels, H, W) normalised images, as the model receives them.
    class_counts: (C,) training images per class (for p*, Eq. 2).
    eps: step size; in normalised units for space="normalized" (default, no clamp, the authors' code),
        in [0, 1] pixel units for space="pixel" (then mean/std, per channel, are required and the result is
        clamped to [0, 1] pixels before re-normalising).
    T: temperature of Eq. 1 (the paper uses 1000). measure: "ce" | "mse" | "focal" (see `difference`).
    Returns x~ with x's shape and dtype on the model's device. eps=0 returns x (moved to that device)
    without any backward pass.
    """
    _check_args(eps, measure, space, mean, std)
    device = _model_device(model, x.device)
    x = x.to(device)
    target = target_distribution(class_counts)
    if eps == 0:
        return x
    direction = signed_gradient(model, x, target, T=T, measure=measure, gamma=gamma)
    return _step(x.detach(), direction, eps, space, mean, std)


# ------------------------------------------------------------------------------------------ prediction


def _batches(data, batch_size: int) -> Iterable:
    """Yield (x, y_or_None) from a tensor, a Dataset, or an iterable of dict / (x, y) / tensor batches."""
    for batch in iter_batches(data, batch_size):
        yield batch_images(batch), batch_labels(batch)


def _n_batches(data, batch_size: int):
    if isinstance(data, torch.Tensor):
        return math.ceil(len(data) / batch_size)
    if isinstance(data, torch.utils.data.Dataset):
        return math.ceil(len(data) / batch_size)
    try:
        return len(data)
    except TypeError:
        return None


def _run(model, data, class_counts, eps_list: Sequence[float], T, measure, space, mean, std, gamma, device,
         batch_size, progress, desc, amp=False):
    """One pass over data: the signed gradient once per batch, then one forward per eps.

    Returns (list of (N, C) float32 probability arrays, one per eps; labels (N,) int64 or None).
    """
    for e in eps_list:
        _check_args(e, measure, space, mean, std)
    if device is not None:
        model.to(device)
    dev = _model_device(model, torch.device("cpu"))
    target = target_distribution(class_counts)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    probs = [[] for _ in eps_list]
    labels, missing_label = [], False
    try:
        bar = progress_bar(_batches(data, batch_size), total=_n_batches(data, batch_size), desc=desc,
                           progress=progress, leave=False)
        for x, y in bar:
            x = x.to(dev, non_blocking=True)
            direction = None
            if any(e > 0 for e in eps_list):
                direction = signed_gradient(model, x, target, T=T, measure=measure, gamma=gamma, amp=amp)
            with torch.no_grad(), autocast(dev, amp):
                for k, e in enumerate(eps_list):
                    x_tilde = x if e == 0 else _step(x, direction, e, space, mean, std)
                    probs[k].append(F.softmax(model(x_tilde).float(), dim=1).cpu().numpy())  # prediction at T=1
            if y is None:
                missing_label = True
            else:
                labels.append(torch.as_tensor(y).cpu().numpy().astype(np.int64).reshape(-1))
    finally:
        for module, mode in modes:
            module.training = mode
    if not probs[0]:
        raise ValueError("the data yielded no batches; nothing to predict")
    out = [np.concatenate(p, axis=0) for p in probs]
    y_all = None if missing_label else np.concatenate(labels)
    return out, y_all


def predict_perturbed(model: nn.Module, loader_or_tensor, class_counts, eps: float, T: float = 1000.0,
                      measure: str = "ce", space: str = "normalized", mean=None, std=None, gamma: float = 2.0,
                      device=None, batch_size: int = 64, progress: bool = True, amp: bool = False) -> np.ndarray:
    """Class probabilities (N, C) float32 numpy: softmax(model(x~)) at temperature 1, x~ from Eq. 3.

    loader_or_tensor: a DataLoader (or any iterable) yielding dicts with "image" (and "label"), (x, y)
    tuples or tensors; a Dataset; or an (N, channels, H, W) tensor (split into `batch_size` batches).
    Images must be normalised as the model expects. device: move the model there first (None: leave it
    where it is); batches follow the model. Other arguments as in `perturb_inputs`. The model's
    train/eval flags are restored afterwards. amp: every forward (gradient step and prediction) under
    bfloat16 autocast on CUDA; off by default (fp32). Compare with `kitlib.infer.predict(..., amp=)` set
    alike: bf16 alone moves about as many predictions as eps = 1e-3 does.
    """
    probs, _ = _run(model, loader_or_tensor, class_counts, [eps], T, measure, space, mean, std, gamma,
                    device, batch_size, progress, desc=f"perturbed eps={eps:g}", amp=amp)
    return probs[0]


def predict_perturbed_grid(model: nn.Module, data, class_counts, eps_grid: Sequence[float], T: float = 1000.0,
                           measure: str = "ce", space: str = "normalized", mean=None, std=None, gamma: float = 2.0,
                           device=None, batch_size: int = 64, progress: bool = True,
                           amp: bool = False) -> list[np.ndarray]:
    """`predict_perturbed` for several eps in one pass (one backward per batch): a list of (N, C) arrays."""
    probs, _ = _run(model, data, class_counts, list(eps_grid), T, measure, space, mean, std, gamma, device,
                    batch_size, progress, desc="perturbed eps grid", amp=amp)
    return probs


def choose_eps(model: nn.Module, val_loader, class_counts, eps_grid: Sequence[float], metric: str = "mcr",
               T: float = 1000.0, measure: str = "ce", space: str = "normalized", mean=None, std=None,
               gamma: float = 2.0, device=None, batch_size: int = 64, progress: bool = True, amp: bool = False):
    """Pick eps on a validation split, as the paper does: the grid value with the highest `metric`.

    val_loader: as in `predict_perturbed` but it must yield labels. eps_grid: eps values >= 0 (include 0 to
    compare with plain inference). metric: a key of kitlib.metrics.evaluate (e.g. "mcr" = mean class recall,
    "scr" = smallest-class recall). Ties go to
    the smaller eps. The sign of the gradient does not depend on eps, so each batch gets one backward pass and
    one forward per grid value.
    Returns (best_eps, DataFrame with column "eps" and one column per metric, rows sorted by eps).
    """
    grid = sorted({float(e) for e in eps_grid})
    if not grid:
        raise ValueError("eps_grid is empty; give at least one eps value (e.g. [0, 1e-4, 5e-4, 1e-3])")
    score = lambda y, p: evaluate(y, p, train_counts=np.asarray(class_counts))  # noqa: E731
    probs, y = _run(model, val_loader, class_counts, grid, T, measure, space, mean, std, gamma, device,
                    batch_size, progress, desc="choose eps", amp=amp)
    if y is None:
        raise ValueError("val_loader must yield labels (dicts with 'label' or (x, y) tuples) to choose eps")
    rows = []
    for e, p in zip(grid, probs):
        values = score(y, p)
        if metric not in values:
            raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(values)}")
        rows.append({"eps": e, **{k: v for k, v in values.items() if np.isscalar(v)}})
    table = pd.DataFrame(rows)
    best = float(table["eps"].iloc[int(np.argmax(table[metric].to_numpy()))])  # argmax: first = smallest eps
    return best, table
