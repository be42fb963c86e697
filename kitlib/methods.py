"""Training methods: how a batch becomes a loss, which sampler feeds it, which head it needs.

A method is a small object the engine (`kitlib.train.fit`) calls; it never owns a training loop:

    method.sampler / method.sampler_kwargs(epochs)  -> the train sampler (kitlib.samplers.build_sampler)
    method.views                                    -> augmented views per sample (SupCon: 2)
    method.head                                     -> "linear" or "cosine" (LDAM), None = the model spec's
    method.setup(model, class_counts, epochs)       -> extra trainable modules (centres, projection heads)
    method.loss(model, batch, epoch)                -> (scalar loss, {name: float} logs)

`model(x, out="all")` returns {"fmap", "feat", "logits"}; always call the model (not its sub-modules) so
DistributedDataParallel sees the forward pass. New methods: subclass `Method`, add one `register` line.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from kitlib import losses as L

METHODS: dict[str, type["Method"]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        METHODS[name] = cls
        return cls
    return deco


class Method:
    """Plain cross-entropy on instance-sampled batches (the CE baseline)."""

    name = "ce"
    sampler = "instance"
    views = 1
    head: str | None = None
    extra_sampler: str | None = None  # a second, differently sampled batch as batch["extra"] (Balanced-MixUp)
    unused_parameters = False  # True: some model parameters get no gradient (DDP find_unused_parameters)

    def __init__(self, **params):
        self.params = params
        self.criterion: nn.Module | None = None

    def config(self) -> dict:
        """What identifies this method in a run's config hash."""
        return {"name": self.name, **self.params}

    def sampler_kwargs(self, epochs: int) -> dict:
        return {}

    def setup(self, model: nn.Module, class_counts, epochs: int) -> list[nn.Module]:
        self.class_counts = torch.as_tensor(class_counts, dtype=torch.float)
        self.epochs = epochs
        self.criterion = self.make_criterion()
        return []

    def make_criterion(self) -> nn.Module:
        return L.CrossEntropy()

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for schedules inside the method (e.g. deferred re-weighting)."""

    def loss(self, model, batch, epoch):
        logits = model(batch["image"])
        loss = self.criterion(logits, batch["label"])
        return loss, {"ce": float(loss.detach())}


def _defer_epoch(epochs: int, defer_at: float) -> int:
    """`defer_at` < 1 is a fraction of the epochs (LDAM-DRW: 160 of 200 = 0.8), >= 1 an epoch number."""
    return int(round(defer_at * epochs)) if defer_at < 1 else int(defer_at)


@register("ce")
class CE(Method):
    pass


@register("rs")
class RS(Method):
    """Class-balanced re-sampling (RS): every class equally likely in a batch, plain CE."""

    sampler = "class"


@register("rw")
class RW(Method):
    """Class-level re-weighting (RW): CE weighted by inverse class frequency."""

    def make_criterion(self):
        return L.CrossEntropy(weight=L.inverse_frequency_weights(self.class_counts))


@register("focal")
class Focal(Method):
    """Focal loss (FL), gamma default 2 as in Lin et al. (the LDAM-DRW code uses 1)."""

    def __init__(self, gamma: float = 2.0):
        super().__init__(gamma=gamma)

    def make_criterion(self):
        return L.FocalLoss(gamma=self.params["gamma"])


@register("cb")
class CB(Method):
    """Class-balanced CE with effective-number weights (Cui et al.), beta default 0.9999."""

    def __init__(self, beta: float = 0.9999):
        super().__init__(beta=beta)

    def make_criterion(self):
        return L.CrossEntropy(weight=L.class_balanced_weights(self.class_counts, self.params["beta"]))


@register("drs")
class DRS(Method):
    """Deferred re-sampling (DRS): instance sampling, class-balanced from the defer epoch (default 80%)."""

    sampler = "drs"

    def __init__(self, defer_at: float = 0.8):
        super().__init__(defer_at=defer_at)

    def sampler_kwargs(self, epochs):
        return {"defer_epoch": _defer_epoch(epochs, self.params["defer_at"])}


@register("ldam")
class LDAM(Method):
    """LDAM loss on a cosine classifier: margins ∝ n^-1/4 (largest max_m), logits scaled by s."""

    head = "cosine"

    def __init__(self, max_m: float = 0.5, s: float = 30.0):
        super().__init__(max_m=max_m, s=s)

    def make_criterion(self):
        return L.LDAMLoss(self.class_counts, max_m=self.params["max_m"], s=self.params["s"])


@register("ldam_drw")
class LDAMDRW(LDAM):
    """LDAM with deferred re-weighting: unweighted until the defer epoch, then class weights.

    weights: "cb" = (1-beta)/(1-beta^n) normalised to sum to C (the LDAM-DRW code, beta 0.9999) or "inverse".
    """

    def __init__(self, max_m: float = 0.5, s: float = 30.0, defer_at: float = 0.8, weights: str = "cb",
                 beta: float = 0.9999):
        Method.__init__(self, max_m=max_m, s=s, defer_at=defer_at, weights=weights, beta=beta)

    def on_epoch_start(self, epoch):
        if epoch >= _defer_epoch(self.epochs, self.params["defer_at"]):
            w = L.drw_weights(self.class_counts, kind=self.params["weights"], beta=self.params["beta"])
        else:
            w = None
        self.criterion.set_weight(w)


# Decoupled second stage (Kang et al.): the engine freezes the backbone and re-initialises the head.
@register("crw")
class CRW(RW):
    """Classifier re-training with class-weighted CE (inverse frequency) on frozen features."""


@register("crs")
class CRS(RS):
    """Classifier re-training with class-balanced sampling on frozen features."""


TWO_STAGE = ("crw", "crs")


# Paper 002 (Marrakchi et al. 2021): supervised contrastive stage 1, then "X->crs" for the linear head.
RESAMPLE_SAMPLERS = ("instance", "oversample", "class_aware", "class")


def _check_sampler(method: str, sampler: str) -> str:
    if sampler not in RESAMPLE_SAMPLERS:
        raise ValueError(f"method {method!r}: sampler must be one of {RESAMPLE_SAMPLERS}, got {sampler!r}")
    return sampler


@register("supcon")
class SupCon(Method):
    """Supervised contrastive stage 1 (paper 002 Eq. 1): two augmented views per image, pooled backbone
    features -> 2-layer MLP projection (feature_dim -> hidden_dim -> proj_dim, ReLU between; Section 4.3)
    -> L2-normalised z -> SupConLoss. The classifier head takes no part (it is trained later by
    "supcon->crs" on frozen features, the projection head dropped); under DDP its parameters are unused.

    temperature: tau of Eq. 1. base_temperature: None = Eq. 1; 0.07 = the SupContrast code's T/base_T factor.
    sampler: "instance" (plain), "oversample" (paper's "+ resample": copies until every class has the largest
        count), "class_aware" (the authors' code's "balance" batches, batch_size // C per class) or "class".
    The loss is computed in float32 even under autocast (exp(z.z/tau) with tau = 0.01 needs the range).
    """

    views = 2
    unused_parameters = True

    def __init__(self, temperature: float = 0.07, base_temperature: float | None = None, proj_dim: int = 128,
                 hidden_dim: int | None = None, sampler: str = "instance"):
        L.SupConLoss(temperature, base_temperature)  # validates both temperatures, naming them
        for name, v in (("proj_dim", proj_dim), ("hidden_dim", hidden_dim)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"method 'supcon': {name} must be an integer >= 1, got {v!r}")
        super().__init__(temperature=temperature, base_temperature=base_temperature, proj_dim=proj_dim,
                         hidden_dim=hidden_dim, sampler=_check_sampler("supcon", sampler))
        self.sampler = sampler

    def make_criterion(self):
        return L.SupConLoss(self.params["temperature"], self.params["base_temperature"])

    def setup(self, model, class_counts, epochs):
        super().setup(model, class_counts, epochs)
        d = model.feature_dim
        h = self.params["hidden_dim"] or d
        self.projection = nn.Sequential(nn.Linear(d, h), nn.ReLU(inplace=True), nn.Linear(h, self.params["proj_dim"]))
        return [self.projection]

    def loss(self, model, batch, epoch):
        x, y = batch["image"], batch["label"]
        feat = model(torch.cat([x, batch["image2"]]), out="feat")     # both views in one pass (shared BN)
        z = self.projection(feat)
        b = len(y)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = torch.stack([z[:b], z[b:]], dim=1).float()            # (B, 2, proj_dim)
            loss = self.criterion(z, y)
        return loss, {"supcon": float(loss.detach())}


@register("ce_os")
class CEOversample(Method):
    """CE + resample of paper 002: plain CE on the training set extended with copies of minority samples
    until every class has the largest count (kitlib.samplers.OversampleSampler)."""

    sampler = "oversample"


def build_method(name: str, **params) -> Method:
    """A method by registry name, e.g. build_method("focal", gamma=1.0)."""
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    try:
        return METHODS[key](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for method {name!r}: {err}") from err
