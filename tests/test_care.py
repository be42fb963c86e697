"""Paper 003 (CARE): Grad-CAM (Eqs. 1-3), boxes, the attention loss (Eqs. 4-7), automatic boxes, the notebook."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from kitlib import explain
from kitlib.methods import CARE, build_method
from kitlib.models import KitModel, create_model


def tiny_net(seed=0):
    """conv 3->2 (1x1) + ReLU, GAP, linear 2->3: small enough to compute Grad-CAM by hand."""
    torch.manual_seed(seed)
    feats = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU())
    return KitModel(feats, 2, 3).eval()


def test_grad_cam_by_hand():
    net = tiny_net()
    x = torch.rand(1, 3, 4, 4)
    a = net.features(x)[0]                       # (2, 4, 4)
    w = net.head.weight[2]                       # class 2
    alpha = w / 16                               # Eq. 2 for GAP + linear: dY/dA_ij = w / Z, Z = 16
    cam = (alpha[:, None, None] * a).sum(0)      # Eq. 3
    want = (cam - cam.min()) / (cam.max() - cam.min() + explain.EPS)
    got = explain.grad_cam(net, x, torch.tensor([2]))[0]
    assert torch.allclose(got, want.detach(), atol=1e-6)
    # the sign follows Eq. 2 (dY^c/dA): with the loss's gradient (-dY/dA) the map would be 1 - F
    flipped = explain.cam_from(a[None], -alpha[None], (4, 4))[0]
    assert torch.allclose(flipped, 1 - want.detach(), atol=1e-3) and not torch.allclose(flipped, got, atol=0.1)


def test_shortcut_equals_autograd_and_vgg_fc_goes_general():
    net = create_model("tiny_cnn", 4, width=4).eval()
    x, t = torch.rand(3, 3, 16, 16), torch.tensor([0, 3, 1])
    assert explain.has_linear_shortcut(net)
    a = explain.grad_cam(net, x, t, path="shortcut")
    b = explain.grad_cam(net, x, t, path="autograd")
    assert torch.allclose(a, b, atol=1e-5)
    net.head = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))  # FC layers after the maps
    assert not explain.has_linear_shortcut(net)
    with pytest.raises(ValueError, match="shortcut"):
        explain.grad_cam(net, x, t, path="shortcut")
    assert explain.grad_cam(net, x, t).shape == (3, 16, 16)


def test_vgg19_fc_is_fig7_and_its_grad_cam_weights_match_a_finite_difference():
    torch.manual_seed(0)
    net = create_model("vgg19_fc", 3, small_input=True).double().eval()
    fcs = [m for m in net.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in fcs] == [(25088, 4096), (4096, 4096), (4096, 3)]  # Fig. 7
    assert not explain.has_linear_shortcut(net)
    x, t = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.tensor([1])
    fmap = net.features(x).detach()

    def score(a):
        return net.head(net.pool(a))[0, 1]
    a = fmap.clone().requires_grad_(True)
    w = explain.channel_weights(net, a, net.head(net.pool(a)), t)  # "auto" = the autograd path here
    # Eq. 2: alpha_k = (1/Z) sum_ij dY/dA^k_ij = d/de Y(A + e * 1_k) / Z, for a few channels
    z, e = fmap.shape[2] * fmap.shape[3], 1e-7
    for k in (0, 7, 511):
        bump = torch.zeros_like(fmap)
        bump[0, k] = e
        with torch.no_grad():
            fd = (score(fmap + bump) - score(fmap - bump)) / (2 * e) / z
        assert float(w[0, k]) == pytest.approx(float(fd), rel=1e-4, abs=1e-9)
    net.reset_head()
    assert net.head[-1].out_features == 3 and net.head[0].in_features == 25088  # only the last FC is new
    # a CARE step through the general path: the attention term reaches the conv layers
    net, care = net.float(), build_method("care", base="rw")
    care.setup(net, [10, 5, 2], epochs=1)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 8:20] = 1
    batch = {"image": x.float().repeat(2, 1, 1, 1), "label": torch.tensor([2, 0]), "mask": mask,
             "has_lesion": torch.ones(2, dtype=torch.bool)}
    loss, logs = care.loss(net, batch, 0)
    loss.backward()
    assert logs["boxed"] == 1 and net.backbone[0].weight.grad.abs().sum() > 0


def test_minmax_constant_map_is_zero_not_nan():
    m = explain.minmax(torch.ones(2, 3, 3))
    assert torch.isfinite(m).all() and (m == 0).all()


def test_loss_gradient_reaches_activations_not_channel_weights():
    net = tiny_net()
    x = torch.rand(2, 3, 4, 4)
    out = net(x, out="all")
    fmap = out["fmap"]
    fmap.retain_grad()
    cam = explain.grad_cam(net, x, torch.tensor([0, 1]), out=out)
    cam.sum().backward()
    assert fmap.grad is not None and fmap.grad.abs().sum() > 0
    assert net.head.weight.grad is None  # the weights w^c / Z are constants in the map
    net.zero_grad()
    out = net(x, out="all")
    cam = explain.grad_cam(net, x, torch.tensor([0, 1]), out=out, path="autograd")
    cam.sum().backward()
    assert net.head.weight.grad is None or net.head.weight.grad.abs().sum() == 0


def test_attention_loss_on_hand_made_maps():
    care = build_method("care", alpha=0.5, tau=0.7, lam=1.0)
    f = torch.zeros(2, 4, 4)
    f[0, :2, :2] = 1.0                           # image 0: all attention inside its box
    f[1] = 0.5                                   # image 1: flat 0.5
    m_in = torch.zeros(2, 4, 4)
    m_in[:, :2, :2] = 1                          # box = the top-left 2x2 (4 pixels), outside 12 pixels
    use = torch.tensor([True, True])
    att, l_in, l_out = care.attention_loss(f, m_in, use)
    # Eq. 6: image 0 inside mean 1 -> -min(1, 0.7) = -0.7; image 1: -min(0.5, 0.7) = -0.5; mean -0.6
    assert l_in.item() == pytest.approx(-0.6)
    # Eq. 7: image 0 outside 0, image 1 outside 0.5; mean 0.25
    assert l_out.item() == pytest.approx(0.25)
    assert att.item() == pytest.approx(-0.6 + 0.25)
    s = build_method("care", reduction="sum", lam=0.5).attention_loss(f, m_in, use)
    assert s[1].item() == pytest.approx(-1.2) and s[0].item() == pytest.approx(-1.2 + 0.5 * 0.5)
    assert care.attention_loss(f, m_in, torch.tensor([False, False]))[0].item() == 0


def test_care_loss_uses_only_box_classes_and_eq4():
    torch.manual_seed(0)
    net = create_model("tiny_cnn", 3, width=4)
    care = build_method("care", base="rw", alpha=0.5)
    care.setup(net, [10, 5, 2], epochs=1)
    assert care.box_class_ids.tolist() == [2]     # the smallest class by default
    x = torch.rand(4, 3, 16, 16)
    mask = torch.zeros(4, 1, 16, 16)
    mask[:, :, 4:10, 4:10] = 1
    batch = {"image": x, "label": torch.tensor([0, 1, 0, 1]), "mask": mask, "has_lesion": torch.ones(4, dtype=torch.bool)}
    loss, logs = care.loss(net, batch, 0)
    assert logs["boxed"] == 0                    # no image of the boxed class: CE only, scaled by 1 - alpha
    base = care.base.criterion(net(x), batch["label"])
    assert loss.item() == pytest.approx(0.5 * base.item(), rel=1e-5)
    batch["label"] = torch.tensor([2, 1, 2, 0])
    loss, logs = care.loss(net, batch, 0)
    assert logs["boxed"] == 2
    want = 0.5 * care.base.criterion(net(x), batch["label"]).item() + 0.5 * (logs["l_in"] + logs["l_out"])
    assert loss.item() == pytest.approx(want, rel=1e-4)


def test_care_bad_parameters_name_them():
    for kw, name in [({"alpha": 1.5}, "alpha"), ({"tau": -1}, "tau"), ({"lam": -0.1}, "lam"),
                     ({"box_scale": 0}, "box_scale"), ({"reduction": "max"}, "reduction"),
                     ({"box_classes": [-1]}, "box_classes"), ({"base": "care"}, "base")]:
        with pytest.raises(ValueError, match=name):
            build_method("care", **kw)


def test_boxes_from_masks_and_scaling():
    m = np.zeros((10, 10), np.uint8)
    m[2:6, 3:9] = 1
    assert explain.box_from_mask(m).tolist() == [3, 2, 9, 6]
    assert np.isnan(explain.box_from_mask(np.zeros((4, 4)))).all()
    assert explain.scale_box([3, 2, 9, 6], 0.5).tolist() == [4.5, 3, 7.5, 5]
    assert explain.scale_box([0, 0, 10, 10], 1.2, 10, 10).tolist() == [0, 0, 10, 10]
    assert explain.box_mask([3, 2, 9, 6], 10, 10).sum() == 24
    assert explain.box_iou([0, 0, 2, 2], [1, 0, 3, 2]) == pytest.approx(2 / 6)
    t = torch.from_numpy(m)[None, None].float()
    m_in, has = explain.batch_box_masks(t, 1.0)
    assert has.item() and torch.equal(m_in[0], torch.from_numpy(explain.box_mask([3, 2, 9, 6], 10, 10)).float())
    m_in, _ = explain.batch_box_masks(t, 0.5)
    assert m_in[0].sum().item() == explain.box_mask(explain.scale_box([3, 2, 9, 6], 0.5), 10, 10).sum()


def test_energy_inside():
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 3, 1
    reg = np.zeros((2, 4, 4))
    reg[:, :2, :2] = 1
    e = explain.energy_inside(maps, reg)
    assert e[0] == pytest.approx(0.75) and np.isnan(e[1])


def test_gradcam_context_leaves_no_hook_and_matches_differentiable():
    net = create_model("tiny_cnn", 3, width=4).eval()
    x, t = torch.rand(5, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1])
    with explain.no_hooks_left(net):
        for _ in range(3):
            with explain.GradCAM(net, relu=False, batch_size=2) as cam:
                maps = cam(x, t)
    assert maps.shape == (5, 16, 16) and 0 <= maps.min() and maps.max() <= 1
    assert np.allclose(maps, explain.grad_cam(net, x, t).detach().numpy(), atol=1e-5)
    with pytest.raises(RuntimeError, match="with"):
        explain.GradCAM(net)(x)


def test_saliency_box_finds_a_synthetic_lesion():
    from kitlib.data.synthetic import make_synthetic

    arr = make_synthetic(n=40, size=64, seed=1, distractors=False)
    ious = [explain.box_iou(explain.saliency_box(im, blur=2), b) for im, b in zip(arr.images, arr.boxes)]
    assert np.nanmean(ious) > 0.3  # stated bound: the lesion is the salient blob on a plain background


def test_finetune_path_links_runs(tmp_path):
    from kitlib.data.synthetic import make_synthetic
    from kitlib.experiment import Experiment

    arr = make_synthetic(n=200, num_classes=3, ratio=5, size=16, seed=0)
    exp = Experiment(arr, protocol="ratio", ratios=(0.7, 0.3), image_size=16, with_masks=True, run_root=tmp_path,
                     progress=False, model={"width": 4}, train={"epochs": 1, "batch_size": 32})
    ft = exp.finetune(0, "tiny_cnn", "rw", "care", {"base": "rw"}, finetune={"optimizer": "adamw", "lr": 1e-4})
    pre = exp.train(0, "tiny_cnn", "rw")
    assert ft.config["init"] == pre.key and "l_in" not in pre.history
    again = exp.finetune(0, "tiny_cnn", "rw", "care", {"base": "rw"}, finetune={"optimizer": "adamw", "lr": 1e-4})
    assert again.key == ft.key


def test_an_automatic_source_that_boxed_nothing_is_not_judged():
    import pandas as pd
    from kitlib.papers import care

    iou = pd.DataFrame({"boxes": ["saliency", "DeepLabV3", "centred 60 % box (reference)"], "found": [12, 0, 12]})
    out = care.unboxed_sources(iou)
    assert list(out) == ["auto_segmentation"] and "DeepLabV3 found no box" in out["auto_segmentation"]
    assert care.unboxed_sources(iou.assign(found=5)) == {}


def test_summary_says_how_many_seeds_had_an_attention_number():
    import pandas as pd
    from kitlib.papers import care

    rows = pd.DataFrame({"variant": ["a"] * 3, "scr": [0.0, 0.1, 0.2], "auc_ovr": [0.8] * 3, "mcr": [0.3, 0.4, 0.5],
                         "att_minority": [0.99, np.nan, np.nan], "att_all": [0.5, 0.5, 0.6]})
    t = care.summary(rows).iloc[0]
    assert t["attention inside box, minority (%)"] == "99.0 [1 of 3 seeds]"
    assert t["MCA"] == "40.0 (10.0)" and t["seeds"] == 3


def test_attention_table_counts_a_run_once_and_seeds_with_a_number():
    import pandas as pd
    from kitlib.papers import care

    t2 = pd.DataFrame({"variant": ["CSL"] * 2, "backbone": "tiny_cnn", "seed": [0, 1],
                       "att_minority": [0.4, np.nan], "att_all": [0.5, 0.7]})
    t = care.attention_table(t2, t2.copy())  # the same runs listed in two tables
    row = t.loc[("CSL", "tiny_cnn")]
    assert row[("att_minority", "count")] == 1 and row[("att_all", "count")] == 2
    assert row[("att_minority", "mean")] == pytest.approx(40.0) and row[("att_all", "mean")] == pytest.approx(60.0)
