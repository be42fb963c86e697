"""Paper 001 (Balanced-MixUp): sampling by n^q (Eq. 2), the mixing rule (Eq. 3), lambda ~ Beta(alpha, 1), the
soft-label loss, binary labels, the BiT ResNeXt, prediction on an external set, the notebook's parameters."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from kitlib import losses as L
from kitlib.data import TorchImageSet, build_transform, make_synthetic
from kitlib.experiment import Experiment
from kitlib.methods import BalancedMixUp, MixUp, build_method, mix, one_hot
from kitlib.models import StdConv2d, create_model
from kitlib.samplers import PowerSampler
from kitlib.train import TrainConfig, fit

COUNTS = np.array([800, 200, 50, 10])
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(4), COUNTS))


@pytest.mark.parametrize("q", [1.0, 0.5, 0.0, 2.0])
def test_power_sampler_class_frequencies_follow_eq2(q):
    draws = 200_000
    s = PowerSampler(LABELS, q=q, seed=1, num_samples=draws)
    freq = np.bincount(LABELS[np.fromiter(iter(s), dtype=np.int64)], minlength=4) / draws
    want = COUNTS.astype(float) ** q / (COUNTS.astype(float) ** q).sum()  # Eq. 2
    # q = 1: 800/1060, q = 0: 1/4 each, q = 1/2: sqrt(n) / sum sqrt(n)
    assert freq == pytest.approx(want, abs=4 * math.sqrt(0.25 / draws))
    assert s.class_probabilities == pytest.approx(want, rel=1e-12)


def test_sqrt_and_power_methods_choose_their_samplers():
    assert build_method("sqrt").sampler == "sqrt"
    p = build_method("power", q=0.25)
    assert p.sampler == "power" and p.sampler_kwargs(10) == {"q": 0.25}
    assert build_method("rs").sampler == "class" and build_method("ce").sampler == "instance"


def _ready(method, counts=(3, 1)):
    method.setup(torch.nn.Identity(), counts, epochs=1)
    return method


def test_balanced_mixup_draws_beta_alpha_1_not_beta_alpha_alpha():
    m = _ready(BalancedMixUp(alpha=0.2))
    torch.manual_seed(0)
    lam = torch.stack([m.draw(8) for _ in range(3000)]).numpy()
    assert stats.kstest(lam, stats.beta(0.2, 1).cdf).pvalue > 0.01
    assert stats.kstest(lam, stats.beta(0.2, 0.2).cdf).pvalue < 1e-6
    assert m.epoch_logs()["lambdas"] == pytest.approx(lam.tolist())
    assert m.epoch_logs() == {}  # reset after reading
    per_sample = _ready(BalancedMixUp(alpha=0.3, lam_per="sample")).draw(5)
    assert per_sample.shape == (5,)


def test_mixup_draws_beta_alpha_alpha():
    m = _ready(MixUp(alpha=0.4))
    torch.manual_seed(1)
    lam = torch.stack([m.draw(4) for _ in range(3000)]).numpy()
    assert stats.kstest(lam, stats.beta(0.4, 0.4).cdf).pvalue > 0.01
    assert stats.kstest(lam, stats.beta(0.4, 1).cdf).pvalue < 1e-6


def _batch(c=3):
    # instance batch: all zeros, labels 0; class-balanced batch: all ones, labels c-1
    return {"image": torch.zeros(2, 3, 4, 4), "label": torch.tensor([0, 0]),
            "extra": {"image": torch.ones(2, 3, 4, 4), "label": torch.tensor([c - 1, c - 1])}}


@pytest.mark.parametrize("form, instance_weight", [("text", 0.9), ("eq3", 0.1)])
def test_which_batch_keeps_the_larger_weight(form, instance_weight, monkeypatch):
    m = _ready(BalancedMixUp(alpha=0.1, form=form), counts=(5, 3, 1))
    monkeypatch.setattr(m, "draw", lambda n, device=None: torch.tensor(0.1))
    x, y = m.mixed(_batch())
    # text: x = (1 - lam) x_I + lam x_C = 0.1 (x_I = 0, x_C = 1); eq3: x = lam x_I + (1 - lam) x_C = 0.9
    assert torch.allclose(x, torch.full_like(x, 1 - instance_weight))
    assert torch.allclose(y, torch.tensor([[instance_weight, 0.0, 1 - instance_weight]] * 2))


def test_binary_labels_mix_to_soft_targets_not_zero():
    x, y = mix(torch.zeros(2, 1), torch.tensor([0, 1]), torch.ones(2, 1), torch.tensor([1, 1]),
               torch.tensor(0.7), num_classes=2)
    assert torch.allclose(y, torch.tensor([[0.7, 0.3], [0.0, 1.0]]))
    assert torch.allclose(x, torch.full((2, 1), 0.3))
    assert one_hot(torch.tensor([1]), 2).tolist() == [[0.0, 1.0]]
    m = _ready(BalancedMixUp(alpha=0.2), counts=(9, 1))
    torch.manual_seed(0)
    _, y = m.mixed(_batch(c=2))
    lam = m.epoch_logs()["lambdas"][0]
    assert torch.allclose(y, torch.tensor([[1 - lam, lam]] * 2))
    assert torch.allclose(y.sum(1), torch.ones(2))


def test_per_sample_lambda_mixes_each_row_with_its_own_weight():
    x, y = mix(torch.zeros(2, 3), torch.tensor([0, 0]), torch.ones(2, 3), torch.tensor([1, 1]),
               torch.tensor([0.25, 0.5]), num_classes=2)
    assert torch.allclose(x, torch.tensor([[0.75] * 3, [0.5] * 3]))
    assert torch.allclose(y, torch.tensor([[0.25, 0.75], [0.5, 0.5]]))


def test_soft_label_cross_entropy_against_its_formula():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])  # softmax rows [1/4, 3/4], [4/5, 1/5]
    q = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    want = -(0.9 * math.log(0.25) + 0.1 * math.log(0.75) + 0.5 * math.log(0.8) + 0.5 * math.log(0.2)) / 2
    assert float(L.CrossEntropy()(logits, q)) == pytest.approx(want, rel=1e-6)


def test_balanced_mixup_loss_is_soft_ce_on_the_mixed_batch(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    m = _ready(BalancedMixUp(alpha=0.1), counts=(5, 3, 1))
    monkeypatch.setattr(m, "draw", lambda n, device=None: torch.tensor(0.25))
    b = _batch()
    loss, _ = m.loss(model, b, 0)
    logp = model(0.25 * torch.ones(2, 3, 4, 4)).log_softmax(1)
    want = -(0.75 * logp[:, 0] + 0.25 * logp[:, 2]).mean()
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    with pytest.raises(ValueError, match="extra"):
        m.loss(model, {"image": b["image"], "label": b["label"]}, 0)


@pytest.mark.parametrize("name, kw, word", [
    ("balanced_mixup", {"alpha": 0}, "alpha"), ("balanced_mixup", {"alpha": "x"}, "alpha"),
    ("balanced_mixup", {"form": "eq2"}, "form"), ("balanced_mixup", {"lam_per": "step"}, "lam_per"),
    ("mixup", {"alpha": -1.0}, "alpha"), ("power", {"q": float("nan")}, "q"),
    ("balanced_mixup", {"beta": 1}, "balanced_mixup"),
])
def test_bad_method_parameters_name_the_parameter(name, kw, word):
    with pytest.raises(ValueError, match=word):
        build_method(name, **kw)


def _tiny_sets(n=120, seed=0):
    arrays = make_synthetic(n=n, size=12, seed=seed, num_classes=3, ratio=6)
    t = build_transform(train=False, size=12)
    return arrays, TorchImageSet(arrays, t, with_masks=False)


def test_fit_with_balanced_mixup_logs_every_lambda_and_draws_class_balanced_extra_batches(tmp_path):
    arrays, ds = _tiny_sets()
    m = build_method("balanced_mixup", alpha=0.3)
    seen = []
    orig = m.mixed

    def spy(batch):
        seen.append(batch["extra"]["label"].clone())
        return orig(batch)

    m.mixed = spy
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.01, select_metric=None, device="cpu")
    run = fit({"name": "tiny_cnn", "num_classes": 3, "width": 4}, m, ds, None, cfg, run_root=tmp_path,
              progress=False)
    steps = math.ceil(len(ds) / 16)
    assert [len(v) for v in run.history["lambdas"]] == [steps, steps]
    assert all(0 <= v <= 1 for v in sum(run.history["lambdas"], []))
    extra = torch.cat(seen).numpy()
    freq = np.bincount(extra, minlength=3) / len(extra)
    counts = arrays.class_counts() / len(arrays)
    assert abs(freq[2] - 1 / 3) < abs(counts[2] - 1 / 3)  # the rare class is over-sampled towards 1/3
    # cached: the same config returns the same history without retraining
    again = fit({"name": "tiny_cnn", "num_classes": 3, "width": 4}, build_method("balanced_mixup", alpha=0.3), ds,
                None, cfg, run_root=tmp_path, progress=False)
    assert again.key == run.key and again.history["lambdas"].tolist() == run.history["lambdas"].tolist()


def test_std_conv_standardises_each_filter():
    torch.manual_seed(0)
    conv = StdConv2d(2, 3, 3, padding=1, bias=False)
    x = torch.randn(1, 2, 5, 5)
    w = conv.weight.detach()
    ws = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / torch.sqrt(w.var(dim=(1, 2, 3), unbiased=False,
                                                                       keepdim=True) + 1e-5)
    assert torch.allclose(conv(x), torch.nn.functional.conv2d(x, ws, padding=1), atol=1e-5)
    assert torch.allclose(ws.flatten(1).mean(1), torch.zeros(3), atol=1e-6)


def test_resnext50_bit_has_group_norm_and_weight_standardisation_only():
    m = create_model("resnext50_bit", 5, small_input=True)
    mods = list(m.modules())
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in mods)
    convs = [x for x in mods if isinstance(x, torch.nn.Conv2d)]
    assert convs and all(isinstance(x, StdConv2d) for x in convs)
    assert any(isinstance(x, torch.nn.GroupNorm) and x.num_groups == 32 for x in mods)
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_predict_arrays_on_an_external_set_with_the_same_classes(tmp_path):
    arrays = make_synthetic(n=120, size=12, seed=0, num_classes=3, ratio=4)
    exp = Experiment(arrays, folds=2, image_size=12, train={"epochs": 1, "batch_size": 32, "select_metric": None},
                     device="cpu", run_root=tmp_path, progress=False, model={"width": 4})
    run = exp.train(0, "tiny_cnn", "ce")
    other = make_synthetic(n=60, size=16, seed=5, num_classes=3, ratio=4)
    p = exp.predict_arrays(run, other, tta="flip")
    assert p.shape == (60, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    wrong = make_synthetic(n=60, size=12, seed=5, num_classes=4, ratio=4)
    with pytest.raises(ValueError, match="same classes"):
        exp.predict_arrays(run, wrong)


# --------------------------------------------------------------------------- paper module and notebook
def test_paper_helpers_parse_backbones_and_subsample():
    from kitlib.papers import balanced_mixup as bm

    assert bm.parse_backbone("tiny_cnn@16") == ("tiny_cnn", {"width": 16})
    assert bm.parse_backbone("resnext50_bit") == ("resnext50_bit", {})
    assert bm.backbone_label("tiny_cnn@8") == "TinyCNN-w8"
    with pytest.raises(ValueError, match="width"):
        bm.parse_backbone("resnet18@4")
    arrays = make_synthetic(n=400, size=8, seed=0, num_classes=4, ratio=20)
    sub = bm.subsample(arrays, 100, seed=0)
    assert abs(len(sub) - 100) <= 4 and (sub.class_counts() >= 1).all()
    assert np.allclose(sub.class_counts() / len(sub), arrays.class_counts() / len(arrays), atol=0.03)
    grid = bm.method_grid(["rs", "ce"], [0.1], focal_gamma=1.0)
    assert grid == [("class-sampling", "rs", {}), ("instance-sampling", "ce", {}),
                    ("BalancedMixUp-a0.1", "balanced_mixup", {"alpha": 0.1, "form": "text", "lam_per": "batch"})]


@pytest.mark.parametrize("name, value", [("alphas", [0.1, 0.0]), ("mix_form", "eq2"), ("backbones", ["tiny_cnn"]),
                                         ("baselines", ["ldam"]), ("cb_beta", 1.0), ("dr_select", "kappa")])
def test_bad_notebook_parameters_name_the_parameter(name, value):
    from kitlib.params import ParameterError
    from kitlib.papers import balanced_mixup as bm
    from kitlib.reproduce import default_notebooks_dir, find_notebook, notebook_defaults

    values = notebook_defaults(find_notebook("balanced_mixup", default_notebooks_dir()))
    bm.PARAMETERS.check(values)  # the notebook's own defaults pass
    with pytest.raises(ParameterError, match=name):
        bm.PARAMETERS.check({**values, name: value})


def test_reproduce_balanced_mixup_smoke_writes_every_table_figure_and_claim(tmp_path):
    import json

    import pandas as pd

    from kitlib.claims import VERDICTS
    from kitlib.cli import main

    rc = main(["reproduce", "balanced_mixup", "--profile", "smoke", "--out", str(tmp_path), "--device", "cpu",
               "--no-progress", "-p", "epochs=1", "-p", "alphas=[0.1, 0.2]", "-p", "baselines=[rs, ce]",
               "-p", f"run_root={tmp_path / 'runs'}"])
    out = tmp_path / "smoke" / "balanced_mixup"
    assert rc == 0, (out / "run.json").read_text() if (out / "run.json").exists() else "no run.json"
    for t in ["dataset_statistics", "table1_ours", "table1_paper_vs_ours", "table2", "table3_ours",
              "table3_paper_vs_ours", "fig3_drawn_lambdas", "effects", "claims"]:
        assert (out / f"{t}.csv").stat().st_size > 0 and (out / f"{t}.md").stat().st_size > 0, t
    for f in ["fig1_class_histograms", "fig3_beta", "alpha_sensitivity_dr", "alpha_sensitivity_gi"]:
        assert (out / f"{f}.png").stat().st_size > 1000 and (out / f"{f}.pdf").stat().st_size > 1000, f
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 11 and set(claims["verdict"]) <= set(VERDICTS) and claims["claim_id"].is_unique
    t1 = pd.read_csv(out / "table1_ours.csv")
    assert len(t1) == 2 * 4 and {"quad-κ", "MCC", "Kendall-τ"} <= set(t1.columns)  # 2 backbones x 4 methods
    runs = pd.read_csv(out / "table1_runs.csv")
    assert set(runs["part"]) == {"test", "external"}  # Table 2: the same models on the external set
    drawn = pd.read_csv(out / "fig3_drawn_lambdas.csv")
    assert set(drawn["alpha"]) == {0.1, 0.2} and (drawn["count"] > 0).all()
    side = pd.read_csv(out / "table1_paper_vs_ours.csv", keep_default_na=False)
    assert (side["diff"] == "").all()  # synthetic data and TinyCNNs: no diff against the paper's numbers
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
