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

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

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

    def epoch_logs(self) -> dict:
        """Extra entries for the epoch's row of the run history (e.g. the mixing weights drawn); then reset."""
        return {}

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


# --------------------------------------------------------------------------- sampling by n^q, MixUp, Balanced-MixUp
@register("sqrt")
class Sqrt(Method):
    """Square-root sampling (Balanced-MixUp Eq. 2 with q = 1/2): P(class j) ∝ sqrt(n_j), plain CE."""

    sampler = "sqrt"


@register("power")
class Power(Method):
    """Class j drawn with probability n_j^q / Σ_k n_k^q (Balanced-MixUp Eq. 2), plain CE.

    q = 1 instance-like (with replacement), 0 class-balanced, 1/2 square root.
    """

    sampler = "power"

    def __init__(self, q: float = 0.5):
        q = _check_number(q, "q", "power")
        super().__init__(q=q)

    def sampler_kwargs(self, epochs):
        return {"q": self.params["q"]}


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """(B,) int labels -> (B, C) one-hot rows; C = num_classes (2 for a binary task: never a single column)."""
    return F.one_hot(labels.long(), num_classes).to(dtype)


def mix(x_a: torch.Tensor, y_a: torch.Tensor, x_b: torch.Tensor, y_b: torch.Tensor, weight_a: torch.Tensor,
        num_classes: int):
    """Convex combination of two batches and of their one-hot labels (MixUp Eq. 1, Balanced-MixUp Eq. 3).

    weight_a: scalar or (B,) weight of batch a (batch b gets 1 - weight_a). Returns (x, soft (B, C) target).
    """
    w = torch.as_tensor(weight_a, dtype=x_a.dtype, device=x_a.device)
    wx = w.view(-1, *([1] * (x_a.dim() - 1))) if w.dim() else w
    wy = w.view(-1, 1) if w.dim() else w
    x = wx * x_a + (1 - wx) * x_b
    y = wy * one_hot(y_a, num_classes, x_a.dtype) + (1 - wy) * one_hot(y_b, num_classes, x_a.dtype)
    return x, y


LAMBDA_PER = ("batch", "sample")


class _Mixing(Method):
    """Shared by MixUp and Balanced-MixUp: draws lambda from the torch RNG (seeded per epoch by the engine,
    so a run and its resume draw the same values) and remembers what it drew for `epoch_logs`."""

    beta_b: float | None = None  # second Beta parameter; None = alpha (MixUp), 1 (Balanced-MixUp)

    def __init__(self, **params):
        super().__init__(**params)
        self._drawn: list[float] = []

    def draw(self, n: int, device=None) -> torch.Tensor:
        """lambda for a batch of n: one value (lam_per="batch") or n values ("sample")."""
        a = self.params["alpha"]
        b = a if self.beta_b is None else self.beta_b
        k = 1 if self.params["lam_per"] == "batch" else n
        lam = torch.distributions.Beta(torch.tensor(float(a)), torch.tensor(float(b))).sample((k,))
        self._drawn.extend(lam.tolist())
        lam = lam.to(device) if device is not None else lam
        return lam[0] if k == 1 else lam

    def epoch_logs(self) -> dict:
        drawn, self._drawn = self._drawn, []
        return {"lambdas": drawn} if drawn else {}


@register("mixup")
class MixUp(_Mixing):
    """MixUp (Zhang et al. 2018; Balanced-MixUp Eq. 1): lambda ~ Beta(alpha, alpha), one instance-sampled
    batch mixed with a random permutation of itself, images and one-hot labels alike; soft-label CE."""

    def __init__(self, alpha: float = 0.2, lam_per: str = "batch"):
        super().__init__(alpha=_check_number(alpha, "alpha", "mixup", 0, lo_open=True),
                         lam_per=_check_choice(lam_per, "lam_per", "mixup", LAMBDA_PER))

    def loss(self, model, batch, epoch):
        x, y = batch["image"], batch["label"]
        lam = self.draw(len(y), x.device)
        perm = torch.randperm(len(y), device=x.device)
        xm, target = mix(x, y, x[perm], y[perm], lam, len(self.class_counts))
        logits = model(xm)
        loss = self.criterion(logits, target.to(logits.dtype))
        return loss, {"mixup_ce": float(loss.detach())}


BALANCED_MIXUP_FORMS = ("text", "eq3")


@register("balanced_mixup")
class BalancedMixUp(_Mixing):
    """Balanced-MixUp (Galdran et al. 2021, Eq. 3): each step mixes an instance-sampled batch (x_I, y_I) with a
    class-balanced batch (x_C, y_C, the engine's `extra_sampler`), lambda ~ Beta(alpha, 1), soft-label CE.

    form="text" (default, the paper's text and the authors' code): x = (1 - lambda) x_I + lambda x_C, so the
    instance batch keeps the larger weight (lambda is mostly small for alpha < 1). form="eq3": Eq. 3 as
    printed, x = lambda x_I + (1 - lambda) x_C. Labels are mixed the same way as images, as one-hot rows over
    all C classes, binary tasks included. lam_per: one lambda per batch (the authors' code) or per sample.
    """

    sampler = "instance"
    extra_sampler = "class"
    beta_b = 1.0

    def __init__(self, alpha: float = 0.1, form: str = "text", lam_per: str = "batch"):
        super().__init__(alpha=_check_number(alpha, "alpha", "balanced_mixup", 0, lo_open=True),
                         form=_check_choice(form, "form", "balanced_mixup", BALANCED_MIXUP_FORMS),
                         lam_per=_check_choice(lam_per, "lam_per", "balanced_mixup", LAMBDA_PER))

    def instance_weight(self, lam: torch.Tensor) -> torch.Tensor:
        """Weight of the instance-sampled batch for a drawn lambda (see `form`)."""
        return 1 - lam if self.params["form"] == "text" else lam

    def mixed(self, batch):
        """(mixed images, soft targets) of one step; batch["extra"] is the class-balanced batch."""
        if "extra" not in batch:
            raise ValueError("balanced_mixup: the batch lacks the class-balanced batch['extra'] "
                             "(train with kitlib.train.fit, which draws it from the method's extra_sampler)")
        xi, yi = batch["image"], batch["label"]
        xc, yc = batch["extra"]["image"], batch["extra"]["label"]
        n = min(len(yi), len(yc))  # the two loaders end an epoch on batches of the same size; guard anyway
        xi, yi, xc, yc = xi[:n], yi[:n], xc[:n], yc[:n]
        lam = self.draw(n, xi.device)
        return mix(xi, yi, xc, yc, self.instance_weight(lam), len(self.class_counts))

    def loss(self, model, batch, epoch):
        x, target = self.mixed(batch)
        logits = model(x)
        loss = self.criterion(logits, target.to(logits.dtype))
        return loss, {"bal_mixup_ce": float(loss.detach())}


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


# --------------------------------------------------------------------------- paper 004 (Zeng et al.): baselines
def _check_number(value, name: str, method: str, lo: float | None = None, lo_open: bool = False,
                  hi: float | None = None, hi_open: bool = False) -> float:
    """A finite real number in range, else a ValueError naming the method and the parameter."""
    import math

    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        rng = " and ".join(r for r in (
            "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}",
            "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}") if r)
        raise ValueError(f"method {method!r}: {name} must be a finite number{' ' + rng if rng else ''}, got {value!r}")
    return float(value)


def _check_choice(value, name: str, method: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"method {method!r}: {name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _check_int(value, name: str, method: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"method {method!r}: {name} must be an integer >= {lo}, got {value!r}")
    return int(value)


@register("ce_drw")
class CEDRW(Method):
    """CE with deferred re-weighting (CE-DRW, Cao et al. 2019): plain CE until the defer epoch, then CE with
    class weights (`kitlib.losses.drw_weights`: "cb" = (1-beta)/(1-beta^n), the LDAM-DRW code's, default)."""

    def __init__(self, defer_at: float = 0.8, weights: str = "cb", beta: float = 0.9999):
        super().__init__(defer_at=_check_number(defer_at, "defer_at", "ce_drw", 0, lo_open=True),
                         weights=_check_choice(weights, "weights", "ce_drw", L.DRW_KINDS),
                         beta=_check_number(beta, "beta", "ce_drw", 0, hi=1, hi_open=True))

    def on_epoch_start(self, epoch):
        on = epoch >= _defer_epoch(self.epochs, self.params["defer_at"])
        self.criterion.set_weight(L.drw_weights(self.class_counts, kind=self.params["weights"],
                                                beta=self.params["beta"]) if on else None)


@register("cb_focal")
class CBFocal(Method):
    """Class-balanced focal loss (Cui et al. 2019 with Lin et al. 2017): softmax focal loss (gamma) weighted
    by the effective-number weights (1-beta)/(1-beta^n_c), normalised to sum to C. Cui et al. use a sigmoid
    focal loss; the softmax form is kitlib's FocalLoss (the same one the Focal baseline uses)."""

    def __init__(self, beta: float = 0.9999, gamma: float = 2.0):
        super().__init__(beta=_check_number(beta, "beta", "cb_focal", 0, hi=1, hi_open=True),
                         gamma=_check_number(gamma, "gamma", "cb_focal", 0))

    def make_criterion(self):
        return L.FocalLoss(gamma=self.params["gamma"],
                           weight=L.class_balanced_weights(self.class_counts, self.params["beta"]))


def cutmix_box(height: int, width: int, lam: float, cy: float, cx: float) -> tuple[int, int, int, int]:
    """CutMix's box (Yun et al. 2019, Eq. 2/Alg. A1): side ratio sqrt(1 - lam), centred at (cy, cx) in
    [0, 1) image fractions, clipped to the image. Returns (y0, y1, x0, x1), end exclusive."""
    r = (1.0 - float(lam)) ** 0.5
    ch, cw = int(height * r), int(width * r)
    y, x = int(cy * height), int(cx * width)
    y0, y1 = max(y - ch // 2, 0), min(y + ch // 2, height)
    x0, x1 = max(x - cw // 2, 0), min(x + cw // 2, width)
    return y0, y1, x0, x1


@register("cutmix")
class CutMix(Method):
    """CutMix (Yun et al. 2019): with probability `prob`, a box of a shuffled copy of the batch is pasted into
    each image; lam ~ Beta(alpha, alpha) sets the box (area 1 - lam), and the label weight is the kept area
    lam' = 1 - box area / image area (recomputed after clipping). Soft-label CE: lam' y_a + (1 - lam') y_b."""

    def __init__(self, alpha: float = 1.0, prob: float = 0.5):
        super().__init__(alpha=_check_number(alpha, "alpha", "cutmix", 0, lo_open=True),
                         prob=_check_number(prob, "prob", "cutmix", 0, hi=1))

    def mixed(self, x: torch.Tensor, y: torch.Tensor):
        """(images, soft targets (B, C), lam') of one step; draws from the torch RNG (seeded per epoch)."""
        c = len(self.class_counts)
        onehot = torch.nn.functional.one_hot(y, c).to(x.dtype)
        if float(torch.rand(())) >= self.params["prob"]:
            return x, onehot, 1.0
        a = self.params["alpha"]
        lam = float(torch.distributions.Beta(torch.tensor(a), torch.tensor(a)).sample())
        cy, cx = torch.rand(2).tolist()
        perm = torch.randperm(len(y), device=x.device)
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = cutmix_box(h, w, lam, cy, cx)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        kept = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        return x, kept * onehot + (1.0 - kept) * onehot[perm], kept

    def loss(self, model, batch, epoch):
        x, target, _ = self.mixed(batch["image"], batch["label"])
        logits = model(x)
        loss = self.criterion(logits, target.to(logits.dtype))
        return loss, {"cutmix_ce": float(loss.detach())}


@register("bbn")
class BBN(Method):
    """BBN (Zhou et al. 2020): bilateral-branch network with cumulative learning.

    Two branches share the backbone's early layers (`kitlib.models.bbn_model`: the last stage duplicated). The
    conventional branch sees a uniformly (instance-) sampled batch (x_c, y_c), the re-balancing branch a
    reversed-sampled one (x_r, y_r; P(class i) ∝ 1/N_i, `kitlib.samplers.ReversedSampler`). With the adaptor
    alpha = 1 - (T / T_max)^2 (T = epoch from 0, T_max = epochs): z = alpha W_c f_c + (1 - alpha) W_r f_r and
    L = alpha CE(z, y_c) + (1 - alpha) CE(z, y_r). At test time alpha = 0.5 on the same image in both branches.
    """

    sampler = "instance"
    extra_sampler = "reversed"
    head = "bbn"

    def alpha(self, epoch: int) -> float:
        """The cumulative-learning adaptor at (0-based) `epoch`."""
        return 1.0 - (epoch / self.epochs) ** 2

    def loss(self, model, batch, epoch):
        if "extra" not in batch:
            raise ValueError("bbn: the batch lacks the reversed-sampled batch['extra'] (train with kitlib.train.fit)")
        xc, yc = batch["image"], batch["label"]
        xr, yr = batch["extra"]["image"], batch["extra"]["label"]
        n = min(len(yc), len(yr))
        a = self.alpha(epoch)
        logits = model((xc[:n], xr[:n], a))
        loss = a * self.criterion(logits, yc[:n]) + (1 - a) * self.criterion(logits, yr[:n])
        return loss, {"bbn": float(loss.detach()), "alpha": a}


# --------------------------------------------------------------------------- paper 004: metric learning in stage 1
class ProjectionMLP(nn.Sequential):
    """The 3-layer MLP after the feature extractor for the supervised contrastive loss (paper 004 Sect. 2.2):
    D -> D -> D -> out_dim with ReLU between (widths not given in the paper)."""

    def __init__(self, in_dim: int, out_dim: int = 128):
        super().__init__(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, in_dim),
                         nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))


class _MetricStage1(Method):
    """Paper 004 stage 1: L = CE + w · L_M(r), r = the feature extractor's output (pooled backbone features).

    Subclasses set `metric_name` and build the metric loss in `metric_modules`; `use_ce=False` trains with L_M
    alone (ablation row "SC -> cRW": the head then learns only in stage 2).
    """

    use_ce = True
    metric_name = "lm"

    def sampler_kwargs(self, epochs):
        return {"samples_per_class": self.params["samples_per_class"]} if self.sampler == "pk" else {}

    def setup(self, model, class_counts, epochs):
        super().setup(model, class_counts, epochs)
        return self.metric_modules(model)

    def metric_modules(self, model) -> list[nn.Module]:
        return []

    def metric(self, out: dict, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model, batch, epoch):
        y = batch["label"]
        out = model(batch["image"], out="all")
        lm = self.metric(out, y)
        w = self.params["weight"]
        logs = {self.metric_name: float(lm.detach())}
        if self.use_ce:
            ce = self.criterion(out["logits"], y)
            logs["ce"] = float(ce.detach())
            return ce + w * lm, logs
        return w * lm, logs


@register("ce+ct")
class CECenter(_MetricStage1):
    """CE + w · center loss (CT; Wen et al. 2016): Σ_i ||r_i - c_{y_i}||² / B (squared Euclidean; `half`
    multiplies by 1/2 as Wen et al. write it). w = 0.001 (paper 004).

    centers="own" (default, the pytorch-center-loss code): the centres get their own SGD group, lr `center_lr`
    (0.5) constant, no momentum or weight decay, gradient divided by w (so the centres move at lr 0.5 whatever
    w is; implemented as the group lr center_lr / w). centers="shared": the network's optimiser, lr and weight
    decay (at w = 0.001 the centres then barely move).
    """

    metric_name = "center"

    def __init__(self, weight: float = 0.001, center_lr: float = 0.5, centers: str = "own", half: bool = False,
                 sampler: str = "instance", samples_per_class: int = 4):
        super().__init__(weight=_check_number(weight, "weight", "ce+ct", 0, lo_open=True),
                         center_lr=_check_number(center_lr, "center_lr", "ce+ct", 0, lo_open=True),
                         centers=_check_choice(centers, "centers", "ce+ct", ("own", "shared")),
                         half=bool(half), sampler=_check_choice(sampler, "sampler", "ce+ct", ("instance", "pk")),
                         samples_per_class=_check_int(samples_per_class, "samples_per_class", "ce+ct"))
        self.sampler = self.params["sampler"]

    def metric_modules(self, model):
        self.center_loss = L.CenterLoss(model.num_classes, model.feature_dim, half=self.params["half"])
        if self.params["centers"] == "own":
            self.center_loss.optim_group = {"lr": self.params["center_lr"] / self.params["weight"], "momentum": 0.0,
                                            "weight_decay": 0.0, "nesterov": False, "fixed_lr": True}
        return [self.center_loss]

    def metric(self, out, labels):
        return self.center_loss(out["feat"].float(), labels)


@register("ce+tp")
class CETriplet(_MetricStage1):
    """CE + w · triplet loss (TP; Hoffer & Ailon 2015) on r with online mining, w = 0.001, margin 50 (paper 004).

    distance: "euclidean" (default: paper 004 says the triplet loss is computed on Euclidean distances, and
    margin 50 is on that scale) or "squared" (the siamese-triplet code). mining: "hard" (default: for each
    anchor-positive pair its hardest negative in the batch), "semihard" or "all" (paper silent).
    sampler "pk" (default): batches of P = every class x K = samples_per_class images (`PKSampler`), so every
    anchor has positives; "instance" keeps the CE batches as they are (anchors without positives are skipped).
    """

    metric_name = "triplet"

    def __init__(self, weight: float = 0.001, margin: float = 50.0, mining: str = "hard", distance: str = "euclidean",
                 sampler: str = "pk", samples_per_class: int = 4):
        super().__init__(weight=_check_number(weight, "weight", "ce+tp", 0, lo_open=True),
                         margin=_check_number(margin, "margin", "ce+tp", 0),
                         mining=_check_choice(mining, "mining", "ce+tp", L.TRIPLET_MINING),
                         distance=_check_choice(distance, "distance", "ce+tp", L.TRIPLET_DISTANCES),
                         sampler=_check_choice(sampler, "sampler", "ce+tp", ("instance", "pk")),
                         samples_per_class=_check_int(samples_per_class, "samples_per_class", "ce+tp"))
        self.sampler = self.params["sampler"]

    def metric_modules(self, model):
        self.triplet = L.TripletLoss(self.params["margin"], self.params["mining"], self.params["distance"])
        return []

    def metric(self, out, labels):
        return self.triplet(out["feat"].float(), labels)


@register("ce+sc")
class CESupCon(_MetricStage1):
    """CE + w · supervised contrastive loss (SC; Khosla et al. 2020), w = 1.0, temperature 0.05 (paper 004), on
    the L2-normalised output of a 3-layer MLP after the feature extractor (`ProjectionMLP`, out `proj_dim`).
    One view per image: positives are the other images of the same class in the batch (paper 004 Sect. 2.2).
    base_temperature None: the loss of Khosla et al. as written (no T / T_base factor); a number rescales by
    T / T_base as the SupContrast code does (0.07 there).
    """

    metric_name = "supcon"

    def __init__(self, weight: float = 1.0, temperature: float = 0.05, base_temperature: float | None = None,
                 proj_dim: int = 128, sampler: str = "instance", samples_per_class: int = 4):
        name = self.name
        super().__init__(weight=_check_number(weight, "weight", name, 0, lo_open=True),
                         temperature=_check_number(temperature, "temperature", name, 0, lo_open=True),
                         base_temperature=None if base_temperature is None else
                         _check_number(base_temperature, "base_temperature", name, 0, lo_open=True),
                         proj_dim=_check_int(proj_dim, "proj_dim", name),
                         sampler=_check_choice(sampler, "sampler", name, ("instance", "pk")),
                         samples_per_class=_check_int(samples_per_class, "samples_per_class", name))
        self.sampler = self.params["sampler"]

    def metric_modules(self, model):
        t = self.params["temperature"]
        bt = self.params["base_temperature"]
        self.supcon = L.SupConLoss(temperature=t, base_temperature=t if bt is None else bt)
        self.projection = ProjectionMLP(model.feature_dim, self.params["proj_dim"])
        return [self.projection]

    def metric(self, out, labels):
        return self.supcon(self.projection(out["feat"].float()), labels)


@register("sc")
class SupConOnly(CESupCon):
    """Stage 1 with the supervised contrastive loss alone (paper 004 Table 3, row "- SC cRW")."""

    use_ce = False


METRIC_STAGE1 = ("ce+ct", "ce+tp", "ce+sc", "sc")


# --------------------------------------------------------------------------- paper 003 (Zhuang et al.): CARE
class _Recorder:
    """Stands in for the model inside a base method's `loss`: forwards every call with out="all" and keeps the
    outputs of the pass on `image`, so CARE reuses that forward for its Grad-CAM (one pass, not two)."""

    def __init__(self, model, image):
        self.model, self.image, self.outputs = model, image, None

    def __call__(self, x, out: str = "logits"):
        if out == "feat":
            return self.model(x, out="feat")
        res = self.model(x, out="all")
        if x is self.image:
            self.outputs = res
        return res if out == "all" else res["logits"]

    def __getattr__(self, name):  # model.module, model.head, ... as the base method expects
        return getattr(self.model, name)


CARE_REDUCTIONS = ("mean", "sum")


@register("care")
class CARE(Method):
    """CARE (Zhuang et al. 2023) on top of any base method: L = (1 - alpha) L_base + alpha (L_in + lambda L_out)
    (Eqs. 4-5), L_in = -min(mean of F inside the box, tau) (Eq. 6), L_out = mean of F outside (Eq. 7), F the
    differentiable Grad-CAM (kitlib.explain.grad_cam) of the true class, for the images of `box_classes` only.

    base / base_params: the imbalance method CARE sits on ("ce" = baseline, "rw" = CSL, "focal" = FL, "ce+tp" =
        Siamese-style triplet, ...): its sampler, head and loss are used as they are.
    box_classes: class ids whose images carry a box; None = the class with the fewest training images (the paper).
    box_scale: the mask's tight box scaled about its centre (Fig. 11). Boxes come from the batch's masks (the
        lesion masks, or rasterised automatic boxes), transformed with the image.
    reduction: "mean" over the images with a box (the paper's text) or "sum" (the authors' code).
    relu: ReLU on the map before min-max (the authors' code: none). Train it from a pretrained run (two stages).
    """

    def __init__(self, base: str = "ce", base_params: dict | None = None, alpha: float = 0.5, tau: float = 0.7,
                 lam: float = 1.0, box_classes: list | None = None, box_scale: float = 1.0, reduction: str = "mean",
                 relu: bool = False, cam_path: str = "auto"):
        if base == "care" or "->" in str(base):
            raise ValueError(f"method 'care': base must be a one-stage method other than 'care', got {base!r}")
        self.base = build_method(base, **(base_params or {}))
        if box_classes is not None:
            if not isinstance(box_classes, (list, tuple)) or not box_classes or not all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in box_classes):
                raise ValueError(f"method 'care': box_classes must be None or a non-empty list of class ids, "
                                 f"got {box_classes!r}")
            box_classes = sorted(set(int(c) for c in box_classes))
        if not isinstance(relu, bool):
            raise ValueError(f"method 'care': relu must be True or False, got {relu!r}")
        super().__init__(base=base, base_params=dict(base_params or {}),
                         alpha=_check_number(alpha, "alpha", "care", 0, hi=1),
                         tau=_check_number(tau, "tau", "care", 0, hi=1),
                         lam=_check_number(lam, "lam", "care", 0),
                         box_classes=box_classes,
                         box_scale=_check_number(box_scale, "box_scale", "care", 0, lo_open=True),
                         reduction=_check_choice(reduction, "reduction", "care", CARE_REDUCTIONS), relu=relu,
                         cam_path=_check_choice(cam_path, "cam_path", "care", ("auto", "shortcut", "autograd")))
        self.sampler, self.views, self.head = self.base.sampler, self.base.views, self.base.head
        self.extra_sampler, self.unused_parameters = self.base.extra_sampler, self.base.unused_parameters

    def sampler_kwargs(self, epochs):
        return self.base.sampler_kwargs(epochs)

    def setup(self, model, class_counts, epochs):
        super().setup(model, class_counts, epochs)
        counts = torch.as_tensor(class_counts)
        cls = self.params["box_classes"]
        if cls is not None and max(cls) >= len(counts):
            raise ValueError(f"method 'care': box_classes {cls} name a class >= the {len(counts)} classes")
        self.box_class_ids = torch.tensor([int(counts.argmin())] if cls is None else cls)
        return self.base.setup(model, class_counts, epochs)

    def on_epoch_start(self, epoch):
        self.base.on_epoch_start(epoch)

    def epoch_logs(self):
        return self.base.epoch_logs()

    def attention_loss(self, cam: torch.Tensor, m_in: torch.Tensor, use: torch.Tensor):
        """(L_in + lambda L_out over the images in `use`, L_in, L_out) from maps F (B, H, W) and boxes M_in."""
        if not bool(use.any()):
            zero = cam.sum() * 0.0
            return zero, zero, zero
        f, mi = cam[use], m_in[use]
        mo = 1.0 - mi  # Eq. 7 with the paper's simplification: 1 everywhere outside the box
        inside = (mi * f).flatten(1).sum(1) / mi.flatten(1).sum(1).clamp_min(1.0)
        outside = (mo * f).flatten(1).sum(1) / mo.flatten(1).sum(1).clamp_min(1.0)
        l_in = -torch.clamp(inside, max=self.params["tau"])  # Eq. 6: -min(., tau)
        l_out = outside  # Eq. 7
        red = torch.mean if self.params["reduction"] == "mean" else torch.sum
        l_in, l_out = red(l_in), red(l_out)
        return l_in + self.params["lam"] * l_out, l_in, l_out  # Eq. 5

    def loss(self, model, batch, epoch):
        from kitlib import explain

        if "mask" not in batch:
            raise ValueError("method 'care': the batch has no lesion masks; build the Experiment with "
                             "with_masks=True on data with masks")
        x, y = batch["image"], batch["label"]
        rec = _Recorder(model, x)
        base_loss, logs = self.base.loss(rec, batch, epoch)
        out = rec.outputs if rec.outputs is not None else model(x, out="all")
        m_in, has = explain.batch_box_masks(batch["mask"], self.params["box_scale"])
        has = has & batch.get("has_lesion", has).bool()
        use = has & torch.isin(y, self.box_class_ids.to(y.device))  # only the classes that have boxes
        alpha = self.params["alpha"]
        if bool(use.any()) and alpha > 0:
            cam = explain.grad_cam(model, x, y, out=out, path=self.params["cam_path"], relu=self.params["relu"])
            att, l_in, l_out = self.attention_loss(cam.float(), m_in, use)
        else:
            att = l_in = l_out = out["logits"].sum() * 0.0
        loss = (1 - alpha) * base_loss + alpha * att  # Eq. 4
        return loss, {**logs, "l_in": float(l_in.detach()), "l_out": float(l_out.detach()),
                      "boxed": int(use.sum())}
