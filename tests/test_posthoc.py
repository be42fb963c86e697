"""Notebook 01 beyond the paper and the review's fixes: post-hoc corrections, precision, stem, Table 1 basis."""
import numpy as np
import pytest
import torch

from kitlib.data import make_synthetic
from kitlib.experiment import Experiment
from kitlib.infer import logit_adjust, predict, tau_normalize
from kitlib.models import create_model
from kitlib.papers import perturbed_input as pi
from kitlib.perturb import predict_perturbed


def test_logit_adjust_by_hand():
    probs = np.array([[0.6, 0.3, 0.1]])
    counts = [80, 15, 5]  # prior 0.8, 0.15, 0.05
    out = logit_adjust(probs, counts, tau=1.0)
    z = np.log(probs[0]) - np.log([0.8, 0.15, 0.05])  # 0.6/0.8 = 0.75, 0.3/0.15 = 2, 0.1/0.05 = 2
    assert out[0] == pytest.approx(np.exp(z) / np.exp(z).sum(), rel=1e-5)
    assert out[0] == pytest.approx([0.75 / 4.75, 2 / 4.75, 2 / 4.75], rel=1e-5)
    assert logit_adjust(probs, counts, tau=0) == pytest.approx(probs, rel=1e-6)
    with pytest.raises(ValueError, match="train_counts"):
        logit_adjust(probs, [1, 0, 2])
    with pytest.raises(ValueError, match="tau"):
        logit_adjust(probs, counts, tau=-1)


def test_tau_normalize_divides_each_class_row_by_its_norm():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, width=4)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[3.0, 4.0] + [0.0] * (model.feature_dim - 2),
                                              [0.0, 2.0] + [0.0] * (model.feature_dim - 2),
                                              [1.0, 0.0] + [0.0] * (model.feature_dim - 2)]))
        model.head.bias.fill_(0.5)
    out = tau_normalize(model, tau=1.0)
    assert out.head.weight[0, :2].tolist() == pytest.approx([0.6, 0.8]) and out.head.weight[1, 1] == 1.0
    assert out.head.bias.abs().sum() == 0 and model.head.bias[0] == 0.5  # original untouched
    half = tau_normalize(model, tau=0.5, bias="keep")
    assert half.head.weight[0, 0].item() == pytest.approx(3 / 5 ** 0.5) and half.head.bias[0] == 0.5
    same = tau_normalize(model, tau=0.0, bias="keep")
    x = torch.randn(4, 3, 16, 16)
    assert torch.allclose(same(x), model(x))
    with pytest.raises(ValueError, match="bias"):
        tau_normalize(model, bias="maybe")


def test_small_stem_keeps_the_first_convolution_filters():
    torch.manual_seed(0)
    keep = create_model("resnet18", 3, small_input=True, small_stem="keep")
    conv = keep.backbone[0] if hasattr(keep, "backbone") else next(m for m in keep.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.kernel_size == (7, 7) and conv.stride == (1, 1)
    new = create_model("resnet18", 3, small_input=True, small_stem="new")
    conv = next(m for m in new.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.kernel_size == (3, 3)
    assert keep(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="small_stem"):
        create_model("resnet18", 3, small_input=True, small_stem="old")


def test_perturbed_and_plain_share_precision_on_cpu():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, width=4).eval()
    x = torch.randn(8, 3, 16, 16)
    plain = predict(model, x, amp=False)
    at_zero = predict_perturbed(model, x, [50, 10, 5], eps=0.0, progress=False, amp=False)
    assert np.allclose(plain, at_zero, atol=1e-6)  # eps = 0 is exactly the baseline, same precision


def test_table1_counts_training_folds_like_the_paper(tmp_path):
    arr = make_synthetic(n=200, num_classes=3, ratio=4, size=8, seed=1)
    exp = Experiment(arr, folds=5, image_size=8, progress=False, run_root=tmp_path)
    counts, what = pi._table1_counts(exp, "train")
    sp = exp.splits[0]
    assert counts.sum() == len(sp.train) + len(sp.val) == 200 - len(sp.test) and what == "training folds (4 of 5)"
    assert pi._table1_counts(exp, "all")[0].sum() == 200


def test_absolute_table_labels_sides_and_diffs_only_when_the_setting_matches():
    assert pi.matches_paper("skin7", "resnet50", 224, "kfold", 5, True)
    assert not pi.matches_paper("skin7", "resnet18", 64, "kfold", 3, False)
    assert pi.setting_label("ours", "resnet18", 64, "kfold", 3, False) == "ours: ResNet18 (random init), 64 px, 3 folds"
    import pandas as pd
    rows = pd.DataFrame([{"backbone": "resnet18", "method": "ce", "variant": v, "fold": f, "mcr": 0.5, "scr": 0.2}
                         for v in ("baseline", "ours", "logit_adj") for f in (0, 1)])
    _, absolute = pi.table2(rows, "skin7", {("paper", "resnet18"): "paper: ResNet50, 224 px, 5 folds"})
    a = absolute.set_index(["method", "metric"])
    assert a.loc[("CE", "MCR"), "paper"] == "84.54 (0.86)" and a.loc[("CE", "MCR"), "diff"] == ""
    assert a.loc[("CE+LA", "MCR"), "paper"] == "not in the paper" and a.loc[("CE", "MCR"), "ours"] == "50.00 (0.00)"
    _, same = pi.table2(rows.assign(backbone="resnet50"), "skin7", same=True)
    assert same.set_index(["method", "metric"]).loc[("CE", "MCR"), "diff"] == "-34.54"
