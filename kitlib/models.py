"""Backbones by name, each split into feature extractor, last convolutional feature map and head.

`create_model("resnet50", num_classes=7)` returns a `KitModel`:

    fmap = model.features(x)      # (B, C, h, w): the last convolutional feature map (Grad-CAM, CARE)
    feat = model.pool(fmap)       # (B, D): the representation (metric learning, SupCon, decoupled heads)
    logits = model.head(feat)     # (B, num_classes)
    model(x) == model.head(model.pool(model.features(x)))
    model(x, out="all")           # {"fmap", "feat", "logits"} from one forward pass
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

BACKBONES = (
    "resnet18", "resnet50", "resnet152", "resnext50_32x4d",
    "densenet121", "densenet169", "mobilenet_v2", "vgg19", "vgg19_fc", "tiny_cnn",
)

BIT_BACKBONES = {"resnext50_bit": "resnext50_32x4d"}
"""Backbones "modified as in BiT" (Kolesnikov et al. 2020): the torchvision model named on the right with
GroupNorm (32 groups) for BatchNorm and weight-standardised convolutions (Balanced-MixUp Sect. 3.1)."""
BACKBONES = BACKBONES + tuple(BIT_BACKBONES)


class StdConv2d(nn.Conv2d):
    """Weight-standardised convolution (BiT): each filter centred to mean 0 and scaled to variance 1
    (over in_channels/groups x kh x kw) before it is applied."""

    eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return F.conv2d(x, (w - mean) / torch.sqrt(var + self.eps), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


def bit_modify(net: nn.Module, groups: int = 32) -> nn.Module:
    """In place: every BatchNorm2d -> GroupNorm(groups) (fewer groups when the channels do not divide), every
    Conv2d -> StdConv2d; existing conv weights and norm affine parameters are kept. Returns `net`."""
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            g = next(k for k in range(min(groups, c), 0, -1) if c % k == 0)
            gn = nn.GroupNorm(g, c, affine=child.affine)
            if child.affine:
                gn.weight.data.copy_(child.weight.data)
                gn.bias.data.copy_(child.bias.data)
            setattr(net, name, gn)
        elif isinstance(child, nn.Conv2d) and not isinstance(child, StdConv2d):
            conv = StdConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                             child.dilation, child.groups, child.bias is not None, child.padding_mode)
            conv.weight.data.copy_(child.weight.data)
            if child.bias is not None:
                conv.bias.data.copy_(child.bias.data)
            setattr(net, name, conv)
        else:
            bit_modify(child, groups)
    return net


class CosineLinear(nn.Module):
    """Cosine classifier: logits_j = <x/|x|, w_j/|w_j|> in [-1, 1] (the normalised head LDAM expects)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


def make_head(kind: str, in_features: int, num_classes: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "cosine":
        return CosineLinear(in_features, num_classes)
    raise ValueError(f"unknown head {kind!r}; choose 'linear' or 'cosine'")


class KitModel(nn.Module):
    """features -> global average pool -> head, each reachable on its own."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, head: str = "linear", name: str = ""):
        super().__init__()
        self.backbone = features
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head_kind = head
        self.name = name
        self.head = make_head(head, feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, out: str = "logits"):
        """out="logits": (B, num_classes); out="all": dict(fmap, feat, logits) from one pass.

        Training code calls the model itself (not its parts) so DistributedDataParallel sees the pass.
        """
        fmap = self.features(x)
        feat = self.pool(fmap)
        if out == "feat":  # pooled features only; the head takes no part (contrastive stage 1)
            return feat
        logits = self.head(feat)
        if out == "logits":
            return logits
        if out == "all":
            return {"fmap": fmap, "feat": feat, "logits": logits}
        raise ValueError(f"out must be 'logits', 'all' or 'feat', got {out!r}")

    def forward_all(self, x: torch.Tensor) -> dict:
        return self(x, out="all")

    def last_block(self) -> list[nn.Module]:
        """The backbone's last block: its trailing children up to and including the last one that holds a
        convolution (ResNet: layer4; TinyCNN: the last conv + BN + ReLU; VGG: the last conv + ReLU)."""
        kids = list(self.backbone.children())
        for i in range(len(kids) - 1, -1, -1):
            if any(isinstance(m, nn.Conv2d) for m in kids[i].modules()):
                return kids[i:]
        raise ValueError(f"{self.name or type(self).__name__}: the backbone has no convolution, so no last block")

    def reset_head(self, head: str | None = None) -> None:
        """Re-initialise the classifier head (decoupled second stage)."""
        kind = head or self.head_kind
        device = next(self.parameters()).device
        self.head = make_head(kind, self.feature_dim, self.num_classes).to(device)
        self.head_kind = kind


class VGGFCModel(KitModel):
    """VGG19 as the paper draws it (CARE Fig. 7): conv layers -> max-pool -> 7x7 average pool -> FC 4096 -> FC 4096
    -> FC classes (torchvision's classifier, dropout 0.5). `pool` gives the flattened (B, 25088) input of the first
    FC layer; `head` is the three FC layers, so Grad-CAM takes the general autograd path (no w_c / Z shortcut)."""

    def __init__(self, features: nn.Module, classifier: nn.Sequential, num_classes: int, head: str = "linear"):
        super().__init__(features, classifier[0].in_features, num_classes, head, "vgg19_fc")
        # FC 4096, ReLU, dropout, FC 4096, ReLU, dropout (ImageNet weights when pretrained), then a fresh FC classes
        self.head = nn.Sequential(*classifier[:-1], make_head(head, classifier[-1].in_features, num_classes))

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(F.max_pool2d(fmap, 2, ceil_mode=True), 7), 1)

    def reset_head(self, head: str | None = None) -> None:
        """A fresh last FC layer (the two 4096-wide layers are kept)."""
        kind = head or self.head_kind
        last = make_head(kind, self.head[-1].weight.shape[1], self.num_classes).to(self.head[-1].weight.device)
        self.head[-1] = last
        self.head_kind = kind


class TinyCNN(nn.Sequential):
    """A small 4-block CNN (about 100k parameters) for the smoke profile and tests."""

    def __init__(self, width: int = 32):
        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        w = width
        super().__init__(*block(3, w, 1), *block(w, w, 2), *block(w, 2 * w, 1), *block(2 * w, 2 * w, 2),
                         *block(2 * w, 4 * w, 1))
        self.out_channels = 4 * w


def _weights_enum(name: str):
    return torchvision.models.get_model_weights(name).DEFAULT


def _load_pretrained(net: nn.Module, name: str) -> None:
    """Load torchvision's ImageNet weights from the local torch hub cache, downloading only if possible."""
    weights = _weights_enum(name)
    ckpt = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not ckpt.exists():
        try:
            state = weights.get_state_dict(progress=True)
        except Exception as err:  # offline: urllib errors, timeouts
            raise RuntimeError(
                f"ImageNet weights for {name} are not in {ckpt.parent} and could not be downloaded ({err}). "
                f"On a machine with internet run: python -c \"import torchvision; "
                f"torchvision.models.{name}(weights='DEFAULT')\" and copy {ckpt.name} into {ckpt.parent}, "
                f"or pass pretrained=False for random initialisation."
            ) from err
    else:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    net.load_state_dict(state)


SMALL_STEMS = ("keep", "new")


def _small_stem(name: str, net: nn.Module, stem: str = "keep") -> None:
    """No early downsampling, for 28-64 px inputs: the first convolution at stride 1 and no early max-pool.

    stem="keep": the first convolution keeps its kernel (7x7 for ResNet/DenseNet) and so its pretrained
    ImageNet filters; only its stride becomes 1. stem="new": a fresh 3x3 stride-1 convolution (the CIFAR
    ResNet stem; pretrained stem filters are lost). MobileNetV2 and VGG19 keep their weights either way
    (only strides / pools change).
    """
    if stem not in SMALL_STEMS:
        raise ValueError(f"small_stem must be one of {SMALL_STEMS}, got {stem!r}")
    if name.startswith(("resnet", "resnext")):
        if stem == "new":
            net.conv1 = nn.Conv2d(3, net.conv1.out_channels, 3, 1, 1, bias=False)
        else:
            net.conv1.stride = (1, 1)
        net.maxpool = nn.Identity()
    elif name.startswith("densenet"):
        if stem == "new":
            net.features.conv0 = nn.Conv2d(3, net.features.conv0.out_channels, 3, 1, 1, bias=False)
        else:
            net.features.conv0.stride = (1, 1)
        net.features.pool0 = nn.Identity()
    elif name == "mobilenet_v2":
        net.features[0][0].stride = (1, 1)
    elif name in ("vgg19", "vgg19_fc"):
        # keep resolution through the first two max-pools
        pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
        for i in pools[:2]:
            net.features[i] = nn.Identity()


def create_model(name: str, num_classes: int, pretrained: bool = False, small_input: bool = False,
                 head: str = "linear", width: int = 32, small_stem: str = "keep") -> KitModel:
    """Build a backbone by name (see BACKBONES) with a fresh head for `num_classes`.

    pretrained: load torchvision's ImageNet weights (from the local cache; a clear error when offline).
    small_input: no early downsampling for 28-64 px images (see `_small_stem`; small_stem "keep" keeps the
        pretrained first-convolution filters at stride 1, "new" replaces them by a fresh 3x3 convolution).
    head: "linear" or "cosine" (LDAM's normalised classifier).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    if head == "bbn":  # BBN's bilateral-branch network around the same backbone (kitlib.methods "bbn")
        return bbn_model(create_model(name, num_classes, pretrained, small_input, "linear", width))
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if name == "tiny_cnn":
        if pretrained:
            raise ValueError("tiny_cnn has no pretrained weights; pass pretrained=False")
        net = TinyCNN(width)
        return KitModel(net, net.out_channels, num_classes, head, name)
    base = BIT_BACKBONES.get(name, {"vgg19_fc": "vgg19"}.get(name, name))
    net = torchvision.models.get_model(base, weights=None)
    if pretrained:
        _load_pretrained(net, base)  # BiT variants: ImageNet conv weights, norm affine parameters kept
    if small_input:
        _small_stem(name, net, small_stem)
    if name in BIT_BACKBONES:
        bit_modify(net)
    if name.startswith(("resnet", "resnext")):
        dim = net.fc.in_features
        features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    elif name.startswith("densenet"):
        dim = net.classifier.in_features
        features = nn.Sequential(net.features, nn.ReLU(inplace=False))
    elif name == "mobilenet_v2":
        dim = net.last_channel
        features = net.features
    elif name == "vgg19_fc":  # conv layers up to the last ReLU; max-pool, 7x7 pool and the FC layers after them
        return VGGFCModel(net.features[:-1], net.classifier, num_classes, head)
    else:  # vgg19: conv layers up to the last ReLU (the final max-pool dropped); GAP + linear head
        dim = 512
        features = net.features[:-1]
    return KitModel(features, dim, num_classes, head, name)


# --------------------------------------------------------------------------- BBN (Zhou et al., CVPR 2020)
# modules of the backbone's nn.Sequential that form its last stage (the part BBN duplicates)
BBN_LAST_STAGE = {"tiny_cnn": 3, "resnet18": 1, "resnet50": 1, "resnet152": 1, "resnext50_32x4d": 1,
                  "mobilenet_v2": 1}


class BBNFeatures(nn.Module):
    """Shared early layers, then two copies of the last stage: the conventional and the re-balancing branch.

    forward(x): both branches on the same images, each weighted 0.5 (BBN at test time: alpha = 0.5), their
    feature maps concatenated along channels -> (B, 2D, h, w). forward((x_c, x_r, alpha)) in training: x_c
    (uniform batch) through the conventional branch scaled by alpha, x_r (reversed batch) through the
    re-balancing branch scaled by 1 - alpha. A linear head on the pooled (B, 2D) features then gives
    alpha * W_c f_c + (1 - alpha) * W_r f_r + b, BBN's cumulative-learning logits.
    """

    def __init__(self, shared: nn.Module, branch: nn.Module):
        super().__init__()
        self.shared = shared
        self.conventional = branch
        self.rebalancing = copy.deepcopy(branch)  # same start (ImageNet weights when pretrained), then trained apart

    def forward(self, x):
        if isinstance(x, (tuple, list)):
            x_c, x_r, alpha = x
        else:
            x_c, x_r, alpha = x, x, 0.5
        f_c = self.conventional(self.shared(x_c))
        f_r = self.rebalancing(self.shared(x_r))
        return torch.cat([alpha * f_c, (1 - alpha) * f_r], dim=1)


def bbn_model(base: KitModel) -> KitModel:
    """BBN around a KitModel with a Sequential backbone (see BBN_LAST_STAGE): head on 2D features."""
    k = BBN_LAST_STAGE.get(base.name)
    if k is None or not isinstance(base.backbone, nn.Sequential):
        raise ValueError(f"BBN needs a backbone whose last stage can be duplicated; supported: {sorted(BBN_LAST_STAGE)}, "
                         f"got {base.name!r}")
    layers = list(base.backbone)
    feats = BBNFeatures(nn.Sequential(*layers[:-k]), nn.Sequential(*layers[-k:]))
    model = KitModel(feats, 2 * base.feature_dim, base.num_classes, "linear", base.name)
    model.head_kind = "bbn"
    return model
