"""Loss functions for class-imbalanced classification and metric learning.

Every loss is an ``nn.Module`` called as ``loss(logits, target) -> scalar tensor``:

- ``logits``: float (B, C) pre-softmax scores (for :class:`LDAMLoss`: cosine similarities in [-1, 1]).
- ``target``: int64 (B,) class indices, or, where stated (:class:`CrossEntropy`), float (B, C) soft
  target probabilities (MixUp).

Metric-learning losses take features instead of logits: :class:`SupConLoss` (B, V, D) or (B, D),
:class:`CenterLoss` and :class:`TripletLoss` (B, D); their target is int64 (B,) labels.

Class weights (torch float32 (C,), from the training-set class counts ``n_c``):

- :func:`inverse_frequency_weights`: ``w_c ∝ 1/n_c``, normalised to sum to C.
- :func:`class_balanced_weights`: Cui et al. 2019 effective number, ``w_c ∝ (1-β)/(1-β^n_c)``, sum C.
- :func:`drw_weights`: the weights deferred re-weighting (LDAM-DRW) switches on late in training.

Reductions: a mean over the batch. With class weights, hard-target cross-entropy divides by the sum
of the weights of the batch's targets (PyTorch's convention, used by the LDAM-DRW code); focal loss
divides by the batch size (as the public focal / CB-focal codes do).

:func:`build_loss` builds the classification losses by name: ce, rw, focal, cb, cb_focal, ldam.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CrossEntropy",
    "FocalLoss",
    "LDAMLoss",
    "SupConLoss",
    "CenterLoss",
    "TripletLoss",
    "inverse_frequency_weights",
    "class_balanced_weights",
    "drw_weights",
    "ldam_margins",
    "build_loss",
    "LOSSES",
]


# --------------------------------------------------------------------------------------------
# class weights
# --------------------------------------------------------------------------------------------
def _counts_array(counts, where: str) -> np.ndarray:
    """Validate per-class training counts: 1-D, finite, every class > 0."""
    arr = np.asarray(counts.detach().cpu() if torch.is_tensor(counts) else counts, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{where}: class counts must be a non-empty 1-D sequence (one count per class), "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: class counts must be finite, got {arr.tolist()}")
    bad = np.flatnonzero(arr <= 0)
    if bad.size:
        raise ValueError(f"{where}: class(es) {bad.tolist()} have no training sample (count <= 0); "
                         "every class needs at least one training sample (check the split)")
    return arr


def _to_weight(w: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(w, dtype=torch.float32)


def inverse_frequency_weights(counts) -> torch.Tensor:
    """Inverse-frequency class weights ``w_c = C · (1/n_c) / Σ_k (1/n_k)`` (they sum to C).

    counts: (C,) training samples per class. Returns float32 tensor (C,).
    Normalised to sum to C (like :func:`class_balanced_weights`, which tends to these weights as
    β → 1), so a balanced set gets all-ones weights.
    """
    n = _counts_array(counts, "inverse_frequency_weights")
    w = 1.0 / n
    return _to_weight(w * len(n) / w.sum())


def class_balanced_weights(counts, beta: float = 0.9999) -> torch.Tensor:
    """Class-balanced weights of Cui et al. (CVPR 2019): inverse effective number of samples.

    Effective number ``E_n = (1 - β^n) / (1 - β)``; ``w_c = (1 - β) / (1 - β^n_c)``, normalised to sum
    to C. β = 0 gives all ones; β → 1 tends to :func:`inverse_frequency_weights`.
    counts: (C,) training samples per class; beta in [0, 1). Returns float32 tensor (C,).
    """
    if not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"class_balanced_weights: beta must be in [0, 1), got {beta}")
    n = _counts_array(counts, "class_balanced_weights")
    # 1 - β^n computed as -expm1(n·log β) to keep precision for β close to 1
    one_minus_beta_n = -np.expm1(n * np.log(beta)) if beta > 0 else np.ones_like(n)
    w = (1.0 - beta) / one_minus_beta_n
    return _to_weight(w * len(n) / w.sum())


DRW_KINDS = ("cb", "inverse", "min_ratio")


def drw_weights(counts, kind: str = "cb", beta: float = 0.9999) -> torch.Tensor:
    """Class weights for deferred re-weighting (DRW, Cao et al. 2019), switched on late in training.

    kind:
      ``"cb"``        class-balanced weights (1-β)/(1-β^n), sum C (LDAM-DRW code; β = 0.9999),
      ``"inverse"``   1/n normalised to sum C,
      ``"min_ratio"`` min(n)/n (smallest class weighs 1; used by other public codes).
    Returns float32 tensor (C,).
    """
    if kind == "cb":
        return class_balanced_weights(counts, beta)
    if kind == "inverse":
        return inverse_frequency_weights(counts)
    if kind == "min_ratio":
        n = _counts_array(counts, "drw_weights")
        return _to_weight(n.min() / n)
    raise ValueError(f"drw_weights: unknown kind {kind!r}; choose one of {DRW_KINDS}")


def ldam_margins(counts, max_m: float = 0.5) -> torch.Tensor:
    """LDAM per-class margins ``m_j ∝ n_j^(-1/4)`` (Cao et al. 2019, Eq. 12), largest = ``max_m``.

    Returns float32 tensor (C,).
    """
    if not max_m > 0:
        raise ValueError(f"ldam_margins: max_m must be > 0, got {max_m}")
    n = _counts_array(counts, "ldam_margins")
    m = n ** -0.25
    return _to_weight(m * (max_m / m.max()))


# --------------------------------------------------------------------------------------------
# classification losses
# --------------------------------------------------------------------------------------------
class _ClassificationLoss(nn.Module):
    """Shared plumbing: optional class weight (C,) kept as a buffer, swappable with set_weight."""

    soft_targets = False  # subclasses that accept (B, C) probability targets set True

    def __init__(self, weight=None):
        super().__init__()
        # not persistent: weights follow from the class counts and the DRW schedule, so a checkpoint
        # saved before or after the switch loads either way
        self.register_buffer("weight", None, persistent=False)
        self.set_weight(weight)

    def set_weight(self, weight) -> None:
        """Replace the class weights (C,) (e.g. DRW switching them on); ``None`` removes them."""
        name = type(self).__name__
        if weight is None:
            self.weight = None
            return
        w = torch.as_tensor(weight, dtype=torch.float32).detach().clone()
        if w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"{name}: weight must be a 1-D tensor with one entry per class, got shape "
                             f"{tuple(w.shape)}")
        if not torch.all(torch.isfinite(w)) or torch.any(w < 0):
            raise ValueError(f"{name}: weight must be finite and non-negative, got {w.tolist()}")
        if self.weight is not None:
            w = w.to(self.weight.device)
        self.weight = w

    def _check(self, logits: torch.Tensor, target: torch.Tensor) -> bool:
        """Validate shapes; return True when ``target`` is soft (B, C) probabilities."""
        name = type(self).__name__
        if logits.ndim != 2:
            raise ValueError(f"{name}: logits must be (B, C), got shape {tuple(logits.shape)}")
        b, c = logits.shape
        if self.weight is not None and self.weight.numel() != c:
            raise ValueError(f"{name}: weight has {self.weight.numel()} entries but logits have {c} classes")
        if target.ndim == 2:
            if not self.soft_targets:
                raise ValueError(f"{name}: soft (B, C) targets are not supported; pass int64 (B,) labels")
            if tuple(target.shape) != (b, c) or not target.is_floating_point():
                raise ValueError(f"{name}: soft target must be float (B, C) = {(b, c)}, got "
                                 f"{target.dtype} {tuple(target.shape)}")
            return True
        if target.ndim != 1 or target.shape[0] != b:
            raise ValueError(f"{name}: target must be int64 ({b},) labels, got shape {tuple(target.shape)}")
        if target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f"{name}: hard target must be an integer tensor, got {target.dtype}")
        if b and (int(target.min()) < 0 or int(target.max()) >= c):
            raise ValueError(f"{name}: labels must lie in [0, {c - 1}], got range "
                             f"[{int(target.min())}, {int(target.max())}]")
        return False

    def _weight_for(self, logits: torch.Tensor):
        return None if self.weight is None else self.weight.to(device=logits.device, dtype=logits.dtype)

    def extra_repr(self) -> str:
        return "weighted" if self.weight is not None else ""


class CrossEntropy(_ClassificationLoss):
    """Cross-entropy with optional class weights; hard labels or soft target probabilities.

    Hard (B,) int64: ``Σ_i w_{y_i} · (-log p_{i,y_i}) / Σ_i w_{y_i}`` (PyTorch weighted mean).
    Soft (B, C) float q (MixUp): ``Σ_i Σ_c w_c q_ic (-log p_ic) / Σ_i Σ_c w_c q_ic``; this equals the
    hard loss on one-hot q (unweighted: the mean over the batch of ``-Σ_c q_ic log p_ic``).
    Returns a scalar.
    """

    soft_targets = True

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        soft = self._check(logits, target)
        w = self._weight_for(logits)
        if not soft:
            return F.cross_entropy(logits, target, weight=w)
        q = target.to(logits.dtype)
        logp = F.log_softmax(logits, dim=1)
        if w is None:
            return -(q * logp).sum(dim=1).mean()
        wq = q * w
        return -(wq * logp).sum() / wq.sum().clamp_min(torch.finfo(logits.dtype).tiny)


class FocalLoss(_ClassificationLoss):
    """Focal loss (Lin et al. 2017): ``FL = -w_{y} (1 - p_t)^γ log p_t``, mean over the batch.

    gamma: focusing parameter ≥ 0 (the focal paper uses 2; the LDAM-DRW code uses 1; γ = 0 and no
    weight is plain cross-entropy). weight: optional (C,) class weights (α_t; with class-balanced
    weights this is CB-focal). ``p_t`` comes from the softmax (the LDAM-DRW code derives it from the
    weighted CE instead, which differs when weights are set). The batch mean divides by B, not by
    the sum of weights, as in the public focal / CB-focal codes. Hard int64 (B,) targets only.
    """

    def __init__(self, gamma: float = 2.0, weight=None):
        if not gamma >= 0:
            raise ValueError(f"FocalLoss: gamma must be >= 0, got {gamma}")
        super().__init__(weight)
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        logp_t = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        p_t = logp_t.exp()
        loss = -((1.0 - p_t).clamp_min(0.0) ** self.gamma) * logp_t
        w = self._weight_for(logits)
        if w is not None:
            loss = loss * w[target]
        return loss.mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}" + (", weighted" if self.weight is not None else "")


class LDAMLoss(_ClassificationLoss):
    """Label-distribution-aware margin loss (Cao et al., NeurIPS 2019).

    Per-class margin ``m_j ∝ n_j^(-1/4)`` rescaled so that the largest is ``max_m`` (Eq. 12); the
    true-class logit is reduced by its margin and all logits are scaled by ``s`` before a (weighted)
    cross-entropy: ``CE(s · (z - m_y e_y), y)``.

    Expects cosine logits in [-1, 1] from a normalised classifier (``create_model(..., head="cosine")``);
    with s = 30 as in the public code. ``set_weight`` switches on DRW weights (:func:`drw_weights`).
    counts: (C,) training samples per class. Hard int64 (B,) targets only.
    """

    def __init__(self, counts, max_m: float = 0.5, s: float = 30.0, weight=None):
        if not s > 0:
            raise ValueError(f"LDAMLoss: s must be > 0, got {s}")
        super().__init__(weight)
        self.register_buffer("margins", ldam_margins(counts, max_m), persistent=False)
        self.max_m = float(max_m)
        self.s = float(s)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        if logits.shape[1] != self.margins.numel():
            raise ValueError(f"LDAMLoss: built for {self.margins.numel()} classes (len(counts)) but logits "
                             f"have {logits.shape[1]}")
        m = self.margins.to(device=logits.device, dtype=logits.dtype)
        onehot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        z = logits - onehot * m                  # subtract m_y from the true-class logit only
        return F.cross_entropy(self.s * z, target, weight=self._weight_for(logits))

    def extra_repr(self) -> str:
        return f"max_m={self.max_m}, s={self.s}" + (", weighted" if self.weight is not None else "")


# --------------------------------------------------------------------------------------------
# metric-learning losses
# --------------------------------------------------------------------------------------------
def _check_labels(labels: torch.Tensor, b: int, name: str) -> None:
    if labels.ndim != 1 or labels.shape[0] != b:
        raise ValueError(f"{name}: labels must be int64 ({b},), got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ValueError(f"{name}: labels must be an integer tensor, got {labels.dtype}")


def _zero(x: torch.Tensor) -> torch.Tensor:
    """A zero that stays attached to the graph (so backward() works and gives zero gradients)."""
    return x.sum() * 0.0


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020; paper 002 Eq. 1).

    features: (B, V, D) V augmented views per sample, or (B, D) (V = 1); L2-normalised here along D
    (idempotent if already normalised). labels: int64 (B,).
    All B·V embeddings are anchors; for anchor i with positives P(i) (same label, not i itself, so
    |P(i)| = N_ci - 1 of Eq. 1):
    ``L_i = -s · 1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/T) / Σ_{k≠i} exp(z_i·z_k/T) )``.
    base_temperature None (default): s = 1, Eq. 1 as written. A number T_base: s = T / T_base, the
    SupContrast code's convention (T_base 0.07 there), which rescales the loss with T.
    The loss is the mean of L_i over anchors that have at least one positive; anchors without one
    are skipped (no NaN) and a batch with none gives 0. Returns a scalar.
    """

    def __init__(self, temperature: float = 0.07, base_temperature: float | None = None):
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0 \
                or not math.isfinite(temperature):
            raise ValueError(f"SupConLoss: temperature must be a finite number > 0, got {temperature!r}")
        if base_temperature is not None and (isinstance(base_temperature, bool)
                                             or not isinstance(base_temperature, (int, float))
                                             or not base_temperature > 0 or not math.isfinite(base_temperature)):
            raise ValueError(f"SupConLoss: base_temperature must be None (Eq. 1) or a finite number > 0, "
                             f"got {base_temperature!r}")
        self.temperature = float(temperature)
        self.base_temperature = None if base_temperature is None else float(base_temperature)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:
            features = features[:, None, :]
        if features.ndim != 3:
            raise ValueError(f"SupConLoss: features must be (B, V, D) or (B, D), got {tuple(features.shape)}")
        b, v, _ = features.shape
        _check_labels(labels, b, "SupConLoss")
        z = F.normalize(features, dim=-1).transpose(0, 1).reshape(v * b, -1)   # view-major (V·B, D)
        lab = labels.repeat(v)
        n = z.shape[0]
        sim = z @ z.T / self.temperature
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(self_mask, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)               # Eq. 1, k ≠ i
        pos = (lab[:, None] == lab[None, :]) & ~self_mask
        n_pos = pos.sum(dim=1)
        valid = n_pos > 0
        if not bool(valid.any()):
            return _zero(features)
        mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(dim=1)[valid] / n_pos[valid]
        scale = 1.0 if self.base_temperature is None else self.temperature / self.base_temperature
        return -scale * mean_log_prob_pos.mean()                                  # Eq. 1, mean over anchors

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}"


class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): ``Σ_i ||x_i - c_{y_i}||² / B``.

    Wen et al. write ``½ Σ_i ||x_i - c_{y_i}||²``; the public PyTorch code (pytorch-center-loss)
    drops the ½ and divides by B. Default ``half=False`` follows the code; ``half=True`` multiplies
    by ½. The centres are an ``nn.Parameter`` (num_classes, feat_dim), initialised N(0, 1) from the
    global torch RNG, learned by gradient descent (the public code gives them their own SGD, lr 0.5).
    features: float (B, feat_dim); labels: int64 (B,). Returns a scalar.
    """

    def __init__(self, num_classes: int, feat_dim: int, half: bool = False):
        super().__init__()
        if int(num_classes) < 1 or int(feat_dim) < 1:
            raise ValueError(f"CenterLoss: num_classes and feat_dim must be >= 1, got {num_classes}, {feat_dim}")
        self.num_classes, self.feat_dim, self.half = int(num_classes), int(feat_dim), bool(half)
        self.centers = nn.Parameter(torch.randn(self.num_classes, self.feat_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"CenterLoss: features must be (B, {self.feat_dim}), got {tuple(features.shape)}")
        _check_labels(labels, features.shape[0], "CenterLoss")
        if features.shape[0] and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"CenterLoss: labels must lie in [0, {self.num_classes - 1}]")
        if features.shape[0] == 0:
            return _zero(features) + _zero(self.centers)
        d = (features - self.centers[labels]).pow(2).sum(dim=1)
        return d.mean() * (0.5 if self.half else 1.0)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, half={self.half}"


TRIPLET_MINING = ("all", "hard", "semihard")
TRIPLET_DISTANCES = ("squared", "euclidean")  # ||a-b||^2 (siamese-triplet) or ||a-b|| (paper 004's text)


class TripletLoss(nn.Module):
    """Triplet loss with online mining in the batch (Hoffer & Ailon 2015; siamese-triplet convention).

    Distances (``distance``) are squared Euclidean ``d(a, b) = ||x_a - x_b||²`` (default, the siamese-triplet
    code) or Euclidean ``||x_a - x_b||`` (paper 004's text, margin 50) on the raw features (B, D); each
    triplet (anchor a, positive p ≠ a of the same label, negative n of another label) costs
    ``relu(d_ap - d_an + margin)``. Mining picks the triplets:

    - ``"all"``: every valid triplet;
    - ``"hard"``: for every (a, p) pair, its hardest negative (smallest d_an);
    - ``"semihard"``: for every (a, p) pair, the hardest semi-hard negative, i.e. the smallest d_an
      with ``d_ap < d_an < d_ap + margin``; pairs without one are dropped (the public code picks one
      at random; here it is deterministic).

    The loss is the mean over the mined triplets; it is 0 (not NaN, still differentiable) when there
    is none. features: float (B, D); labels: int64 (B,). Returns a scalar.
    """

    def __init__(self, margin: float = 1.0, mining: str = "all", distance: str = "squared"):
        super().__init__()
        if mining not in TRIPLET_MINING:
            raise ValueError(f"TripletLoss: unknown mining {mining!r}; choose one of {TRIPLET_MINING}")
        if not margin >= 0:
            raise ValueError(f"TripletLoss: margin must be >= 0, got {margin}")
        if distance not in TRIPLET_DISTANCES:
            raise ValueError(f"TripletLoss: unknown distance {distance!r}; choose one of {TRIPLET_DISTANCES}")
        self.margin = float(margin)
        self.mining = mining
        self.distance = distance

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2:
            raise ValueError(f"TripletLoss: features must be (B, D), got {tuple(features.shape)}")
        b = features.shape[0]
        _check_labels(labels, b, "TripletLoss")
        # squared distances via differences (exact zeros on the diagonal, stable gradients)
        d = (features[:, None, :] - features[None, :, :]).pow(2).sum(-1)          # (B, B)
        if self.distance == "euclidean":  # paper 004: Euclidean distance; eps keeps the gradient finite at 0
            d = (d + 1e-12).sqrt()
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(b, dtype=torch.bool, device=features.device)
        pos_pair = same & ~eye                                                     # (a, p)
        neg_pair = ~same                                                           # (a, n)
        if self.mining == "all":
            cost = d[:, :, None] - d[:, None, :] + self.margin                     # [a, p, n]
            valid = pos_pair[:, :, None] & neg_pair[:, None, :]
            if not bool(valid.any()):
                return _zero(features)
            return F.relu(cost[valid]).mean()
        inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
        d_an = torch.where(neg_pair, d, inf)                                       # (a, n)
        a_idx, p_idx = pos_pair.nonzero(as_tuple=True)
        if a_idx.numel() == 0:
            return _zero(features)
        d_ap = d[a_idx, p_idx]                                                     # (P,)
        cand = d_an[a_idx]                                                         # (P, B)
        if self.mining == "semihard":
            semi = (cand > d_ap[:, None]) & (cand < d_ap[:, None] + self.margin)
            cand = torch.where(semi, cand, inf)
        hardest = cand.min(dim=1).values
        keep = torch.isfinite(hardest)
        if not bool(keep.any()):
            return _zero(features)
        return F.relu(d_ap[keep] - hardest[keep] + self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, distance={self.distance!r}"


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def _need_counts(name: str, class_counts):
    if class_counts is None:
        raise ValueError(f"build_loss({name!r}): class_counts (training samples per class) is required")
    return class_counts


def _ce(class_counts=None, weight=None):
    return CrossEntropy(weight=weight)


def _rw(class_counts=None):
    return CrossEntropy(weight=inverse_frequency_weights(_need_counts("rw", class_counts)))


def _focal(class_counts=None, gamma: float = 2.0, weight=None):
    return FocalLoss(gamma=gamma, weight=weight)


def _cb(class_counts=None, beta: float = 0.9999, base: str = "ce", gamma: float = 2.0):
    w = class_balanced_weights(_need_counts("cb", class_counts), beta)
    if base == "ce":
        return CrossEntropy(weight=w)
    if base == "focal":
        return FocalLoss(gamma=gamma, weight=w)
    raise ValueError(f"build_loss('cb'): base must be 'ce' or 'focal', got {base!r}")


def _cb_focal(class_counts=None, beta: float = 0.9999, gamma: float = 2.0):
    return _cb(class_counts, beta=beta, base="focal", gamma=gamma)


def _ldam(class_counts=None, max_m: float = 0.5, s: float = 30.0, weight=None):
    return LDAMLoss(_need_counts("ldam", class_counts), max_m=max_m, s=s, weight=weight)


LOSSES = {"ce": _ce, "rw": _rw, "focal": _focal, "cb": _cb, "cb_focal": _cb_focal, "ldam": _ldam}


def build_loss(name: str, class_counts: Sequence[int] | None = None, **kw) -> nn.Module:
    """Classification loss by name.

    - ``ce``: plain cross-entropy (kw: weight);
    - ``rw``: cross-entropy with :func:`inverse_frequency_weights`;
    - ``focal``: :class:`FocalLoss` (kw: gamma=2.0, weight);
    - ``cb``: cross-entropy with :func:`class_balanced_weights` (kw: beta=0.9999, base="ce"|"focal", gamma);
    - ``cb_focal``: ``cb`` with ``base="focal"`` (kw: beta, gamma);
    - ``ldam``: :class:`LDAMLoss` (kw: max_m=0.5, s=30.0, weight).

    class_counts: (C,) training samples per class; needed by rw, cb, cb_focal, ldam.
    """
    if name not in LOSSES:
        raise ValueError(f"build_loss: unknown loss {name!r}; known: {sorted(LOSSES)}")
    try:
        return LOSSES[name](class_counts, **kw)
    except TypeError as e:
        raise TypeError(f"build_loss({name!r}): bad keyword argument(s) {sorted(kw)}: {e}") from None
