"""kitlib.metrics: values checked against hand computations on tiny arrays."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import (
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    matthews_corrcoef,
    recall_score,
    roc_auc_score,
)

from kitlib import metrics as M

# Hand-written 3x3 confusion (rows = true class, columns = predicted class):
#            pred0 pred1 pred2
CONF = np.array([[3, 1, 0],   # class 0: 4 samples, recall 3/4
                 [1, 2, 0],   # class 1: 3 samples, recall 2/3
                 [0, 1, 4]])  # class 2: 5 samples, recall 4/5


def _from_confusion(conf, p_hit=0.7):
    """y_true, probs whose argmax realises `conf` exactly."""
    C = conf.shape[0]
    y_true, y_pred = [], []
    for t in range(C):
        for p in range(C):
            y_true += [t] * conf[t, p]
            y_pred += [p] * conf[t, p]
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    probs = np.full((len(y_true), C), (1 - p_hit) / (C - 1))
    probs[np.arange(len(y_true)), y_pred] = p_hit
    return y_true, y_pred, probs


def test_per_class_recall_from_hand_confusion():
    y, yp, _ = _from_confusion(CONF)
    np.testing.assert_allclose(M.per_class_recall(y, yp, 3), [3 / 4, 2 / 3, 4 / 5])
    np.testing.assert_array_equal(M._confusion(y, yp, 3), CONF)


def test_per_class_recall_matches_sklearn_and_nan_for_absent_class():
    rng = np.random.default_rng(1)
    y, yp = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    np.testing.assert_array_equal(M._confusion(y, yp, 5), confusion_matrix(y, yp, labels=range(5)))
    np.testing.assert_allclose(M.per_class_recall(y, yp, 5), recall_score(y, yp, average=None))
    y = np.array([0, 0, 1, 1]); yp = np.array([0, 2, 1, 0])
    rec = M.per_class_recall(y, yp, 3)
    np.testing.assert_allclose(rec[:2], [0.5, 0.5])
    assert np.isnan(rec[2])


def test_evaluate_hand_values():
    y, _, probs = _from_confusion(CONF)
    r = M.evaluate(y, probs, train_counts=[100, 50, 5])
    assert r["acc"] == pytest.approx(9 / 12)
    assert r["mcr"] == pytest.approx((3 / 4 + 2 / 3 + 4 / 5) / 3)
    assert r["scr"] == pytest.approx(4 / 5)  # class 2 has the fewest training samples
    # precisions 3/4, 2/4, 4/4 -> F1 = 0.75, 4/7, 8/9
    assert r["macro_f1"] == pytest.approx((0.75 + 4 / 7 + 8 / 9) / 3)
    np.testing.assert_allclose([r["f1_0"], r["f1_1"], r["f1_2"]], [0.75, 4 / 7, 8 / 9])
    # multiclass MCC: (c*s - sum p_k t_k) / sqrt((s^2 - sum p^2)(s^2 - sum t^2)),
    # c = 9 correct, s = 12, t = (4, 3, 5), p = (4, 4, 4)
    assert r["mcc"] == pytest.approx(60 / np.sqrt(96 * 94))
    # quadratic kappa: 1 - sum w*O / sum w*E with w = (i-j)^2, E = outer(t, p) / s
    # sum w*O = 3 (three errors one grade apart); sum w*E = 16/12*5 + 1*2 + 20/12*5 = 17
    assert r["kappa_quadratic"] == pytest.approx(1 - 3 / 17)
    assert [r[f"recall_{c}"] for c in range(3)] == pytest.approx([3 / 4, 2 / 3, 4 / 5])
    # library agreement
    yp = probs.argmax(1)
    assert r["mcr"] == pytest.approx(balanced_accuracy_score(y, yp))
    assert r["mcc"] == pytest.approx(matthews_corrcoef(y, yp))
    assert r["kappa_quadratic"] == pytest.approx(cohen_kappa_score(y, yp, weights="quadratic"))
    assert r["kendall_tau"] == pytest.approx(stats.kendalltau(y, yp).statistic)


def test_scr_uses_training_counts_not_test_counts():
    y, _, probs = _from_confusion(CONF)
    # test counts (4, 3, 5): smallest test class is 1 (recall 2/3)
    assert M.evaluate(y, probs)["scr"] == pytest.approx(2 / 3)
    # training counts make class 0 the smallest (recall 3/4), class 2 in the other case
    assert M.evaluate(y, probs, train_counts=[5, 50, 100])["scr"] == pytest.approx(3 / 4)
    assert M.evaluate(y, probs, train_counts=[100, 50, 5])["scr"] == pytest.approx(4 / 5)


def test_kendall_tau_by_hand():
    # pairs (0,1) and (0,2) concordant, (1,2) discordant -> tau = (2 - 1) / 3
    y = np.array([0, 1, 2]); yp = np.array([0, 2, 1])
    probs = np.eye(3)[yp]
    r = M.evaluate(y, probs)
    assert r["kendall_tau"] == pytest.approx(1 / 3)
    assert r["acc"] == pytest.approx(1 / 3)


def test_mcr_ignores_class_absent_from_test():
    y = np.array([0, 0, 1, 1]); yp = np.array([0, 2, 1, 1])
    r = M.evaluate(y, np.eye(3)[yp] * 0.7 + 0.1)
    assert r["mcr"] == pytest.approx((0.5 + 1.0) / 2)
    assert np.isnan(r["recall_2"]) and np.isnan(r["f1_2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert r["mcr"] == pytest.approx(balanced_accuracy_score(y, yp))


def test_auc_binary_by_hand():
    # positives score 0.4, 0.8; negatives 0.1, 0.6: 3 of 4 pairs ranked right
    y = np.array([0, 0, 1, 1]); p1 = np.array([0.1, 0.6, 0.4, 0.8])
    probs = np.stack([1 - p1, p1], 1)
    assert M.evaluate(y, probs)["auc_ovr"] == pytest.approx(0.75)


def test_auc_ovr_all_present_equals_sklearn():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 60)
    y = np.r_[np.arange(4), rng.integers(0, 4, 56)]
    want = roc_auc_score(y, probs, multi_class="ovr", labels=range(4))
    assert M.auc_ovr(y, probs) == pytest.approx(want)


def test_auc_ovr_with_missing_class_renormalises():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 80)
    y = rng.choice([0, 1, 3], 80)  # class 2 never in the test set
    present = [0, 1, 3]
    sub = probs[:, present] / probs[:, present].sum(1, keepdims=True)
    by_hand = np.mean([roc_auc_score(y == c, sub[:, k]) for k, c in enumerate(present)])
    assert M.evaluate(y, probs)["auc_ovr"] == pytest.approx(by_hand)
    unnormalised = np.mean([roc_auc_score(y == c, probs[:, c]) for c in present])
    assert by_hand != pytest.approx(unnormalised)  # the renormalisation matters here
    # two classes present out of three -> binary AUC on the renormalised pair
    y2 = rng.choice([0, 2], 80); p3 = probs[:, :3] / probs[:, :3].sum(1, keepdims=True)
    s = p3[:, 2] / (p3[:, 0] + p3[:, 2])
    assert M.auc_ovr(y2, p3) == pytest.approx(roc_auc_score(y2 == 2, s))
    assert np.isnan(M.auc_ovr(np.zeros(5, int), p3[:5]))


def test_class_groups_by_count_and_group_metrics():
    g = M.class_groups_by_count([100, 50, 5, 20, 7], n_major=2, n_minor=2)
    assert g == {"major": [0, 1], "middle": [3], "minor": [2, 4]}
    assert M.class_groups_by_count([10, 10, 5], 1, 1) == {"major": [0], "middle": [1], "minor": [2]}
    assert M.class_groups_by_count([3, 9], 1, 1) == {"major": [1], "minor": [0]}
    with pytest.raises(ValueError, match="exceeds"):
        M.class_groups_by_count([1, 2, 3], 2, 2)
    y, _, probs = _from_confusion(CONF)
    r = M.evaluate(y, probs, class_groups={"big": [0, 1], "small": [2]})
    assert r["recall_big"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert r["recall_small"] == pytest.approx(4 / 5)
    assert r["f1_big"] == pytest.approx((0.75 + 4 / 7) / 2)
    with pytest.raises(ValueError, match="outside"):
        M.evaluate(y, probs, class_groups={"x": [3]})


def test_evaluate_rejects_bad_input():
    y, _, probs = _from_confusion(CONF)
    with pytest.raises(ValueError, match="softmax"):
        M.evaluate(y, probs * 5)
    with pytest.raises(ValueError, match="outside"):
        M.evaluate(np.r_[y[:-1], 3], probs)
    with pytest.raises(ValueError, match="train_counts"):
        M.evaluate(y, probs, train_counts=[1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        M.evaluate(y, probs, num_classes=4)
    with pytest.raises(ValueError, match="rows"):
        M.evaluate(y[:-1], probs)


def test_aggregate_mean_std_median():
    rows = [
        {"method": "ce", "fold": 0, "mcr": 0.8, "scr": 0.1},
        {"method": "ce", "fold": 1, "mcr": 0.9, "scr": np.nan},
        {"method": "ce", "fold": 2, "mcr": 1.0, "scr": 0.3},
        {"method": "rw", "fold": 0, "mcr": 0.5, "scr": 0.2},
    ]
    out = M.aggregate(rows, by="method", metrics=["mcr", "scr"])
    assert list(out.columns) == ["method", "metric", "mean", "std", "median", "n"]
    assert list(zip(out["method"], out["metric"])) == [
        ("ce", "mcr"), ("ce", "scr"), ("rw", "mcr"), ("rw", "scr")]
    ce_mcr = out.iloc[0]
    assert ce_mcr["mean"] == pytest.approx(0.9)
    assert ce_mcr["std"] == pytest.approx(0.1)  # sample std, ddof=1
    assert ce_mcr["median"] == pytest.approx(0.9) and ce_mcr["n"] == 3
    ce_scr = out.iloc[1]  # NaN skipped
    assert ce_scr["mean"] == pytest.approx(0.2) and ce_scr["n"] == 2
    assert ce_scr["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert np.isnan(out.iloc[2]["std"])  # a single run has no spread
    # default metrics: every numeric column not in by (fold included, so callers list metrics)
    whole = M.aggregate(pd.DataFrame(rows).drop(columns=["method"]))
    assert list(whole["metric"]) == ["fold", "mcr", "scr"]
    assert whole.set_index("metric").loc["mcr", "median"] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="not numeric"):
        M.aggregate(rows)


def test_format_mean_std():
    assert M.format_mean_std(0.84543, 0.0086) == "84.54 (0.86)"
    assert M.format_mean_std(84.546, 0.864, scale=1, digits=1) == "84.5 (0.9)"
    assert M.format_mean_std(0.5, float("nan")) == "50.00"
    assert M.format_mean_std(0.5) == "50.00"
    assert M.format_mean_std(float("nan"), 0.1) == ""


def _toy(n=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)); logits[np.arange(n), y] += 1.0
    p = np.exp(logits); return y, p / p.sum(1, keepdims=True)


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    y, p = _toy()
    point = M.evaluate(y, p)["mcr"]
    lo, hi = M.bootstrap_ci(y, p, "mcr", n_boot=300, seed=3)
    assert lo < point < hi and hi - lo < 0.3
    assert M.bootstrap_ci(y, p, "mcr", n_boot=300, seed=3) == (lo, hi)
    assert M.bootstrap_ci(y, p, "mcr", n_boot=300, seed=4) != (lo, hi)
    narrower = M.bootstrap_ci(y, p, "mcr", n_boot=300, seed=3, alpha=0.5)
    assert lo <= narrower[0] <= narrower[1] <= hi


def test_bootstrap_ci_is_percentile_bootstrap_over_samples():
    y, p = _toy(60)
    rng = np.random.default_rng(7)
    accs = []
    for _ in range(50):
        idx = rng.integers(0, 60, 60)
        accs.append(np.mean(p[idx].argmax(1) == y[idx]))
    want = np.percentile(accs, [2.5, 97.5])
    np.testing.assert_allclose(M.bootstrap_ci(y, p, "acc", n_boot=50, seed=7), want)
    lo, hi = M.bootstrap_ci(y, p, "recall_1", n_boot=50, seed=7)
    assert lo <= M.evaluate(y, p)["recall_1"] <= hi
    lo, hi = M.bootstrap_ci(y, p, "f1_2", n_boot=20, seed=7)
    assert 0 <= lo <= hi <= 1
    with pytest.raises(ValueError, match="unknown metric"):
        M.bootstrap_ci(y, p, "nope", n_boot=5)


def test_bootstrap_mean_ci_of_paired_differences():
    assert M.bootstrap_mean_ci([1.0, 2.0]) == (1.0, 2.0)  # 2 values: from the smaller to the larger
    lo, hi = M.bootstrap_mean_ci([-1.0, 2.0])
    assert lo < 0 < hi
    lo, hi = M.bootstrap_mean_ci([1, 2, 3, 4, 5], seed=3)
    assert 1 < lo < 3 < hi < 5 and (lo, hi) == M.bootstrap_mean_ci([1, 2, 3, 4, 5], seed=3)
    assert all(math.isnan(v) for v in M.bootstrap_mean_ci([0.5]))
