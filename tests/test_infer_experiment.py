"""Inference (plain and flip TTA) and the Experiment layer (protocol splits, cached runs, statistics)."""
import numpy as np
import pytest
import torch

from kitlib.data import make_synthetic
from kitlib.experiment import Experiment, make_splits
from kitlib.infer import predict
from kitlib.models import create_model


def test_predict_plain_and_flip_tta():
    torch.manual_seed(0)
    m = create_model("tiny_cnn", 3, width=8).eval()
    x = torch.randn(10, 3, 16, 16)
    p = predict(m, x, batch_size=4)
    assert p.shape == (10, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        want = 0.5 * (m(x).softmax(1) + m(x.flip(-1)).softmax(1))
    assert np.allclose(predict(m, x, tta="flip"), want.numpy(), atol=1e-6)
    assert not np.allclose(predict(m, x, tta="flip"), p, atol=1e-4)
    with pytest.raises(ValueError, match="tta"):
        predict(m, x, tta="rotate")


def test_protocol_splits_are_disjoint_and_cover():
    arr = make_synthetic(n=400, num_classes=4, ratio=5, size=8, seed=0)
    folds = make_splits(arr, "kfold", folds=4, seed=0, val_frac=0.1)
    tests = np.concatenate([f.test for f in folds])
    assert len(folds) == 4 and np.array_equal(np.sort(tests), np.arange(len(arr)))
    for f in folds:
        assert not set(f.train) & set(f.val) and not set(f.train) & set(f.test) and not set(f.val) & set(f.test)
        assert len(f.train) + len(f.val) + len(f.test) == len(arr)
    (r,) = make_splits(arr, "ratio", ratios=(0.75, 0.05, 0.2), seed=0)
    assert abs(len(r.test) / len(arr) - 0.2) < 0.02 and abs(len(r.val) / len(arr) - 0.05) < 0.02
    arr.split = np.array(["train"] * 300 + ["test"] * 100)
    (o,) = make_splits(arr, "official", seed=0)
    assert np.array_equal(o.test, np.arange(300, 400)) and len(o.val) > 0
    with pytest.raises(ValueError, match="unknown protocol"):
        make_splits(arr, "bootstrap")


def test_experiment_trains_once_and_reports_statistics(tmp_path):
    arr = make_synthetic(n=300, num_classes=3, ratio=6, size=16, seed=0)
    exp = Experiment(arr, folds=2, image_size=16, model={"width": 8}, run_root=tmp_path, progress=False,
                     train={"epochs": 1, "lr": 0.05, "select_metric": None})
    run = exp.train(0, "tiny_cnn", "ce")
    assert exp.train(0, "tiny_cnn", "ce").key == run.key
    two = exp.train(0, "tiny_cnn", "ce->crw")
    assert two.config["init"] == run.key
    probs = exp.predict(run, 0)
    assert probs.shape == (len(exp.splits[0].test), 3)
    mets = exp.evaluate(probs, 0)
    assert 0 <= mets["mcr"] <= 1 and "scr" in mets
    st = exp.statistics().iloc[0]
    counts = arr.class_counts()
    assert st["smallest"] == counts.min() and st["largest"] == counts.max() and st["classes"] == 3
    assert exp.images(0).shape == (len(exp.splits[0].test), 3, 16, 16)


def test_experiment_stage2_settings_reach_the_second_stage(tmp_path):
    arr = make_synthetic(n=200, num_classes=3, ratio=4, size=16, seed=0)
    exp = Experiment(arr, folds=2, image_size=16, model={"width": 8}, run_root=tmp_path, progress=False,
                     train={"epochs": 1, "lr": 0.05, "select_metric": None},
                     stage2={"epochs": 2, "lr": 0.5, "min_lr": 1e-4, "select": "last"})
    two = exp.train(0, "tiny_cnn", "ce->crs", stage2={"batch_size": 64})
    t = two.config["train"]
    assert (t["epochs"], t["lr"], t["min_lr"], t["select"], t["batch_size"]) == (2, 0.5, 1e-4, "last", 64)
    assert t["freeze_backbone"] and len(two.history) == 2 and two.best_epoch == 1
    stage1 = exp.train(0, "tiny_cnn", "ce")
    assert two.config["init"] == stage1.key and stage1.config["train"]["epochs"] == 1
    with pytest.raises(ValueError, match="stage2 settings given for the one-stage method 'ce'"):
        exp.train(0, "tiny_cnn", "ce", stage2={"lr": 1.0})
    with pytest.raises(ValueError, match="TrainConfig.lr"):
        exp.train(0, "tiny_cnn", "ce->crw", stage2={"lr": -1.0})
