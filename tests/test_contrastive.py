"""Paper 002 (contrastive learning against imbalance): Eq. 1, the oversampling by copies, the SupCon method's
two stages, the paper module's pieces and the notebook end to end at the smoke profile."""
import math

import numpy as np
import pytest
import torch

from kitlib.losses import SupConLoss
from kitlib.methods import build_method
from kitlib.samplers import ClassBalancedSampler, OversampleSampler, build_sampler


# ---------------------------------------------------------------- Eq. 1 by hand
def test_eq1_by_hand_on_four_points_with_an_anchor_without_positive():
    """z: three unit vectors in 2-D; labels 0, 0, 1 plus a class-2 point (no positive: skipped, no NaN)."""
    s = math.sqrt(0.5)
    z = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 2])
    tau = 0.5
    e = math.exp
    # anchor 0: positive 1 (z.z = s); all k != 0: s, 0, -1
    l0 = -(s / tau - math.log(e(s / tau) + e(0) + e(-1 / tau)))
    # anchor 1: positive 0 (s); k != 1: s (to 0), s (to 2), -s (to 3)
    l1 = -(s / tau - math.log(2 * e(s / tau) + e(-s / tau)))
    # anchors 2 and 3 have no positive in the batch: skipped; mean over the two anchors that have one
    want = (l0 + l1) / 2
    assert float(SupConLoss(temperature=tau)(z, y)) == pytest.approx(want, rel=1e-12)
    # 1/(N_ci - 1) normalisation: two positives average, not sum
    y2 = torch.tensor([0, 0, 0, 2])
    l0 = -((s / tau + 0.0) - 2 * math.log(e(s / tau) + e(0) + e(-1 / tau))) / 2
    l1 = -((s / tau + s / tau) - 2 * math.log(2 * e(s / tau) + e(-s / tau))) / 2
    l2 = -((0.0 + s / tau) - 2 * math.log(e(0) + e(s / tau) + e(0))) / 2
    assert float(SupConLoss(temperature=tau)(z, y2)) == pytest.approx((l0 + l1 + l2) / 3, rel=1e-12)


# ---------------------------------------------------------------- resample = copies
def test_oversampled_set_has_equal_counts_and_copies_evenly():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 3)
    s = OversampleSampler(labels, seed=0)
    assert len(s) == 3 * 10
    for epoch in (0, 1, 5):
        s.set_epoch(epoch)
        idx = np.array(list(s))
        assert np.bincount(labels[idx]).tolist() == [10, 10, 10]
        per_item = np.bincount(idx, minlength=len(labels))
        assert (per_item[:10] == 1).all()                       # the largest class is not copied
        assert sorted(per_item[10:14].tolist()) == [2, 2, 3, 3]  # 10 = 2 x 4 + 2 extra items, each once
        assert sorted(per_item[14:].tolist()) == [3, 3, 4]       # 10 = 3 x 3 + 1
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert first != list(s) and sorted(first) == sorted(s)      # new order, same extended set
    assert list(OversampleSampler(labels, seed=0)) == first     # deterministic per seed
    # the class-balanced sampler only matches the counts in expectation
    cb = np.bincount(labels[list(ClassBalancedSampler(labels, seed=0))], minlength=3)
    assert cb.sum() == len(labels)
    with pytest.raises(ValueError, match="num_samples"):
        build_sampler("oversample", labels, num_samples=5)


def test_supcon_method_parameters_are_checked_by_name():
    for kw, name in ((dict(temperature=0), "temperature"), (dict(base_temperature=-1.0), "base_temperature"),
                     (dict(proj_dim=0), "proj_dim"), (dict(hidden_dim=2.5), "hidden_dim"),
                     (dict(sampler="balanced"), "sampler")):
        with pytest.raises(ValueError, match=name):
            build_method("supcon", **kw)


# ---------------------------------------------------------------- the two stages
def test_stage2_drops_the_projection_head_and_keeps_the_backbone_frozen(tmp_path):
    """supcon->crs: stage 1 trains a projection head; stage 2 has none, and its backbone (weights and
    batch-norm statistics) is stage 1's, unchanged, while a new linear head is trained (Section 3, Eq. 2)."""
    from kitlib.data import load
    from kitlib.experiment import Experiment

    arr = load("synthetic", n=120, num_classes=3, ratio=3, size=8, seed=0)
    exp = Experiment(arr, protocol="ratio", image_size=8, model={"width": 4}, progress=False, run_root=tmp_path,
                     device="cpu", train={"epochs": 1, "batch_size": 16, "select_metric": None})
    params = {"temperature": 0.1, "proj_dim": 8, "sampler": "oversample"}
    s1 = exp.train(0, "tiny_cnn", "supcon", params, seed=0)
    s2 = exp.train(0, "tiny_cnn", "supcon->crs", params, seed=0,
                   stage2={"epochs": 2, "lr": 0.5, "batch_size": 16, "select": "last", "select_metric": None})
    assert s1.method["name"] == "supcon" and len(s1.extras) == 1          # the projection MLP
    assert s2.method["name"] == "crs" and s2.extras == []                  # dropped at stage 2
    assert not any("projection" in k for k in s2.model.state_dict())
    b1, b2 = s1.model.backbone.state_dict(), s2.model.backbone.state_dict()
    assert b1.keys() == b2.keys() and any("running_mean" in k for k in b1)
    for k in b1:
        assert torch.equal(b1[k], b2[k]), k                                 # frozen, BN statistics too
    assert not all(torch.equal(a, b) for a, b in zip(s1.model.head.state_dict().values(),
                                                     s2.model.head.state_dict().values()))
    assert s2.model.head_kind == "linear"


# ---------------------------------------------------------------- the paper module
def test_recipes_rows_and_update_matched_epochs():
    from kitlib.data import load
    from kitlib.experiment import Experiment
    from kitlib.papers import contrastive as cl

    r = cl.recipes(0.05, None, 128, "oversample")
    assert tuple(r) == cl.ROWS
    assert r["CL"].method == r["CL+RS"].method == "supcon->crs"
    assert r["CL"].params["sampler"] == "instance" and r["CL+RS"].params["sampler"] == "oversample"
    assert r["CE+RS"].method == "ce_os" and r["CE+RS"].resample and not r["CE"].resample
    assert r["CL"].params["temperature"] == 0.05 and r["FL"].params == {"gamma": 2.0}
    arr = load("synthetic", n=300, num_classes=3, ratio=10, size=8, seed=0)
    exp = Experiment(arr, protocol="ratio", image_size=8, model={"width": 4}, progress=False)
    c = exp.train_counts(0)
    # Sect. 4.3: same number of updates: epochs x N / (C x n_max)
    assert cl._updates_matched_epochs(exp, 100) == round(100 * c.sum() / (3 * c.max()))
    assert cl._tau_key(1.0) == "1.0" and cl._tau_key(0.05) == "0.05"
    groups = cl.class_groups(exp, 1, 1)
    order = np.argsort(-c, kind="stable")
    assert groups["major"] == [order[0]] and groups["minor"] == [order[-1]] and groups["middle"] == [order[1]]


@pytest.mark.parametrize("name, value", [("tau", 0.0), ("stage1_resample", "copies"), ("seeds", []),
                                         ("stage2_select", "test"), ("temperatures", [0.05, -1.0]),
                                         ("backbone", "vgg99"), ("base_temperature", 0.0)])
def test_bad_notebook_parameters_name_the_parameter(name, value):
    from kitlib.params import ParameterError
    from kitlib.papers import contrastive as cl
    from kitlib.reproduce import default_notebooks_dir, find_notebook, notebook_defaults

    values = notebook_defaults(find_notebook("contrastive", default_notebooks_dir()))
    cl.PARAMETERS.check(values)  # the notebook's own defaults pass
    with pytest.raises(ParameterError, match=name):
        cl.PARAMETERS.check({**values, name: value})


def test_reproduce_contrastive_smoke_writes_every_table_figure_and_claim(tmp_path):
    import json

    import pandas as pd

    from kitlib.claims import VERDICTS
    from kitlib.cli import main

    rc = main(["reproduce", "contrastive", "--profile", "smoke", "--out", str(tmp_path), "--device", "cpu",
               "--no-progress", "-p", "seeds=[0, 1]", "-p", "epochs=1", "-p", "stage2_epochs=1",
               "-p", "tsne_points=60", "-p", f"run_root={tmp_path / 'runs'}"])
    out = tmp_path / "smoke" / "contrastive"
    assert rc == 0, (out / "run.json").read_text() if (out / "run.json").exists() else "no run.json"
    for t in ["dataset_statistics", "table1_ours", "table1_paper_vs_ours", "table2_ours", "table2_paper_vs_ours",
              "fig3_per_class_f1_ISIC2018", "table3_groups", "table3_temperature", "silhouette", "effects", "claims"]:
        assert (out / f"{t}.csv").stat().st_size > 0 and (out / f"{t}.md").stat().st_size > 0, t
    for f in ["fig1_class_histogram", "fig3_per_class_f1_ISIC2018", "fig3_per_class_f1_APTOS2019",
              "tsne_features_ISIC2018", "tsne_features_APTOS2019"]:
        assert (out / f"{f}.png").stat().st_size > 1000 and (out / f"{f}.pdf").stat().st_size > 1000, f
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 8 and set(claims["verdict"]) <= set(VERDICTS) and claims["claim_id"].is_unique
    t1 = pd.read_csv(out / "table1_ours.csv")
    assert set(t1["row"]) == set(("CE", "FL", "LDAM", "CL", "CE+RS", "CL+RS"))
    side = pd.read_csv(out / "table1_paper_vs_ours.csv", keep_default_na=False)
    assert (side["diff"] == "").all()  # synthetic data and a TinyCNN: no diff against the paper's numbers
    t3 = pd.read_csv(out / "table3_runs.csv")
    assert set(t3["tau"]) == {0.05, 1.0} and len(t3) == 2 * 2 * 2  # 2 taus x (CL, CL+RS) x 2 seeds
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
