"""Classification metrics for imbalanced test sets, and their aggregation over folds / seeds.

Plain NumPy in, plain Python floats out. Everything is computed with scikit-learn / SciPy; this
module only fixes the conventions the five papers need:

* ``y_true``: int array ``(N,)`` of class ids in ``[0, C)``.
* ``probs``: float array ``(N, C)`` of class probabilities (rows sum to 1; apply a softmax to
  logits first). The prediction is ``probs.argmax(1)``.
* Every metric is a fraction in ``[0, 1]`` (``mcc``, ``kappa_quadratic`` and ``kendall_tau`` in
  ``[-1, 1]``); scale by 100 when printing percentages (:func:`format_mean_std` does).
* A class absent from ``y_true`` has no recall: its ``recall_<c>`` / ``f1_<c>`` is NaN, and it is
  left out of ``mcr`` and of the group means (this is what ``balanced_accuracy_score`` does).
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import (
    cohen_kappa_score,
    f1_score,
    matthews_corrcoef,
    roc_auc_score,
)

__all__ = [
    "per_class_recall",
    "per_class_f1",
    "auc_ovr",
    "evaluate",
    "class_groups_by_count",
    "aggregate",
    "format_mean_std",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "at_chance",
    "AT_CHANCE",
    "BASE_METRICS",
]

# --------------------------------------------------------------------------------------------
# input checks


def _check_labels(y_true, num_classes: int, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = sorted(set(y[(y < 0) | (y >= num_classes)].tolist()))[:5]
        raise ValueError(
            f"{name} holds class ids {bad} outside [0, {num_classes}); "
            f"pass num_classes / probs with one column per class"
        )
    return y


def _check_probs(probs, n: int, num_classes: int | None) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (N, C), got shape {p.shape}")
    if p.shape[0] != n:
        raise ValueError(f"probs has {p.shape[0]} rows but y_true has {n} labels")
    if num_classes is not None and p.shape[1] != num_classes:
        raise ValueError(f"probs has {p.shape[1]} columns but num_classes={num_classes}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs holds NaN or inf values")
    if p.size and (p.min() < -1e-6 or not np.allclose(p.sum(1), 1.0, atol=1e-3)):
        raise ValueError(
            "probs rows must be probabilities summing to 1 (got logits? apply a softmax first)"
        )
    return p


def _check_counts(train_counts, num_classes: int) -> np.ndarray:
    c = np.asarray(train_counts, dtype=np.float64).ravel()
    if c.shape != (num_classes,):
        raise ValueError(
            f"train_counts must have one entry per class ({num_classes}), got {c.shape[0]}"
        )
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("train_counts must be finite and non-negative")
    return c


# --------------------------------------------------------------------------------------------
# per-class numbers


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts, rows = true class, columns = predicted class.

    Same matrix as ``sklearn.metrics.confusion_matrix(labels=range(C))`` (the tests check it),
    ~400x faster on small arrays, which matters inside :func:`bootstrap_ci`.
    """
    flat = y_true * num_classes + y_pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_recall(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Recall of every class, ``(C,)`` floats in [0, 1]; NaN for a class absent from ``y_true``.

    recall_c = #(y_true == c and y_pred == c) / #(y_true == c), read off the confusion matrix
    (rows = true class), i.e. the diagonal over the row sums.
    """
    y_true = _check_labels(y_true, num_classes)
    y_pred = _check_labels(y_pred, num_classes, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    cm = _confusion(y_true, y_pred, num_classes)
    support = cm.sum(1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.diag(cm) / support
    rec[support == 0] = np.nan
    return rec


def per_class_f1(y_true, y_pred, num_classes: int) -> np.ndarray:
    """F1 of every class, ``(C,)``; NaN for a class absent from ``y_true``.

    A class present in ``y_true`` but never predicted has F1 = 0.
    """
    y_true = _check_labels(y_true, num_classes)
    y_pred = _check_labels(y_pred, num_classes, "y_pred")
    f1 = f1_score(
        y_true, y_pred, labels=np.arange(num_classes), average=None, zero_division=0
    ).astype(np.float64)
    f1[np.bincount(y_true, minlength=num_classes) == 0] = np.nan
    return f1


def auc_ovr(y_true, probs) -> float:
    """Macro one-vs-rest ROC AUC, robust to classes missing from ``y_true``.

    ``roc_auc_score(multi_class="ovr", labels=range(C))`` is undefined when a class has no test
    sample (an error or NaN, depending on the scikit-learn version). As in the
    Balanced-MixUp code, the probabilities are restricted to the K classes present in ``y_true``
    and renormalised over them (rows whose mass on those classes is 0 become uniform), then the
    macro OvR AUC over those K classes is returned (binary AUC when K == 2). NaN if K < 2.
    """
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    sub = p[:, present]
    mass = sub.sum(1, keepdims=True)
    sub = np.where(mass > 0, sub / np.where(mass > 0, mass, 1.0), 1.0 / present.size)
    if present.size == 2:
        return float(roc_auc_score(y == present[1], sub[:, 1]))
    return float(
        roc_auc_score(y, sub, multi_class="ovr", average="macro", labels=present)
    )


# --------------------------------------------------------------------------------------------
# scalar metrics: fn(y_true, y_pred, probs, C, train_counts) -> float


def _acc(y, yp, p, C, tc):
    return float(np.mean(y == yp)) if y.size else float("nan")


def _mcr(y, yp, p, C, tc):
    # equals sklearn.metrics.balanced_accuracy_score (mean recall over classes present)
    rec = per_class_recall(y, yp, C)
    return float(np.nanmean(rec)) if np.any(~np.isnan(rec)) else float("nan")


def _scr(y, yp, p, C, tc):
    # recall of the smallest class: fewest *training* samples (paper 000); ties -> lowest id
    rec = per_class_recall(y, yp, C)
    if tc is not None:
        return float(rec[int(np.argmin(tc))])
    test_counts = np.bincount(y, minlength=C).astype(np.float64)
    test_counts[test_counts == 0] = np.inf  # only classes present in the test set
    return float(rec[int(np.argmin(test_counts))]) if y.size else float("nan")


def _macro_f1(y, yp, p, C, tc):
    return float(f1_score(y, yp, labels=np.arange(C), average="macro", zero_division=0))


def _mcc(y, yp, p, C, tc):
    return float(matthews_corrcoef(y, yp))


def _kappa(y, yp, p, C, tc):
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(y, yp, labels=np.arange(C), weights="quadratic"))


def _kendall(y, yp, p, C, tc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input -> NaN with a warning
        return float(stats.kendalltau(y, yp).statistic)


def _auc(y, yp, p, C, tc):
    return auc_ovr(y, p)


BASE_METRICS: dict[str, Callable] = {
    "acc": _acc,
    "mcr": _mcr,
    "scr": _scr,
    "macro_f1": _macro_f1,
    "mcc": _mcc,
    "kappa_quadratic": _kappa,
    "kendall_tau": _kendall,
    "auc_ovr": _auc,
}
"""Names and functions of the scalar metrics :func:`evaluate` always returns."""


def _check_groups(class_groups: Mapping[str, Sequence[int]], num_classes: int) -> dict:
    out = {}
    for name, ids in class_groups.items():
        name = str(name)
        if name.isdigit():
            raise ValueError(
                f"class group name {name!r} would clash with recall_<class id>; rename it"
            )
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError(f"class group {name!r} is empty")
        bad = [i for i in ids if not 0 <= i < num_classes]
        if bad:
            raise ValueError(f"class group {name!r} holds class ids {bad} outside [0, {num_classes})")
        out[name] = ids
    return out


def evaluate(
    y_true,
    probs,
    train_counts=None,
    class_groups: Mapping[str, Sequence[int]] | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """All metrics of the five papers for one test set.

    Parameters
    ----------
    y_true : (N,) int class ids.
    probs : (N, C) class probabilities; the prediction is ``probs.argmax(1)``.
    train_counts : (C,) number of *training* samples per class. ``scr`` is the recall of the
        class with the fewest training samples (ties: lowest class id). Without it, ``scr``
        falls back to the class with the fewest *test* samples among those present; pass the
        training counts to follow paper 000.
    class_groups : dict name -> class ids (e.g. from :func:`class_groups_by_count`); adds
        ``recall_<name>`` and ``f1_<name>``, the means of the per-class recall / F1 over the
        group's classes present in ``y_true``.
    num_classes : C; checked against ``probs.shape[1]`` when given.

    Returns
    -------
    dict of floats (fractions, not percent): ``acc``; ``mcr`` (mean class recall = balanced
    accuracy over classes present); ``scr``; ``macro_f1`` (``f1_score(average="macro",
    labels=range(C))``: a class absent from both y_true and y_pred counts as 0); ``mcc``;
    ``kappa_quadratic``; ``kendall_tau`` (``scipy.stats.kendalltau(y_true, y_pred)``);
    ``auc_ovr`` (see :func:`auc_ovr`); ``recall_<c>`` and ``f1_<c>`` for c in 0..C-1 (NaN when
    c is absent from y_true); ``recall_<name>`` / ``f1_<name>`` per class group. Undefined
    values (e.g. kappa with a single class) are NaN.
    """
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (N, C), got shape {p.shape}")
    C = int(p.shape[1]) if num_classes is None else int(num_classes)
    y = _check_labels(y_true, C)
    p = _check_probs(p, y.shape[0], C)
    if y.size == 0:
        raise ValueError("y_true is empty: nothing to evaluate")
    tc = None if train_counts is None else _check_counts(train_counts, C)
    groups = {} if class_groups is None else _check_groups(class_groups, C)
    yp = p.argmax(1)

    out = {name: fn(y, yp, p, C, tc) for name, fn in BASE_METRICS.items()}
    rec = per_class_recall(y, yp, C)
    f1 = per_class_f1(y, yp, C)
    for c in range(C):
        out[f"recall_{c}"] = float(rec[c])
    for c in range(C):
        out[f"f1_{c}"] = float(f1[c])
    for name, ids in groups.items():
        out[f"recall_{name}"] = _nanmean(rec[ids])
        out[f"f1_{name}"] = _nanmean(f1[ids])
    return out


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.any(~np.isnan(x)) else float("nan")


def class_groups_by_count(
    train_counts, n_major: int, n_minor: int
) -> dict[str, list[int]]:
    """Split classes into ``major`` / ``middle`` / ``minor`` by training counts (papers 002, 004).

    ``major`` = the ``n_major`` most frequent classes, ``minor`` = the ``n_minor`` least
    frequent, ``middle`` = the rest (the key is left out when no class is left). Ties are broken
    by class id (a lower id counts as more frequent). Each list is sorted by class id.
    """
    c = np.asarray(train_counts, dtype=np.float64).ravel()
    C = c.size
    if n_major < 1 or n_minor < 1:
        raise ValueError(f"n_major ({n_major}) and n_minor ({n_minor}) must be >= 1")
    if n_major + n_minor > C:
        raise ValueError(
            f"n_major + n_minor = {n_major + n_minor} exceeds the {C} classes in train_counts"
        )
    order = np.lexsort((np.arange(C), -c))  # by count descending, then class id
    groups = {
        "major": sorted(order[:n_major].tolist()),
        "middle": sorted(order[n_major : C - n_minor].tolist()),
        "minor": sorted(order[C - n_minor :].tolist()),
    }
    if not groups["middle"]:
        del groups["middle"]
    return groups


# --------------------------------------------------------------------------------------------
# aggregation over folds / seeds


def aggregate(
    rows: Iterable[Mapping] | pd.DataFrame,
    by: str | Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean, std, median and count of every metric, optionally per group.

    Parameters
    ----------
    rows : one dict per run (e.g. ``{"method": "ce", "fold": 0, **evaluate(...)}``) or a DataFrame.
    by : column(s) to group by (e.g. ``"method"`` or ``["backbone", "method"]``).
    metrics : columns to aggregate; default every numeric column not in ``by``. A non-numeric
        column that is neither in ``by`` nor ``metrics`` is an error (say what to do with it).
        Exclude bookkeeping columns such as ``fold`` or ``seed`` by listing ``metrics``.

    Returns
    -------
    Long DataFrame with columns ``[*by, "metric", "mean", "std", "median", "n"]``, groups and
    metrics in order of first appearance. ``std`` is the *sample* standard deviation
    (ddof=1), the spread the papers report over folds / runs; NaN when n < 2. NaN values are
    skipped; ``n`` counts the non-NaN values.
    """
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise ValueError("aggregate: no rows given")
    by_cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    missing = [b for b in by_cols if b not in df.columns]
    if missing:
        raise ValueError(f"aggregate: by columns {missing} not in rows (have {list(df.columns)})")
    if metrics is None:
        rest = [c for c in df.columns if c not in by_cols]
        non_num = [
            c for c in rest
            if not (pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]))
        ]
        if non_num:
            raise ValueError(
                f"aggregate: columns {non_num} are not numeric; add them to by= or list the "
                f"columns to aggregate in metrics="
            )
        metric_cols = rest
    else:
        metric_cols = list(metrics)
        missing = [m for m in metric_cols if m not in df.columns]
        if missing:
            raise ValueError(f"aggregate: metrics {missing} not in rows")
    if not metric_cols:
        raise ValueError("aggregate: no metric column to aggregate")

    long = df[by_cols + metric_cols].melt(
        id_vars=by_cols or None, value_vars=metric_cols, var_name="metric", value_name="value"
    )
    long["value"] = pd.to_numeric(long["value"], errors="raise").astype(np.float64)
    long["metric"] = pd.Categorical(long["metric"], categories=metric_cols, ordered=True)
    keys = by_cols + ["metric"]
    g = long.groupby(keys, sort=False, observed=True, dropna=False)["value"]
    out = pd.DataFrame(
        {
            "mean": g.mean(),
            "std": g.std(ddof=1),
            "median": g.median(),
            "n": g.count().astype(np.int64),
        }
    ).reset_index()
    out["metric"] = out["metric"].astype(str)
    # groups in order of first appearance, metrics in the order given
    if by_cols:
        first = df[by_cols].drop_duplicates().reset_index(drop=True)
        first["_g"] = np.arange(len(first))
        out = out.merge(first, on=by_cols, how="left")
    else:
        out["_g"] = 0
    out["_m"] = out["metric"].map({m: i for i, m in enumerate(metric_cols)})
    out = out.sort_values(["_g", "_m"], kind="stable").drop(columns=["_g", "_m"])
    return out.reset_index(drop=True)


def format_mean_std(mean, std=None, scale: float = 100, digits: int = 2) -> str:
    """``"84.54 (0.86)"``: mean and std times ``scale``, rounded to ``digits`` decimals.

    A missing (None / NaN) std prints the mean alone; a missing mean gives ``""``.
    """
    if mean is None or not np.isfinite(float(mean)):
        return ""
    text = f"{float(mean) * scale:.{digits}f}"
    if std is not None and np.isfinite(float(std)):
        text += f" ({float(std) * scale:.{digits}f})"
    return text


# --------------------------------------------------------------------------------------------
# bootstrap


def bootstrap_ci(
    y_true,
    probs,
    metric: str = "mcr",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    train_counts=None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(lo, hi)`` of one metric.

    The N test samples are resampled with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``, so the interval is deterministic per seed); the
    metric is recomputed on each resample and the ``alpha/2`` and ``1 - alpha/2`` percentiles
    are returned. ``metric`` is any key of :func:`evaluate` (``recall_<c>`` included);
    resamples where it is undefined (NaN, e.g. a class drawn zero times) are skipped.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (N, C), got shape {p.shape}")
    C = int(p.shape[1])
    y = _check_labels(y_true, C)
    p = _check_probs(p, y.shape[0], C)
    if y.size == 0:
        raise ValueError("y_true is empty: nothing to bootstrap")
    tc = None if train_counts is None else _check_counts(train_counts, C)

    if metric in BASE_METRICS:
        fn = BASE_METRICS[metric]

        def score(idx):
            return fn(y[idx], p[idx].argmax(1), p[idx], C, tc)

    elif metric.startswith("recall_") and metric[7:].isdigit() and int(metric[7:]) < C:
        c = int(metric[7:])

        def score(idx):
            return float(per_class_recall(y[idx], p[idx].argmax(1), C)[c])

    else:
        known = set(evaluate(y, p, train_counts=tc))
        if metric not in known:
            raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(known)}")

        def score(idx):
            return evaluate(y[idx], p[idx], train_counts=tc)[metric]

    rng = np.random.default_rng(seed)
    n = y.size
    vals = np.array([score(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap_mean_ci(
    values, n_boot: int = 10000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(lo, hi)`` of the mean of ``values``.

    Meant for a handful of paired differences (one per fold or seed): the values are resampled
    with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``) and the ``alpha/2``
    and ``1 - alpha/2`` percentiles of the resampled means are returned. NaN values are dropped;
    fewer than 2 values give ``(nan, nan)`` (one value says nothing about its spread). With 2
    values the 95 % interval runs from the smaller to the larger, so it excludes 0 only when both
    have the same sign.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (n_boot, x.size))].mean(1)
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------
# chance level

AT_CHANCE = "at chance: not evidence for or against the claim"
"""What a verdict says of a model flagged by :func:`at_chance`."""


def at_chance(y_true, probs, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0) -> bool:
    """True when the model's mean class recall (MCR) is not distinguishable from chance.

    Chance level is ``1/K``, K = the number of classes present in ``y_true``: any classifier that
    ignores its input has expected MCR exactly ``1/K``, whatever classes it favours (a constant
    prediction scores exactly ``1/K``). The rule: the model is at chance when the lower end of the
    ``(1 - alpha)`` percentile bootstrap interval of its MCR over the test samples
    (:func:`bootstrap_ci`, seeded) is at or below ``1/K``. A model doing worse than chance is
    flagged too. Pass the validation or test labels and the model's probabilities.
    """
    y = np.asarray(y_true)
    lo, _ = bootstrap_ci(y, probs, "mcr", n_boot=n_boot, alpha=alpha, seed=seed)
    return bool(lo <= 1.0 / np.unique(y).size)
