"""Paper 000 (Chen et al., MICCAI 2021): perturbed input during inference. Tables and figures of notebook 01.

Every function takes an `Experiment` (one dataset + protocol) and returns tidy DataFrames or figures;
training goes through the run cache, so re-rendering never retrains.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kitlib.claims import verdict_text  # noqa: F401 (the one written verdict of every notebook)
from kitlib import metrics as M
from kitlib import report
from kitlib.experiment import Experiment
from kitlib.infer import POSTHOC, logit_adjust, predict, resolve_device, tau_normalize, time_calls
from kitlib.perturb import choose_eps, predict_perturbed, predict_perturbed_grid
from kitlib.progress import bar


def _work(desc: str, *axes):
    """Every combination of the axes (backbones, methods, splits, ...) under one progress bar (left behind: none)."""
    import itertools

    combos = list(itertools.product(*axes))
    return bar(combos, desc=desc, leave=False)

PAPER = "perturbed_input"
METHOD_LABELS = {"ce": "CE", "rs": "RS", "rw": "RW", "focal": "FL", "drs": "DRS", "ldam_drw": "LDAM-DRW"}
BACKBONE_LABELS = {"resnet50": "ResNet50", "mobilenet_v2": "MobileNetV2", "densenet169": "DenseNet169",
                   "resnet18": "ResNet18", "tiny_cnn": "TinyCNN"}
BATCH = 128  # images per perturbed-inference batch
DATASET_LABELS = {"skin7": "Skin7", "octmnist": "OCTMNIST", "xray6": "X-ray6", "synthetic": "synthetic"}


def label(kind: dict, key: str) -> str:
    return kind.get(key, key)


# Table 1 counts the images the way the paper did (Sect. 3.1 and the per-fold counts of Sect. 3.2): Skin7 over the
# whole set (115 / 6705 are HAM10000's totals), X-ray6 over the four training folds of the 5-fold protocol (88 =
# 4/5 of the 110 smallest-class images), OCTMNIST over the official train split (7754 / 46026).
TABLE1_BASIS = {"skin7": "all", "xray6": "train", "octmnist": "train"}


def _table1_counts(exp: Experiment, basis: str) -> tuple[np.ndarray, str]:
    if basis == "all":
        return exp.arrays.class_counts(), "whole dataset"
    if exp.arrays.split is not None and any(s == "train" for s in np.unique(exp.arrays.split)):
        idx = np.flatnonzero(exp.arrays.split == "train")
        what = "official train split"
    else:
        sp = exp.splits[0]
        idx = np.concatenate([sp.train, sp.val])
        what = f"training folds ({len(exp.splits) - 1} of {len(exp.splits)})" if len(exp.splits) > 1 else "train + val"
    return np.bincount(exp.arrays.labels[idx], minlength=exp.arrays.num_classes), what


def table1(experiments: dict[str, Experiment]) -> pd.DataFrame:
    """Table 1: dataset statistics computed from the data actually loaded, beside the paper's.

    Counts are taken on the part of the data the paper counted (TABLE1_BASIS; other datasets: the whole set),
    named in the column `counted on`. Counts and sizes are integers, the imbalance ratio has one decimal.
    """
    ours, basis = [], {}
    for name, exp in experiments.items():
        counts, basis[label(DATASET_LABELS, name)] = _table1_counts(exp, TABLE1_BASIS.get(name, "all"))
        lab = label(DATASET_LABELS, name)
        present = counts[counts > 0]
        values = {"classes": exp.arrays.num_classes, "smallest": present.min(), "largest": present.max(),
                  "imbalance": present.max() / present.min()}
        h, w = exp.arrays.images.shape[1:3]  # as loaded (reduced-size copies are not the originals)
        values.update(image_width=w, image_height=h)
        ours += [{"table": "table1", "row": lab, "column": col, "value": float(v)} for col, v in values.items()]
    ref = report.load_reference(PAPER, table="table1")
    ints, ratio = (report.paper_vs_ours(ref, pd.DataFrame(ours), digits=d) for d in (0, 1))
    one = (ints["column"] == "imbalance").to_numpy()
    out = ints.copy()
    out.loc[one, ["paper", "ours"]] = ratio.loc[one, ["paper", "ours"]]
    out["diff"] = ["" if pd.isna(d) else f"{d + 0.0:.{1 if r else 0}f}" for d, r in zip(out["diff"], one)]
    # image size: ours is the loaded (reduced) copy, so no difference is shown for it
    size = out["column"].isin(["image_width", "image_height"]).to_numpy()
    out.loc[size, "diff"] = ""
    out["counted on"] = [basis.get(r, "") for r in out["row"]]
    return out


def select_eps(exp: Experiment, backbone: str, eps_grid, method: str = "ce", T: float = 1000.0,
               measure: str = "ce", space: str = "normalized", metric: str = "mcr", train: dict | None = None,
               amp: bool = False):
    """Choose eps on the validation splits, as the paper did (one backbone, pooled over folds).

    Returns (best eps, DataFrame: column eps, then every kitlib.metrics key averaged over folds, in percent).
    """
    tables = []
    for sp in bar(exp.splits, desc="choose eps", leave=False):
        run = exp.train(sp.fold, backbone, method, **(train or {}))
        val = torch.utils.data.TensorDataset(exp.images(sp.fold, "val"), torch.as_tensor(exp.labels(sp.fold, "val")))
        _, tab = choose_eps(run.model, torch.utils.data.DataLoader(val, batch_size=256), exp.train_counts(sp.fold),
                            eps_grid,
                            metric=metric, T=T, measure=measure, space=space, **_pixel_stats(exp, space),
                            batch_size=BATCH, progress=False, amp=amp)
        tables.append(tab.assign(fold=sp.fold))
    curve = pd.concat(tables).drop(columns="fold").groupby("eps", as_index=False).mean(numeric_only=True)
    best = float(curve["eps"].iloc[int(np.argmax(curve[metric].to_numpy()))])
    metrics = [c for c in curve.columns if c != "eps"]
    curve[metrics] = 100 * curve[metrics]  # percent, as every other table of the notebook
    return best, curve


def _pixel_stats(exp: Experiment, space: str) -> dict:
    if space != "pixel":
        return {}
    from kitlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}


POSTHOC_LABELS = {"logit_adj": "LA", "tau_norm": "τ-norm"}
VARIANT_SUFFIX = {"baseline": "", "ours": "+ours", "logit_adj": "+LA", "tau_norm": "+τ-norm"}


def posthoc_probs(exp: Experiment, run, fold: int, part: str, kind: str, tau: float, amp: bool = False) -> np.ndarray:
    """Probabilities of a zero-cost post-hoc correction of the trained model: logit adjustment (Menon et al.
    2021, logits - tau log prior) or the tau-normalised classifier (Kang et al. 2020)."""
    if kind == "logit_adj":
        return logit_adjust(exp.predict(run, fold, part, amp=amp), exp.train_counts(fold), tau)
    if kind == "tau_norm":
        return predict(tau_normalize(run.model, tau), exp.images(fold, part), batch_size=256, amp=amp)
    raise ValueError(f"unknown post-hoc correction {kind!r}; choose one of {POSTHOC}")


def select_posthoc(exp: Experiment, backbone: str, kind: str, grid, method: str = "ce", metric: str = "mcr",
                   train: dict | None = None, amp: bool = False):
    """Choose the post-hoc correction's tau on the validation splits, exactly as eps is chosen (`select_eps`).

    Returns (best tau, DataFrame: column tau, then mcr / scr averaged over folds, in percent).
    """
    rows = []
    for sp in bar(exp.splits, desc=f"choose tau ({kind})", leave=False):
        run = exp.train(sp.fold, backbone, method, **(train or {}))
        plain = exp.predict(run, sp.fold, "val", amp=amp) if kind == "logit_adj" else None  # once, not per tau
        for tau in sorted(set(float(t) for t in grid)):
            probs = (logit_adjust(plain, exp.train_counts(sp.fold), tau) if plain is not None
                     else posthoc_probs(exp, run, sp.fold, "val", kind, tau, amp))
            mets = exp.evaluate(probs, sp.fold, "val")
            rows.append({"tau": tau, "fold": sp.fold, "mcr": 100 * mets["mcr"], "scr": 100 * mets["scr"]})
    curve = pd.DataFrame(rows).drop(columns="fold").groupby("tau", as_index=False).mean()
    best = float(curve["tau"].iloc[int(np.argmax(curve[metric].to_numpy()))])
    return best, curve


def run_table2(exp: Experiment, backbones, methods, eps: float, T: float = 1000.0, measure: str = "ce",
               space: str = "normalized", train_by_backbone: dict | None = None, posthoc: dict | None = None,
               amp: bool = False) -> pd.DataFrame:
    """Every (backbone, method, fold): test metrics of the trained model as it is ("baseline"), with the
    perturbation ("ours") and with each post-hoc correction in `posthoc` ({"logit_adj": tau, "tau_norm": tau}).

    Every variant runs at the same precision (amp: bfloat16 autocast on CUDA for all, default fp32 for all).
    Returns one row per (backbone, method, variant, fold) with all kitlib.metrics keys (fractions) and
    `at_chance`: the trained model's MCR is not distinguishable from chance on the validation or the test split
    (kitlib.metrics.at_chance; the same for every variant, it is a property of the model).
    """
    rows = []
    for bb, m, sp in _work("Table 2", backbones, methods, exp.splits):
        run = exp.train(sp.fold, bb, m, **(train_by_backbone or {}).get(bb, {}))
        test = exp.images(sp.fold)
        plain = exp.predict(run, sp.fold, amp=amp)
        chance = (M.at_chance(exp.labels(sp.fold), plain)
                  or M.at_chance(exp.labels(sp.fold, "val"), exp.predict(run, sp.fold, "val", amp=amp)))
        variants = {"baseline": plain, "ours": predict_perturbed(
            run.model, test, exp.train_counts(sp.fold), eps, T=T, measure=measure, space=space,
            **_pixel_stats(exp, space), batch_size=BATCH, progress=False, amp=amp)}
        for kind, tau in (posthoc or {}).items():
            variants[kind] = (logit_adjust(plain, exp.train_counts(sp.fold), tau) if kind == "logit_adj"
                              else posthoc_probs(exp, run, sp.fold, "test", kind, tau, amp))
        for variant, probs in variants.items():
            rows.append({"backbone": bb, "method": m, "variant": variant, "fold": sp.fold,
                         "at_chance": chance, **exp.evaluate(probs, sp.fold)})
    return pd.DataFrame(rows)


PAPER_BACKBONES = ("resnet50", "mobilenet_v2", "densenet169")
PAPER_SETTING = {"Skin7": (224, "kfold", 5), "OCTMNIST": (32, "official", 1), "X-ray6": (224, "kfold", 5)}


def paper_dataset(dataset: str) -> str:
    """The paper's dataset ours is set beside: the same one, else Skin7 (the synthetic lesion set and your own
    dermoscopy-like data stand in for it; the tables say so)."""
    ds = label(DATASET_LABELS, dataset)
    return ds if ds in PAPER_SETTING else "Skin7"


def setting_label(who: str, backbone: str, px: int | None, protocol: str, folds: int, pretrained: bool = True,
                  dataset: str | None = None) -> str:
    """"paper: ResNet50, 224 px, 5 folds" / "ours: TinyCNN (random init), 32 px, 3 folds, synthetic"."""
    split = f"{folds} folds" if protocol == "kfold" else f"{protocol} split"
    init = "" if pretrained else " (random init)"
    return f"{who}: {label(BACKBONE_LABELS, backbone)}{init}, {px} px, {split}" + (f", {dataset}" if dataset else "")


def matches_paper(dataset: str, backbone: str, px: int | None, protocol: str, folds: int, pretrained: bool) -> bool:
    """True when dataset, backbone and protocol are the paper's (only then is ours - paper a difference)."""
    ds = label(DATASET_LABELS, dataset)
    if ds not in PAPER_SETTING or backbone not in PAPER_BACKBONES or not pretrained:
        return False
    size, proto, n = PAPER_SETTING[ds]
    return px == size and protocol == proto and (proto != "kfold" or folds == n)


def _variant_name(method: str, variant: str) -> str:
    return label(METHOD_LABELS, method) + VARIANT_SUFFIX[variant]


def _paper_backbone(backbone: str) -> str:
    """The paper's row we set ours beside: the same backbone, else ResNet50 (the paper's main one)."""
    return backbone if backbone in PAPER_BACKBONES else "resnet50"


def table2(rows: pd.DataFrame, dataset: str, ours_label: dict | None = None, same: bool = False
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2 for one dataset: (ours, absolute).

    ours: MCR and SCR in percent, mean (std over folds), keyed as the paper's Table 2 (table, row, column,
    value, spread). absolute: per (backbone, method + variant, metric) the paper's number beside ours. The
    paper side is the paper's row for the same backbone, or for ResNet50 when ours is not one of the paper's;
    both sides are labelled (`paper is`, `ours is`: `setting_label`) and `diff` (ours - paper, pp) is given only
    when `same` (dataset, backbone and protocol are the paper's: `matches_paper`). Rows the paper does not
    have (the post-hoc corrections) say so.
    """
    agg = M.aggregate(rows, by=["backbone", "method", "variant"], metrics=["mcr", "scr"])  # long: one row per metric
    ds, pds = label(DATASET_LABELS, dataset), paper_dataset(dataset)
    ref = report.load_reference(PAPER, table="table2")
    ref = ref[ref["column"].str.startswith(f"{pds}|")].set_index(["row", "column"])
    ours, absolute = [], []
    for _, r in agg.iterrows():
        name, met = _variant_name(r["method"], r["variant"]), r["metric"].upper()
        value, spread = 100 * r["mean"], (100 * r["std"] if r["n"] > 1 else np.nan)
        ours.append({"table": "table2", "row": f"{label(BACKBONE_LABELS, r['backbone'])}|{name}",
                     "column": f"{ds}|{met}", "value": value, "spread": spread})
        pbb = _paper_backbone(r["backbone"])
        key = (f"{label(BACKBONE_LABELS, pbb)}|{name}", f"{pds}|{met}")
        has = key in ref.index
        pv, ps = (ref.loc[key, "value"], ref.loc[key, "spread"]) if has else (np.nan, np.nan)
        absolute.append({
            "backbone": label(BACKBONE_LABELS, r["backbone"]), "method": name, "metric": met,
            "paper is": (ours_label or {}).get(("paper", r["backbone"]), f"paper: {label(BACKBONE_LABELS, pbb)}, {pds}"),
            "paper": M.format_mean_std(pv, ps if pd.notna(ps) else None, scale=1) if has else
            ("not in the paper" if r["variant"] in POSTHOC else "no paper row"),
            "ours is": (ours_label or {}).get(("ours", r["backbone"]), "ours"),
            "ours": M.format_mean_std(value, spread if pd.notna(spread) else None, scale=1),
            "diff": f"{value - pv:+.2f}" if (same and has) else "",
        })
    return pd.DataFrame(ours), pd.DataFrame(absolute)


def figure2(rows: pd.DataFrame, exp: Experiment, backbone: str, pairs=("ce", "rs")):
    """Fig. 2: per-class recall, classes ordered largest to smallest (training counts), X vs X+ours."""
    order = np.argsort(-exp.train_counts(0), kind="stable")
    sub = rows[rows["backbone"] == backbone]
    cols = {}
    for m in pairs:
        for variant in ("baseline", "ours"):
            r = sub[(sub["method"] == m) & (sub["variant"] == variant)]
            if r.empty:
                continue
            name = label(METHOD_LABELS, m) + ("+ours" if variant == "ours" else "")
            cols[name] = [r[f"recall_{c}"].mean() for c in order]
    data = pd.DataFrame(cols, index=[f"{i + 1}: {exp.class_names[c]}" for i, c in enumerate(order)])
    return report.plot_per_class_bars(data, title=f"Per-class recall, {label(BACKBONE_LABELS, backbone)} "
                                                  f"(1 = largest class)")


def sweep(exp: Experiment, backbones, methods, eps_grid=None, T_grid=None, eps: float | None = None,
          T: float = 1000.0, measure: str = "ce", space: str = "normalized",
          train_by_backbone: dict | None = None) -> pd.DataFrame:
    """Fig. 3 data: test MCR/SCR against eps (at T) or against T (at eps), per backbone and method, per fold.

    Give eps_grid (eps = 0 is the baseline) or T_grid (with a fixed eps).
    """
    if (eps_grid is None) == (T_grid is None):
        raise ValueError("give exactly one of eps_grid or T_grid")
    rows = []
    for bb, m, sp in _work("eps sweep" if eps_grid is not None else "T sweep", backbones, methods, exp.splits):
        run = exp.train(sp.fold, bb, m, **(train_by_backbone or {}).get(bb, {}))
        test, counts = exp.images(sp.fold), exp.train_counts(sp.fold)
        kw = dict(measure=measure, space=space, **_pixel_stats(exp, space), batch_size=BATCH, progress=False)
        if eps_grid is not None:
            grid = sorted(set(eps_grid))
            probs = predict_perturbed_grid(run.model, test, counts, grid, T=T, **kw)
            points = [("eps", e, p) for e, p in zip(grid, probs)]
        else:
            points = [("T", t, predict_perturbed(run.model, test, counts, eps, T=t, **kw)) for t in T_grid]
        for x, v, p in points:
            mets = exp.evaluate(p, sp.fold)
            rows.append({"backbone": bb, "method": label(METHOD_LABELS, m), "fold": sp.fold, x: v,
                         "mcr": 100 * mets["mcr"], "scr": 100 * mets["scr"]})
    return pd.DataFrame(rows)


def measure_ablation(exp: Experiment, backbone: str, methods, eps: float, measures=("ce", "mse", "focal"),
                     T: float = 1000.0, space: str = "normalized", train: dict | None = None, amp: bool = False
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The difference-measure ablation: (table: MCR/SCR in percent, mean (std) over folds per method and
    measure; rows: one per method, measure and fold, for the effects)."""
    rows = []
    for m, sp in _work("measure ablation", methods, exp.splits):
        run = exp.train(sp.fold, backbone, m, **(train or {}))
        test, counts = exp.images(sp.fold), exp.train_counts(sp.fold)
        rows.append({"method": label(METHOD_LABELS, m), "measure": "none (baseline)", "fold": sp.fold,
                     **_pct(exp.evaluate(exp.predict(run, sp.fold, amp=amp), sp.fold))})
        for meas in measures:
            p = predict_perturbed(run.model, test, counts, eps, T=T, measure=meas, space=space,
                                  **_pixel_stats(exp, space), batch_size=BATCH, progress=False, amp=amp)
            rows.append({"method": label(METHOD_LABELS, m), "measure": meas, "fold": sp.fold,
                         **_pct(exp.evaluate(p, sp.fold))})
    df = pd.DataFrame(rows)
    agg = M.aggregate(df, by=["method", "measure"], metrics=["MCR", "SCR"])
    agg["value"] = [M.format_mean_std(a, b if n > 1 else None, scale=1) for a, b, n in zip(agg["mean"], agg["std"], agg["n"])]
    table = agg.pivot_table(index=["method", "measure"], columns="metric", values="value", aggfunc="first",
                            sort=False).reset_index()
    return table, df


def _pct(mets: dict) -> dict:
    return {"MCR": 100 * mets["mcr"], "SCR": 100 * mets["scr"]}


PAPER_RATIO = 0.283 / 0.107  # Sect. 3.1: seconds per image, perturbed vs plain (2080Ti)


def inference_time(exp: Experiment, backbone: str, method: str, eps: float, T: float = 1000.0,
                   n: int = 256, batch_size: int = 64, repeats: int = 3, train: dict | None = None,
                   device="auto", amp: bool = False) -> tuple[pd.DataFrame, list[float]]:
    """Seconds per image, plain vs perturbed, same model, images, device and precision (amp), batched.

    Returns (table, ratios): the table gives the median of `repeats` alternating rounds as text with 3
    significant digits ("0.000123", "2.60"); ratios is perturbed / plain per round (the units of the cost claim).
    """
    run = exp.train(0, backbone, method, **(train or {}))
    x = exp.images(0)[:n]
    device = resolve_device(device)
    counts = exp.train_counts(0)

    fns = {"plain": lambda: predict(run.model, x, batch_size=batch_size, device=device, amp=amp),
           "perturbed": lambda: predict_perturbed(run.model, x, counts, eps, T=T, batch_size=batch_size,
                                                  device=device, progress=False, amp=amp)}
    for fn in fns.values():
        fn()  # warm-up
    t = time_calls(fns, repeats, device, every=True)
    ratios = [b / a for a, b in zip(t["plain"], t["perturbed"])]
    plain, pert = float(np.median(t["plain"])) / len(x), float(np.median(t["perturbed"])) / len(x)

    def sig3(v):
        return f"{v:#.3g}".rstrip(".")  # 3 significant digits, trailing zeros kept: "0.000123", "2.60", "5.12e-05"

    table = pd.DataFrame([{"backbone": label(BACKBONE_LABELS, backbone), "device": str(device),
                           "precision": "bf16 autocast" if amp and device.type == "cuda" else "fp32",
                           "batch": batch_size, "plain_s_per_image": sig3(plain), "perturbed_s_per_image": sig3(pert),
                           "ratio": sig3(pert / plain), "paper_ratio": sig3(PAPER_RATIO)}])
    return table, ratios


# --------------------------------------------------------------------------- effects and claims
CLAIM_TEXT = {
    "mcr_up": "the perturbation raises MCR for every baseline (training method) and backbone",
    "scr_more": "the gain on the smallest class (SCR) is larger than on all classes (MCR)",
    "measures_equivalent": "cross-entropy, MSE and focal difference measures give equivalent MCR",
    "cost": "perturbed inference costs about 2.6x plain inference (0.283 vs 0.107 s per image)",
    "beats_logit_adj": "(beyond the paper) the perturbation beats post-hoc logit adjustment of the same model",
    "beats_tau_norm": "(beyond the paper) the perturbation beats the tau-normalised classifier of the same model",
}


def _paper_effect(ref: pd.DataFrame, ds: str, backbone: str, method: str, metric: str, other: str = "ours"):
    """The paper's effect X+ours - X (percentage points) in Table 2, or NaN when it has no such rows."""
    bb = label(BACKBONE_LABELS, _paper_backbone(backbone))
    m = label(METHOD_LABELS, method)
    try:
        a = ref.loc[(f"{bb}|{m}+{other}", f"{ds}|{metric}"), "value"]
        b = ref.loc[(f"{bb}|{m}", f"{ds}|{metric}"), "value"]
    except KeyError:
        return np.nan
    return float(a - b)


CONTRASTS = (  # (name, variant, against, metric): our effect = variant - against, per fold
    ("+ours - X", "ours", "baseline", "MCR"), ("+ours - X", "ours", "baseline", "SCR"),
    ("+ours - X", "ours", "baseline", "SCR - MCR"),
    ("+LA - X", "logit_adj", "baseline", "MCR"), ("+LA - X", "logit_adj", "baseline", "SCR"),
    ("+τ-norm - X", "tau_norm", "baseline", "MCR"), ("+τ-norm - X", "tau_norm", "baseline", "SCR"),
    ("+ours - X+LA", "ours", "logit_adj", "MCR"), ("+ours - X+LA", "ours", "logit_adj", "SCR"),
    ("+ours - X+τ-norm", "ours", "tau_norm", "MCR"), ("+ours - X+τ-norm", "ours", "tau_norm", "SCR"),
)


def _fold_scores(g: pd.DataFrame, variant: str, metric: str) -> pd.Series:
    v = g[g["variant"] == variant].set_index("fold").sort_index()
    if metric == "SCR - MCR":
        return 100 * (v["scr"] - v["mcr"])
    return 100 * v[metric.lower()]


def effects(rows: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, dict]:
    """Effect table of Table 2 (one dataset): per (backbone, method) and contrast, the paper's effect beside
    ours (percentage points): mean, std and 95 % bootstrap CI of the per-fold paired differences, and the
    verdict of kitlib.claims' rule for "the contrast is > 0". A model at chance gets inconclusive.

    Returns (table, effects): effects maps (contrast, metric) -> {(backbone, method): kitlib.claims.Effect}
    for `claims`. Contrasts whose variant was not run (e.g. no post-hoc correction) are left out.
    """
    from kitlib import claims as C

    ds = paper_dataset(dataset)  # the paper's effects of the same contrast, on the dataset ours stands beside
    ref = report.load_reference(PAPER, table="table2").set_index(["row", "column"])
    table, out = [], {}
    for (bb, m), g in rows.groupby(["backbone", "method"], sort=False):
        chance = bool(g["at_chance"].astype(bool).any())
        have = set(g["variant"])
        for name, variant, against, metric in CONTRASTS:
            if variant not in have or against not in have:
                continue
            e = C.paired_effect(_fold_scores(g, variant, metric), _fold_scores(g, against, metric))
            paper = np.nan
            if against == "baseline" and variant == "ours":
                if metric == "SCR - MCR":
                    paper = _paper_effect(ref, ds, bb, m, "SCR") - _paper_effect(ref, ds, bb, m, "MCR")
                else:
                    paper = _paper_effect(ref, ds, bb, m, metric)
            claim = C.Claim("row", "", name, metric)
            table.append({"backbone": label(BACKBONE_LABELS, bb), "method": label(METHOD_LABELS, m),
                          "contrast": label(METHOD_LABELS, m) + name.replace(" X", " " + label(METHOD_LABELS, m)),
                          "metric": metric, "paper_effect": paper,
                          "paper is": f"paper: {label(BACKBONE_LABELS, _paper_backbone(bb))}, {ds}" if pd.notna(paper) else "",
                          "our_effect": e.mean, "our_std": e.std, "ci_low": e.ci_low, "ci_high": e.ci_high,
                          "n_units": e.n_units, "diffs": " ".join(f"{d:+.2f}" for d in e.diffs),
                          "verdict": "inconclusive" if chance else C.verdict(claim, e),
                          "note": M.AT_CHANCE if chance else ""})
            out.setdefault((name, metric), {})[(bb, m)] = (e, chance, paper)
    return pd.DataFrame(table), out


def claims(per_dataset: dict, ablation: dict | None = None, ratios: list | None = None, skipped: dict | None = None,
           margin: float = 1.0, cost_tolerance: float = 0.25) -> list[dict]:
    """claims.csv rows (kitlib.claims.judge / judge_every) for the paper's claims and the two beyond it.

    per_dataset: {dataset name: effects(...)[1]}; ablation: {dataset: measure_ablation rows}; ratios: the
    per-round cost ratios of inference_time; skipped: {dataset: why} for datasets that could not be loaded.
    margin: the equivalence margin of the difference-measure claim (MCR percentage points, either way);
    cost_tolerance: the cost claim holds when the ratio lies within 2.6 / (1 + tol) .. 2.6 * (1 + tol).
    The paper's three datasets that were not run give `not run` rows saying why.
    """
    from kitlib import claims as C

    rows = []

    def family(cid, ds, key, test="greater", bound=0.0, text=None):
        eff = per_dataset[ds].get(key, {})
        pe = [p for _, _, p in eff.values() if pd.notna(p)]
        claim = C.Claim(f"{cid}[{label(DATASET_LABELS, ds)}]", text or CLAIM_TEXT[cid], f"X{key[0]}",
                        f"{key[1]} (pp)", test, bound, float(np.mean(pe)) if pe else None)
        if not eff:
            return C.judge(PAPER, claim, None, note=f"{key[0]} was not run on {ds}")
        members = {f"{label(BACKBONE_LABELS, bb)} {label(METHOD_LABELS, m)}": e for (bb, m), (e, _, _) in eff.items()}
        chance = [f"{label(BACKBONE_LABELS, bb)} {label(METHOD_LABELS, m)}" for (bb, m), (_, c, _) in eff.items() if c]
        row = C.judge_every(PAPER, claim, members, at_chance=chance)
        if pe:
            row["note"] += f"; paper effect: mean of its {len(pe)} {paper_dataset(ds)} rows"
        return row

    for ds in per_dataset:
        rows.append(family("mcr_up", ds, ("+ours - X", "MCR")))
        rows.append(family("scr_more", ds, ("+ours - X", "SCR - MCR")))
        rows.append(family("beats_logit_adj", ds, ("+ours - X+LA", "MCR")))
        rows.append(family("beats_tau_norm", ds, ("+ours - X+τ-norm", "MCR")))
    for ds, why in {**{d: "not among this profile's datasets" for d in ("skin7", "octmnist", "xray6")},
                    **(skipped or {})}.items():
        if ds in per_dataset:
            continue
        for cid in ("mcr_up", "scr_more"):
            claim = C.Claim(f"{cid}[{label(DATASET_LABELS, ds)}]", CLAIM_TEXT[cid], "+ours - X",
                            "MCR (pp)" if cid == "mcr_up" else "SCR - MCR (pp)")
            rows.append(C.judge(PAPER, claim, None, note=f"{ds}: {why.strip().splitlines()[0]}"))
    for ds, ab in (ablation or {}).items():
        members = {}
        for (m, meas), g in ab[ab["measure"].isin(["mse", "focal"])].groupby(["method", "measure"], sort=False):
            ce = ab[(ab["method"] == m) & (ab["measure"] == "ce")].set_index("fold")["MCR"]
            members[f"{m} {meas}"] = C.paired_effect(g.set_index("fold")["MCR"], ce)
        claim = C.Claim(f"measures_equivalent[{label(DATASET_LABELS, ds)}]", CLAIM_TEXT["measures_equivalent"],
                        "measure - CE measure", "MCR (pp)", "within", (-margin, margin))
        rows.append(C.judge_every(PAPER, claim, members) if members else
                    C.judge(PAPER, claim, None, note="the ablation ran no MSE / focal measure"))
    claim = C.Claim("cost", CLAIM_TEXT["cost"], "perturbed / plain seconds per image", "ratio", "within",
                    (PAPER_RATIO / (1 + cost_tolerance), PAPER_RATIO * (1 + cost_tolerance)), PAPER_RATIO)
    rows.append(C.judge(PAPER, claim, C.Effect.from_diffs(ratios), note="units: timing rounds") if ratios else
                C.judge(PAPER, claim, None, note="inference time was not measured"))
    return rows




# --------------------------------------------------------------------------- notebook parameters
def _parameters():
    from kitlib import params as P
    from kitlib.experiment import PROTOCOLS
    from kitlib.methods import METHODS, TWO_STAGE
    from kitlib.models import BACKBONES, SMALL_STEMS
    from kitlib.perturb import MEASURES, SPACES
    from kitlib.profiles import PROFILE_NAMES
    from kitlib.train import SCHEDULES

    methods = P.ListOf(P.Str(choices=[m for m in METHODS if m not in TWO_STAGE]))
    backbones = P.ListOf(P.Str(choices=BACKBONES))
    per_dataset, per_backbone = ("datasets",), ("backbones", "eps_backbones")
    size = P.Optional(P.Int(lo=8))
    return P.Schema(
        PAPER, profile=P.Str(choices=PROFILE_NAMES), overrides=P.DictOf(), device=P.DEVICE, out_dir=P.PATH,
        datasets=P.ListOf(P.Str(what="a dataset name (python -m kitlib datasets) or a path to your data")),
        dataset_options=P.DictOf(P.DictOf()),
        image_size=P.PerKey(size, per_dataset, fallback=None, kind="dataset"),
        crop=P.PerKey(size, per_dataset, fallback=None, kind="dataset"),
        protocol=P.PerKey(P.Str(choices=PROTOCOLS), per_dataset, fallback="kfold", kind="dataset"),
        folds=P.Int(lo=2), val_frac=P.Float(0, 1, lo_open=True, hi_open=True), seed=P.Int(lo=0),
        backbones=backbones, eps_backbones=backbones, methods=methods, pretrained=P.Bool(),
        model_width=P.Int(lo=1), epochs=P.Int(lo=1),
        batch_size=P.PerKey(P.Int(lo=1), per_dataset, fallback=32, kind="dataset"),
        lr=P.PerKey(P.Float(0, lo_open=True), per_backbone, fallback=0.01, kind="backbone"),
        schedule=P.Str(choices=SCHEDULES), step_size=P.Int(lo=1), warmup_epochs=P.Float(0),
        momentum=P.Float(0, 1, hi_open=True), weight_decay=P.Float(0),
        eps=P.Either(P.Str(choices=["val"]), P.Float(0)), eps_grid=P.ListOf(P.Float(0)),
        T=P.Float(0, lo_open=True), T_grid=P.ListOf(P.Float(0, lo_open=True)),
        measures=P.ListOf(P.Str(choices=MEASURES)), ablation_methods=methods, space=P.Str(choices=SPACES),
        timing_images=P.Int(lo=1), run_root=P.PATH,
        small_stem=P.Str(choices=SMALL_STEMS), amp=P.Bool(), posthoc=P.ListOf(P.Str(choices=POSTHOC)),
        la_tau_grid=P.ListOf(P.Float(0)), tn_tau_grid=P.ListOf(P.Float(0)),
        equivalence_margin=P.Float(0, lo_open=True), cost_tolerance=P.Float(0, lo_open=True),
    )


PARAMETERS = _parameters()
