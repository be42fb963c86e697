"""kitlib.losses against their formulas, computed by hand on small tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

from kitlib.losses import (
    CenterLoss,
    CrossEntropy,
    FocalLoss,
    LDAMLoss,
    SupConLoss,
    TripletLoss,
    build_loss,
    class_balanced_weights,
    drw_weights,
    inverse_frequency_weights,
    ldam_margins,
)

LOGITS = [[1.0, 2.0, 0.0], [0.5, 0.5, 3.0], [2.0, -1.0, 0.0]]
TARGET = [1, 2, 0]


def _logsoftmax_row(row, c):
    return row[c] - math.log(sum(math.exp(v) for v in row))


def _t(x, dtype=torch.float64, grad=False):
    return torch.tensor(x, dtype=dtype, requires_grad=grad)


# ---------------------------------------------------------------- weights
def test_inverse_frequency_weights_sum_to_C():
    w = inverse_frequency_weights([100, 10, 1])
    inv = [0.01, 0.1, 1.0]
    expect = [3 * v / sum(inv) for v in inv]
    assert w.dtype == torch.float32
    assert w.tolist() == pytest.approx(expect, rel=1e-6)
    assert float(w.sum()) == pytest.approx(3.0)
    assert inverse_frequency_weights([7, 7]).tolist() == pytest.approx([1.0, 1.0])


def test_class_balanced_weights_formula():
    beta = 0.9
    counts = [100, 10, 1]
    raw = [(1 - beta) / (1 - beta ** n) for n in counts]           # [~0.1, 0.15353, 1.0]
    expect = [3 * r / sum(raw) for r in raw]
    w = class_balanced_weights(counts, beta)
    assert w.tolist() == pytest.approx(expect, rel=1e-6)
    assert raw[1] == pytest.approx(0.1 / 0.6513215599, rel=1e-9)
    assert float(w.sum()) == pytest.approx(3.0)
    # beta = 0: all ones; beta -> 1: inverse frequency
    assert class_balanced_weights(counts, 0.0).tolist() == pytest.approx([1, 1, 1])
    assert class_balanced_weights(counts, 1 - 1e-9).tolist() == pytest.approx(
        inverse_frequency_weights(counts).tolist(), rel=1e-5)
    # beta = 0.9999 on a realistic long tail stays finite and ordered
    w = class_balanced_weights([5000, 500, 50, 5], 0.9999)
    assert torch.all(torch.isfinite(w)) and torch.all(w[1:] > w[:-1])


def test_drw_weights_kinds_and_errors():
    counts = [100, 10, 1]
    assert drw_weights(counts, "min_ratio").tolist() == pytest.approx([0.01, 0.1, 1.0])
    assert drw_weights(counts, "inverse").tolist() == pytest.approx(inverse_frequency_weights(counts).tolist())
    assert drw_weights(counts, "cb", beta=0.9).tolist() == pytest.approx(class_balanced_weights(counts, 0.9).tolist())
    with pytest.raises(ValueError, match="unknown kind"):
        drw_weights(counts, "sqrt")
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        inverse_frequency_weights([3, 0, 2])
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights(counts, 1.0)


# ---------------------------------------------------------------- cross-entropy
def test_ce_hard_matches_hand_formula():
    expect = -sum(_logsoftmax_row(r, c) for r, c in zip(LOGITS, TARGET)) / 3
    loss = CrossEntropy()(_t(LOGITS), torch.tensor(TARGET))
    assert float(loss) == pytest.approx(expect, rel=1e-12)


def test_ce_weighted_is_weighted_mean():
    w = [0.5, 2.0, 1.0]
    terms = [-w[c] * _logsoftmax_row(r, c) for r, c in zip(LOGITS, TARGET)]
    expect = sum(terms) / sum(w[c] for c in TARGET)
    loss = CrossEntropy(weight=w)(_t(LOGITS), torch.tensor(TARGET))
    assert float(loss) == pytest.approx(expect, rel=1e-6)


def test_soft_ce_equals_hard_on_one_hot_and_hand_value():
    logits, target = _t(LOGITS), torch.tensor(TARGET)
    onehot = F.one_hot(target, 3).double()
    for w in (None, [0.5, 2.0, 1.0]):
        ce = CrossEntropy(weight=w)
        assert float(ce(logits, onehot)) == pytest.approx(float(ce(logits, target)), rel=1e-6)
    q = [[0.7, 0.3, 0.0], [0.0, 0.4, 0.6], [1.0, 0.0, 0.0]]
    expect = -sum(sum(qc * _logsoftmax_row(r, c) for c, qc in enumerate(qr)) for r, qr in zip(LOGITS, q)) / 3
    assert float(CrossEntropy()(logits, _t(q))) == pytest.approx(expect, rel=1e-12)


def test_ce_bad_input_errors():
    ce = CrossEntropy()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        ce(_t(LOGITS), torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match="logits must be"):
        ce(_t([1.0, 2.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="weight has 2 entries"):
        CrossEntropy(weight=[1.0, 2.0])(_t(LOGITS), torch.tensor(TARGET))
    with pytest.raises(ValueError, match="soft"):
        FocalLoss()(_t(LOGITS), _t([[1.0, 0, 0]] * 3))


# ---------------------------------------------------------------- focal
def test_focal_matches_hand_formula():
    gamma = 2.0
    terms = []
    for r, c in zip(LOGITS, TARGET):
        lp = _logsoftmax_row(r, c)
        terms.append(-((1 - math.exp(lp)) ** gamma) * lp)
    loss = FocalLoss(gamma)(_t(LOGITS), torch.tensor(TARGET))
    assert float(loss) == pytest.approx(sum(terms) / 3, rel=1e-12)
    # class weights multiply each term; mean over the batch (divides by B)
    w = [0.5, 2.0, 1.0]
    loss_w = FocalLoss(gamma, weight=w)(_t(LOGITS), torch.tensor(TARGET))
    assert float(loss_w) == pytest.approx(sum(w[c] * t for c, t in zip(TARGET, terms)) / 3, rel=1e-6)
    # gamma = 0 is cross-entropy; focusing shrinks the loss
    assert float(FocalLoss(0.0)(_t(LOGITS), torch.tensor(TARGET))) == pytest.approx(
        float(CrossEntropy()(_t(LOGITS), torch.tensor(TARGET))), rel=1e-12)
    assert float(loss) < float(FocalLoss(1.0)(_t(LOGITS), torch.tensor(TARGET)))


# ---------------------------------------------------------------- LDAM
def test_ldam_margins_largest_half_and_quarter_power():
    m = ldam_margins([10000, 625, 16, 1])              # n^-1/4 = 0.1, 0.2, 0.5, 1 -> scaled to max 0.5
    assert m.tolist() == pytest.approx([0.05, 0.1, 0.25, 0.5], rel=1e-6)
    m = ldam_margins([500, 120, 37, 9, 3], max_m=0.5)
    n = torch.tensor([500, 120, 37, 9, 3], dtype=torch.float64)
    assert float(m.max()) == pytest.approx(0.5)
    ratio = m.double() * n ** 0.25                          # constant when m ∝ n^-1/4
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-6)


def test_ldam_loss_value_and_drw_switch():
    counts = [10000, 625, 16, 1]
    margins = [0.05, 0.1, 0.25, 0.5]
    s = 30.0
    cos = [[0.9, 0.1, -0.2, 0.0], [0.2, 0.3, 0.1, 0.25]]
    target = [0, 3]
    terms = []
    for r, c in zip(cos, target):
        z = [s * (v - (margins[c] if j == c else 0.0)) for j, v in enumerate(r)]
        terms.append(-_logsoftmax_row(z, c))
    loss = LDAMLoss(counts, max_m=0.5, s=s)
    assert float(loss(_t(cos), torch.tensor(target))) == pytest.approx(sum(terms) / 2, rel=1e-5)
    w = [0.2, 0.4, 1.0, 2.4]
    loss.set_weight(w)
    expect = (w[0] * terms[0] + w[3] * terms[1]) / (w[0] + w[3])
    assert float(loss(_t(cos), torch.tensor(target))) == pytest.approx(expect, rel=1e-5)
    loss.set_weight(None)
    assert float(loss(_t(cos), torch.tensor(target))) == pytest.approx(sum(terms) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="built for 4 classes"):
        loss(_t([[0.1, 0.2, 0.3]]), torch.tensor([0]))


# ---------------------------------------------------------------- SupCon
def _supcon_loop(feats, labels, t, base_t=None):
    """Direct per-anchor loop over all B*V embeddings (Eq. 1 of paper 002; base_t: SupContrast's T/base_T)."""
    b, v, _ = feats.shape
    z = [F.normalize(feats[i, j], dim=0) for j in range(v) for i in range(b)]
    lab = [int(labels[i]) for j in range(v) for i in range(b)]
    losses = []
    for i in range(len(z)):
        pos = [p for p in range(len(z)) if p != i and lab[p] == lab[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(len(z)) if k != i)
        li = -sum(float(z[i] @ z[p]) / t - math.log(denom) for p in pos) / len(pos)
        losses.append((1.0 if base_t is None else t / base_t) * li)
    return sum(losses) / len(losses)


def test_supcon_matches_loop_and_skips_anchors_without_positive():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 2, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1])
    loss = SupConLoss(temperature=0.1, base_temperature=0.07)(feats, labels)
    assert float(loss) == pytest.approx(_supcon_loop(feats, labels, 0.1, 0.07), rel=1e-9)
    # single view: label 2 (index 3) has no positive -> skipped, not NaN
    f1 = feats[:, :1]
    loss1 = SupConLoss(0.5, 0.5)(f1[:, 0], labels)
    assert torch.isfinite(loss1)
    assert float(loss1) == pytest.approx(_supcon_loop(f1, labels, 0.5, 0.5), rel=1e-9)


def test_supcon_no_positive_at_all_is_zero_with_gradient():
    feats = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = SupConLoss()(feats, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(feats.grad == 0)


def test_supcon_hand_value_two_points():
    # two orthogonal unit vectors of class 0 and a class-1 copy of the first; anchor 2 has no positive
    feats = _t([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    t = 1.0
    # anchor 0: pos 1 (sim 0), others {1: 0, 2: 1}; anchor 1: pos 0 (sim 0), others {0: 0, 2: 0}
    l0 = -(0.0 - math.log(math.exp(0) + math.exp(1)))
    l1 = -(0.0 - math.log(2.0))
    assert float(SupConLoss(t, t)(feats, labels)) == pytest.approx((l0 + l1) / 2, rel=1e-12)
    assert float(SupConLoss(t)(feats, labels)) == pytest.approx((l0 + l1) / 2, rel=1e-12)


def test_supcon_default_is_eq1_without_code_rescaling():
    """Eq. 1 of paper 002 has no T/base_T factor; base_temperature=0.07 gives the SupContrast code's value."""
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    for t in (0.01, 0.5, 1.0):
        eq1 = float(SupConLoss(temperature=t)(feats, labels))
        assert eq1 == pytest.approx(_supcon_loop(feats, labels, t), rel=1e-9)
        code = float(SupConLoss(temperature=t, base_temperature=0.07)(feats, labels))
        assert code == pytest.approx(eq1 * t / 0.07, rel=1e-9)
    for bad in (dict(temperature=0), dict(temperature=-1.0), dict(temperature=float("nan")),
                dict(base_temperature=0.0), dict(base_temperature="x")):
        with pytest.raises(ValueError, match="temperature"):
            SupConLoss(**bad)


# ---------------------------------------------------------------- center
def test_center_loss_value_no_half_by_default():
    loss = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    # ||(1,2)-(0,0)||^2 = 5, ||(0,0)-(1,1)||^2 = 2, ||(3,1)-(1,1)||^2 = 4 -> 11 / 3
    assert loss(x, y).item() == pytest.approx(11 / 3)
    half = CenterLoss(2, 2, half=True)
    half.load_state_dict(loss.state_dict())
    assert half(x, y).item() == pytest.approx(11 / 6)
    assert isinstance(loss.centers, torch.nn.Parameter)
    with pytest.raises(ValueError, match=r"features must be \(B, 2\)"):
        loss(torch.zeros(3, 5), y)


# ---------------------------------------------------------------- triplet
# 1-D points: class 0 at 0 and 1, class 1 at 2.5 and 4; margin 3; squared distances:
# d(0,1)=1, d(0,2.5)=6.25, d(0,4)=16, d(1,2.5)=2.25, d(1,4)=9, d(2.5,4)=2.25
# (a,p) pairs and costs d_ap - d_an + 3:
#   (0,1): -2.25, -12      (1,0): 1.75, -5      (2.5,4): -1, 3      (4,2.5): -10.75, -3.75
TRIPLET_X = [[0.0], [1.0], [2.5], [4.0]]
TRIPLET_Y = [0, 0, 1, 1]


@pytest.mark.parametrize("mining, expect", [
    ("all", (1.75 + 3.0) / 8),        # mean over all 8 triplets
    ("hard", (1.75 + 3.0) / 4),       # hardest negative of each of 4 (a,p) pairs
    ("semihard", 1.75),               # only (1,0) has a negative with d_ap < d_an < d_ap + m
])
def test_triplet_four_points(mining, expect):
    x = _t(TRIPLET_X, grad=True)
    loss = TripletLoss(margin=3.0, mining=mining)(x, torch.tensor(TRIPLET_Y))
    assert loss.item() == pytest.approx(expect, rel=1e-12)
    loss.backward()
    assert torch.all(torch.isfinite(x.grad)) and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
def test_triplet_no_valid_triplet_is_zero(mining):
    x = _t(TRIPLET_X, grad=True)
    for y in ([0, 0, 0, 0], [0, 1, 2, 3]):
        loss = TripletLoss(1.0, mining)(x, torch.tensor(y))
        assert loss.item() == 0.0 and not torch.isnan(loss)
        loss.backward()
    # well-separated classes: no semi-hard negative at all
    far = _t([[0.0], [0.1], [10.0], [10.1]])
    assert float(TripletLoss(1.0, "semihard")(far, torch.tensor(TRIPLET_Y))) == 0.0
    with pytest.raises(ValueError, match="unknown mining"):
        TripletLoss(1.0, "random")


# ---------------------------------------------------------------- gradients and registry
def test_gradients_flow_through_every_classification_loss():
    counts = [50, 10, 2]
    torch.manual_seed(0)
    for name in ["ce", "rw", "focal", "cb", "cb_focal", "ldam"]:
        logits = (torch.rand(6, 3) * 2 - 1).requires_grad_(True)
        loss = build_loss(name, counts)(logits, torch.tensor([0, 1, 2, 0, 1, 2]))
        loss.backward()
        assert torch.isfinite(loss) and float(logits.grad.abs().sum()) > 0, name
    feats = torch.randn(4, 2, 3, requires_grad=True)
    SupConLoss()(feats, torch.tensor([0, 0, 1, 1])).backward()
    assert float(feats.grad.abs().sum()) > 0
    center = CenterLoss(2, 3)
    x = torch.randn(4, 3, requires_grad=True)
    center(x, torch.tensor([0, 0, 1, 1])).backward()
    assert float(x.grad.abs().sum()) > 0 and float(center.centers.grad.abs().sum()) > 0


def test_build_loss_registry():
    counts = [100, 10, 1]
    assert type(build_loss("ce")) is CrossEntropy and build_loss("ce").weight is None
    rw = build_loss("rw", counts)
    assert rw.weight.tolist() == pytest.approx(inverse_frequency_weights(counts).tolist())
    cb = build_loss("cb", counts, beta=0.9)
    assert type(cb) is CrossEntropy
    assert cb.weight.tolist() == pytest.approx(class_balanced_weights(counts, 0.9).tolist())
    cbf = build_loss("cb_focal", counts, beta=0.9, gamma=1.0)
    assert type(cbf) is FocalLoss and cbf.gamma == 1.0
    assert cbf.weight.tolist() == pytest.approx(cb.weight.tolist())
    assert type(build_loss("cb", counts, base="focal")) is FocalLoss
    assert build_loss("focal", gamma=1.0).gamma == 1.0
    ldam = build_loss("ldam", counts, max_m=0.3, s=10.0)
    assert float(ldam.margins.max()) == pytest.approx(0.3) and ldam.s == 10.0
    with pytest.raises(ValueError, match=r"unknown loss 'lsce'.*'cb_focal'.*'ldam'"):
        build_loss("lsce")
    with pytest.raises(ValueError, match="class_counts"):
        build_loss("ldam")
    with pytest.raises(TypeError, match="build_loss\\('focal'\\)"):
        build_loss("focal", beta=0.9)
