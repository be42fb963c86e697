"""Paper 004 (metric learning in stage 1): every new loss, sampler, mixing rule and method against its formula on
hand-sized examples; bad parameters name the parameter; the stage-2 backbone stays frozen."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from kitlib import losses as L
from kitlib.data import load
from kitlib.data.splits import long_tail
from kitlib.experiment import Experiment
from kitlib.methods import BBN, build_method, cutmix_box
from kitlib.metrics import class_groups_by_count
from kitlib.models import create_model
from kitlib.samplers import PKSampler, ReversedSampler, build_sampler
from kitlib.train import ModelSpec, TrainConfig, fit, retrain_head, seed_everything


# ----------------------------------------------------------------------------- losses
def test_cb_focal_matches_hand_computation():
    m = build_method("cb_focal", beta=0.9, gamma=2.0)
    m.setup(None, [10, 1], epochs=1)
    e0, e1 = 0.1 / (1 - 0.9 ** 10), 0.1 / 0.1          # (1 - beta) / (1 - beta^n)
    w0, w1 = 2 * e0 / (e0 + e1), 2 * e1 / (e0 + e1)     # normalised to sum to C = 2
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    y = torch.tensor([0, 1])
    # p_t = 0.5 and 0.25: FL = -(1 - p_t)^2 log p_t, weighted, mean over the batch
    want = (w0 * 0.25 * math.log(2) + w1 * 0.75 ** 2 * math.log(4)) / 2
    assert float(m.criterion(logits, y)) == pytest.approx(want, rel=1e-5)


def test_triplet_euclidean_and_squared_hard_mining():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    # anchors 0 and 1 (positives of each other, d = 5); negatives: d(0,2) = 1, d(1,2) = sqrt(18)
    eu = L.TripletLoss(margin=1.0, mining="hard", distance="euclidean")(x, y)
    assert float(eu) == pytest.approx(((5 - 1 + 1) + (5 - math.sqrt(18) + 1)) / 2, rel=1e-5)
    sq = L.TripletLoss(margin=1.0, mining="hard", distance="squared")(x, y)
    assert float(sq) == pytest.approx(((25 - 1 + 1) + (25 - 18 + 1)) / 2, rel=1e-6)
    x.requires_grad_(True)
    L.TripletLoss(margin=1.0, mining="all", distance="euclidean")(torch.cat([x, x[:1]]), torch.tensor([0, 0, 1, 0])) \
        .backward()
    assert torch.isfinite(x.grad).all()  # the zero distance of a duplicated image gives no NaN


def test_ce_sc_loss_is_ce_plus_weighted_supcon_of_the_projection():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, width=4)
    m = build_method("ce+sc", weight=0.5, temperature=0.1)
    (proj,) = m.setup(model, [4, 2, 2], epochs=1)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 0, 1, 1, 2, 0])
    loss, logs = m.loss(model, {"image": x, "label": y}, 0)
    with torch.no_grad():
        out = model(x, out="all")
        z = F.normalize(proj(out["feat"]), dim=1)
        sim = z @ z.T / 0.1
    total, anchors = 0.0, 0
    for i in range(6):  # Khosla et al.: -1/|P(i)| sum_p log(exp(s_ip) / sum_{k != i} exp(s_ik)), no T/T_base factor
        pos = [p for p in range(6) if p != i and y[p] == y[i]]
        if not pos:  # the single image of class 2 is no anchor (skipped, not NaN)
            continue
        den = torch.logsumexp(torch.cat([sim[i, :i], sim[i, i + 1:]]), 0)
        total += -sum(float(sim[i, p] - den) for p in pos) / len(pos)
        anchors += 1
    want = float(F.cross_entropy(out["logits"], y)) + 0.5 * total / anchors
    assert float(loss.detach()) == pytest.approx(want, rel=1e-4)
    assert set(logs) == {"ce", "supcon"}
    sc = build_method("sc")
    sc.setup(model, [4, 2, 2], epochs=1)
    assert set(sc.loss(model, {"image": x, "label": y}, 0)[1]) == {"supcon"}  # no CE in the SC-only stage 1


def test_center_loss_centres_get_their_own_sgd_group(tmp_path):
    """Centres: SGD lr 0.5 on the gradient divided by w (pytorch-center-loss), whatever the network's lr."""
    arr = load("synthetic", n=120, num_classes=3, ratio=3, size=8, seed=0)
    exp = Experiment(arr, protocol="ratio", image_size=8, model={"width": 4}, progress=False, run_root=tmp_path)
    train = exp.dataset(0, "train", train_transform=False)
    cfg = TrainConfig(epochs=1, batch_size=len(train), lr=1e-12, schedule="constant", weight_decay=0.0,
                      select_metric=None, seed=3, device="cpu")
    spec = exp.spec("tiny_cnn")

    def stop(epoch, logs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # stop after the one step so last.pt (with the optimiser) stays
        fit(spec, build_method("ce+ct", weight=0.001), train, None, cfg, run_root=tmp_path, progress=False,
            callbacks=[stop])
    (last,) = tmp_path.glob("*/last.pt")
    ck = torch.load(last, weights_only=False)
    groups = ck["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.5 / 0.001) and groups[1]["fixed_lr"]
    assert groups[1]["momentum"] == 0 and groups[1]["weight_decay"] == 0
    # the same start as fit: seed, build the network, then the centres
    seed_everything(3)
    net = spec.build()
    c_old = L.CenterLoss(3, net.feature_dim).centers.detach()
    net.load_state_dict(ck["model"])  # lr 1e-12: the network has not moved
    net.train()
    xb = torch.stack([train[i]["image"] for i in range(len(train))])
    r = net(xb, out="all")["feat"].detach()
    yb = torch.as_tensor(np.asarray(train.labels))
    grad = torch.zeros_like(c_old)  # d/dc of sum_i ||r_i - c_y||^2 / B
    for j in range(3):
        grad[j] = 2 * (c_old[j] - r[yb == j]).sum(0) / len(yb)
    assert torch.allclose(ck["extras"][0]["centers"], c_old - 0.5 * grad, atol=1e-4)


# ----------------------------------------------------------------------------- CutMix
def test_cutmix_box_area_and_clipping():
    assert cutmix_box(10, 10, 0.64, 0.5, 0.5) == (2, 8, 2, 8)  # side sqrt(1 - 0.64) = 0.6 -> 6 px
    assert cutmix_box(10, 10, 0.64, 0.0, 0.0) == (0, 3, 0, 3)  # clipped at the corner: 9 px
    assert cutmix_box(10, 10, 1.0, 0.3, 0.7) == (3, 3, 7, 7)  # lam = 1: empty box


def test_cutmix_label_weight_is_the_kept_area():
    m = build_method("cutmix", alpha=1.0, prob=1.0)
    m.setup(None, [5, 5, 5, 5], epochs=1)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 12, 12).contiguous()  # image i is filled with i
    y = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(1)
    xm, target, kept = m.mixed(x, y)
    for i in range(4):
        own = float((xm[i] == i).float().mean())
        other = xm[i][xm[i] != i]
        if other.numel():  # pixels kept = label weight of the own class; the pasted box = the other's weight
            j = int(other[0])
            assert own == pytest.approx(kept) and kept < 1
            assert target[i, j] == pytest.approx(1 - kept) and target[i, i] == pytest.approx(kept)
        else:  # the permutation paired image i with itself: its own label, whole
            assert target[i, i] == pytest.approx(1.0)
    assert (xm != x).any()
    assert torch.allclose(target.sum(1), torch.ones(4))
    m0 = build_method("cutmix", prob=0.0)
    m0.setup(None, [5, 5, 5, 5], epochs=1)
    xs, t0, k0 = m0.mixed(x, y)
    assert k0 == 1.0 and torch.equal(xs, x) and torch.equal(t0, F.one_hot(y, 4).float())


# ----------------------------------------------------------------------------- BBN
def test_bbn_adaptor_schedule():
    m = BBN()
    m.setup(None, [3, 2], epochs=10)
    assert [m.alpha(t) for t in (0, 5, 9)] == pytest.approx([1.0, 0.75, 0.19])


def test_bbn_samplers_uniform_and_reversed():
    labels = np.repeat([0, 1, 2], [6, 3, 1])
    rev = ReversedSampler(labels, seed=0, num_samples=30000)
    assert rev.class_probabilities == pytest.approx([1 / 9, 2 / 9, 6 / 9])  # w_i = N_max / N_i, normalised
    freq = np.bincount(labels[list(rev)], minlength=3) / 30000
    assert freq == pytest.approx([1 / 9, 2 / 9, 6 / 9], abs=0.01)
    uni = build_sampler("instance", labels, seed=0)
    assert sorted(uni) == list(range(10))  # the conventional branch: every image once per epoch
    assert BBN.sampler == "instance" and BBN.extra_sampler == "reversed"


def test_bbn_logits_mix_the_two_branches():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, width=4, head="bbn").eval()
    xc, xr = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    f = model.backbone
    fc = f.conventional(f.shared(xc)).mean(dim=(2, 3))
    fr = f.rebalancing(f.shared(xr)).mean(dim=(2, 3))
    d = fc.shape[1]
    W, b = model.head.weight, model.head.bias
    want = 0.3 * fc @ W[:, :d].T + 0.7 * fr @ W[:, d:].T + b
    assert torch.allclose(model((xc, xr, 0.3)), want, atol=1e-5)
    assert torch.allclose(model(xc), model((xc, xc, 0.5)), atol=1e-6)  # test time: alpha = 0.5, same image
    m = BBN()
    m.setup(model, [3, 2, 1], epochs=4)
    yc, yr = torch.tensor([0, 1]), torch.tensor([2, 2])
    loss, logs = m.loss(model, {"image": xc, "label": yc, "extra": {"image": xr, "label": yr}}, 2)
    a = 1 - (2 / 4) ** 2
    z = model((xc, xr, a))
    assert loss.item() == pytest.approx(float((a * F.cross_entropy(z, yc) + (1 - a) * F.cross_entropy(z, yr)).detach()), rel=1e-5)


# ----------------------------------------------------------------------------- samplers, splits, groups
def test_pk_sampler_blocks_hold_k_of_every_class():
    labels = np.repeat([0, 1, 2], [10, 3, 1])
    s = PKSampler(labels, samples_per_class=2, seed=0)
    idx = list(s)
    assert len(idx) == len(s) == 18  # ceil(14 / 6) blocks of 3 classes x 2
    for start in range(len(idx) - 6 + 1):  # any 6 consecutive indices: 2 per class
        assert np.bincount(labels[idx[start:start + 6]], minlength=3).tolist() == [2, 2, 2]
    s.set_epoch(1)
    assert list(s) != idx
    assert build_method("ce+tp").sampler == "pk" and build_method("ce+tp").sampler_kwargs(10) == {"samples_per_class": 4}


def test_long_tail_label_order_reproduces_table1_pathmnist_lt():
    counts = [9366, 9509, 10360, 10401, 8006, 12182, 7886, 9401, 12885]  # official PathMNIST train split
    y = np.repeat(np.arange(9), counts)
    n = np.bincount(y[long_tail(np.arange(len(y)), y, 100, order="label")])
    assert n.max() == 9366 and n.min() == 94 and round(n.max() / n.min(), 1) == 99.6  # Table 1
    assert n[0] == 9366 and n[-1] == 94
    n_count = np.bincount(y[long_tail(np.arange(len(y)), y, 100)])
    assert n_count.max() == 12885  # the other convention keeps the largest class whole
    with pytest.raises(ValueError, match="order"):
        long_tail(np.arange(len(y)), y, 100, order="size")


def test_major_minor_groups_from_counts():
    from kitlib.papers.metric_learning import class_groups

    skin7 = [1113, 6705, 514, 327, 1099, 115, 142]  # mel, nv, bcc, akiec, bkl, df, vasc
    g = class_groups("skin7", skin7)
    assert g["major"] == [0, 1, 4] and g["minor"] == [5, 6]  # 3 most frequent; 2 least on Skin7
    assert class_groups("xray9", list(range(10, 100, 10)))["minor"] == [0, 1, 2]  # 3 least elsewhere
    assert class_groups_by_count(skin7, 3, 2) == g


# ----------------------------------------------------------------------------- two stages
def test_stage2_backbone_frozen_head_retrained(tmp_path):
    arr = load("synthetic", n=150, num_classes=3, ratio=3, size=8, seed=0)
    exp = Experiment(arr, protocol="ratio", image_size=8, model={"width": 4}, progress=False, run_root=tmp_path,
                     train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    s1 = exp.train(0, "tiny_cnn", "ce+ct")
    s2 = retrain_head(s1, exp.dataset(0, "train"), exp.dataset(0, "val"), kind="crw",
                      cfg={"epochs": 2, "device": "cpu"}, run_root=tmp_path, progress=False)
    for k, v in s1.model.backbone.state_dict().items():
        assert torch.equal(v, s2.model.backbone.state_dict()[k]), k  # weights and BN statistics unchanged
    assert not torch.equal(s1.model.head.weight, s2.model.head.weight)
    assert s2.config["train"]["lr"] == 0.1 and s2.config["train"]["epochs"] == 2
    assert s2.config["method"]["name"] == "crw"


# ----------------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize("name, kw, word", [
    ("ce+tp", {"distance": "manhattan"}, "distance"), ("ce+tp", {"mining": "easy"}, "mining"),
    ("ce+tp", {"margin": -1.0}, "margin"), ("ce+ct", {"weight": 0.0}, "weight"),
    ("ce+ct", {"centers": "frozen"}, "centers"), ("ce+sc", {"temperature": 0}, "temperature"),
    ("sc", {"proj_dim": 0}, "proj_dim"), ("cutmix", {"prob": 1.5}, "prob"), ("cutmix", {"alpha": 0}, "alpha"),
    ("cb_focal", {"beta": 1.0}, "beta"), ("ce_drw", {"weights": "sqrt"}, "weights"),
    ("ce+tp", {"samples_per_class": 0}, "samples_per_class"),
])
def test_bad_method_parameters_name_the_parameter(name, kw, word):
    with pytest.raises(ValueError, match=word):
        build_method(name, **kw)


def test_bad_sampler_and_loss_parameters():
    with pytest.raises(ValueError, match="distance"):
        L.TripletLoss(distance="cosine")
    with pytest.raises(ValueError, match="samples_per_class"):
        PKSampler([0, 1], samples_per_class=0)
    with pytest.raises(ValueError, match="BBN"):
        create_model("vgg19", 3, head="bbn")


def test_stage2_on_cached_features_frozen_and_equal_to_a_head_trained_by_hand(tmp_path):
    from kitlib.train import retrain_head_features

    arr = load("synthetic", n=120, num_classes=3, ratio=3, size=8, seed=0)
    exp = Experiment(arr, protocol="ratio", image_size=8, model={"width": 4}, progress=False, run_root=tmp_path,
                     train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    s1 = exp.train(0, "tiny_cnn", "ce")
    train = exp.dataset(0, "test")  # deterministic transform: the features are the same on every pass
    # one full batch per epoch, last epoch kept: the run is a plain function of the features
    cfg = {"epochs": 3, "batch_size": 10_000, "select_metric": None, "device": "cpu", "seed": 3}
    s2 = retrain_head_features(s1, train, None, kind="crw", cfg=cfg, run_root=tmp_path, progress=False)
    for k, v in s1.model.backbone.state_dict().items():
        assert torch.equal(v, s2.model.backbone.state_dict()[k]), k  # frozen, BN statistics included
    x = torch.stack([train[i]["image"] for i in range(len(train))])
    y = torch.as_tensor(np.asarray(train.labels))
    with torch.no_grad():
        feat = s1.model(x, out="all")["feat"]
    n = np.bincount(y.numpy(), minlength=3).astype(float)
    w = torch.tensor(3 * (1 / n) / (1 / n).sum(), dtype=torch.float32)  # inverse frequency, summing to C
    seed_everything(3)
    head = torch.nn.Linear(feat.shape[1], 3)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    floor = 1e-6 / 0.1
    for epoch in range(3):  # cosine from 0.1 to 1e-6 over 3 epochs, one step per epoch
        for g in opt.param_groups:
            g["lr"] = 0.1 * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / 3)))
        loss = F.cross_entropy(head(feat), y, weight=w)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.allclose(s2.model.head.weight, head.weight, atol=1e-5)
    assert torch.allclose(s2.model.head.bias, head.bias, atol=1e-5)
    with torch.no_grad():  # the returned model is backbone + the new head
        assert torch.allclose(s2.model(x), head(feat), atol=1e-5)
    assert s2.config["features"] == "cached" and s2.config["init"] == s1.key
    again = retrain_head_features(s1, train, None, kind="crw", cfg=cfg, run_root=tmp_path, progress=False)
    assert torch.equal(again.model.head.weight, s2.model.head.weight)  # cached by config
    with pytest.raises(ValueError, match="kind"):
        retrain_head_features(s1, train, None, kind="crx", cfg=cfg, run_root=tmp_path, progress=False)


# ----------------------------------------------------------------------------- notebook 05 helpers and end to end
def test_table5_groups_labels_and_backbone_names():
    from kitlib.papers import metric_learning as ml

    g = ml.three_groups([50, 40, 30, 20, 10, 9, 8, 7, 6])
    assert g == {"major": [0, 1, 2], "medium": [3, 4, 5], "minor": [6, 7, 8]}
    assert ml.label("ce+sc->crw") == "CE+SC->cRW" and ml.label("ldam_drw") == "LDAM-DRW"
    assert ml.backbone_args("tiny_cnn@8") == ("tiny_cnn", {"width": 8})
    assert ml.backbone_args("resnet50") == ("resnet50", {})
    with pytest.raises(ValueError, match="backbones"):
        ml.backbone_args("ResNet-50")


@pytest.mark.parametrize("name, value", [("metric_losses", ["ce+xx"]), ("baselines", ["ce->crx"]),
                                         ("stable_pp", 0), ("backbone", "Tiny CNN")])
def test_notebook05_bad_parameters_name_the_parameter(name, value):
    from kitlib.params import ParameterError
    from kitlib.papers import metric_learning as ml
    from kitlib.profiles import get

    import json
    nb = json.load(open("notebooks/05_metric_learning.ipynb"))
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    values = {}
    exec("".join(cell["source"]), {}, values)
    ml.PARAMETERS.check(values)  # the smoke defaults pass
    values[name] = value
    with pytest.raises(ParameterError, match=name):
        ml.PARAMETERS.check(values)
    assert get("metric_learning", "laptop")["seeds"] == [0, 1, 2]


def test_reproduce_metric_learning_smoke(tmp_path):
    import json

    from kitlib.cli import main

    rc = main(["reproduce", "metric_learning", "--profile", "smoke", "--out", str(tmp_path), "--device", "cpu",
               "--no-progress", "-p", "seeds=[0, 1]", "-p", f"run_root={tmp_path / 'runs'}"])
    out = tmp_path / "smoke" / "metric_learning"
    assert rc == 0, (out / "run.json").read_text() if (out / "run.json").exists() else "no run.json"
    for t in ("table1_dataset_statistics", "table2_ours", "table2_paper_vs_ours", "table3_ablation", "fig2_sensitivity",
              "table4_backbones", "table5_natural", "feature_compactness", "effects", "claims"):
        assert (out / f"{t}.csv").stat().st_size > 0, t
    assert (out / "fig2_sensitivity.png").stat().st_size > 1000 and (out / "fig2_sensitivity.pdf").stat().st_size > 1000
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims["claim_id"]) == ["c1", "c2", "c3", "c4", "c5"]
    assert claims.set_index("claim_id").loc["c5", "verdict"] == "not run"
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive", "not run"}
    t2 = pd.read_csv(out / "table2_runs.csv")
    assert {"ce+ct->crw", "ce+tp->crw", "ce+sc->crw", "bbn", "cutmix"} <= set(t2["method"]) and t2["seed"].nunique() == 2
    assert json.loads((out / "record.json").read_text())["config"]["profile"] == "smoke"
