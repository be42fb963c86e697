"""Paper 000 (Chen et al., MICCAI 2021): perturbed input during inference. Tables and figures of notebook 01.

Every function takes an `Experiment` (one dataset + protocol) and returns tidy DataFrames or figures;
training goes through the run cache, so re-rendering never retrains.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kitlib import metrics as M
from kitlib import report
from kitlib.experiment import Experiment
from kitlib.infer import predict, resolve_device, time_calls
from kitlib.perturb import choose_eps, predict_perturbed, predict_perturbed_grid

PAPER = "perturbed_input"
METHOD_LABELS = {"ce": "CE", "rs": "RS", "rw": "RW", "focal": "FL", "drs": "DRS", "ldam_drw": "LDAM-DRW"}
BACKBONE_LABELS = {"resnet50": "ResNet50", "mobilenet_v2": "MobileNetV2", "densenet169": "DenseNet169",
                   "resnet18": "ResNet18", "tiny_cnn": "TinyCNN"}
BATCH = 128  # images per perturbed-inference batch
DATASET_LABELS = {"skin7": "Skin7", "octmnist": "OCTMNIST", "xray6": "X-ray6", "synthetic": "synthetic"}


def label(kind: dict, key: str) -> str:
    return kind.get(key, key)


def table1(experiments: dict[str, Experiment]) -> pd.DataFrame:
    """Table 1: dataset statistics computed from the data actually loaded, beside the paper's."""
    ours = []
    for name, exp in experiments.items():
        st = exp.statistics().iloc[0]
        lab = label(DATASET_LABELS, name)
        for col in ("classes", "smallest", "largest", "imbalance"):
            ours.append({"table": "table1", "row": lab, "column": col, "value": float(st[col])})
        h, w = exp.arrays.images.shape[1:3]  # as loaded (reduced-size copies are not the originals)
        ours += [{"table": "table1", "row": lab, "column": "image_width", "value": float(w)},
                 {"table": "table1", "row": lab, "column": "image_height", "value": float(h)}]
    ref = report.load_reference(PAPER, table="table1")
    return report.paper_vs_ours(ref, pd.DataFrame(ours), digits=1)


def select_eps(exp: Experiment, backbone: str, eps_grid, method: str = "ce", T: float = 1000.0,
               measure: str = "ce", space: str = "normalized", metric: str = "mcr", train: dict | None = None):
    """Choose eps on the validation splits, as the paper did (one backbone, pooled over folds).

    Returns (best eps, DataFrame eps x validation metrics averaged over folds).
    """
    tables = []
    for sp in exp.splits:
        run = exp.train(sp.fold, backbone, method, **(train or {}))
        val = torch.utils.data.TensorDataset(exp.images(sp.fold, "val"), torch.as_tensor(exp.labels(sp.fold, "val")))
        _, tab = choose_eps(run.model, torch.utils.data.DataLoader(val, batch_size=256), exp.train_counts(sp.fold),
                            eps_grid,
                            metric=metric, T=T, measure=measure, space=space, **_pixel_stats(exp, space),
                            batch_size=BATCH, progress=False)
        tables.append(tab.assign(fold=sp.fold))
    curve = pd.concat(tables).groupby("eps", as_index=False).mean(numeric_only=True)
    best = float(curve["eps"].iloc[int(np.argmax(curve[metric].to_numpy()))])
    return best, curve


def _pixel_stats(exp: Experiment, space: str) -> dict:
    if space != "pixel":
        return {}
    from kitlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def run_table2(exp: Experiment, backbones, methods, eps: float, T: float = 1000.0, measure: str = "ce",
               space: str = "normalized", train_by_backbone: dict | None = None) -> pd.DataFrame:
    """Every (backbone, method, fold): test metrics without ("baseline") and with ("ours") the perturbation.

    Returns one row per (backbone, method, variant, fold) with all kitlib.metrics keys (fractions).
    """
    rows = []
    for bb in backbones:
        for m in methods:
            for sp in exp.splits:
                run = exp.train(sp.fold, bb, m, **(train_by_backbone or {}).get(bb, {}))
                test = exp.images(sp.fold)
                plain = exp.predict(run, sp.fold)
                ours = predict_perturbed(run.model, test, exp.train_counts(sp.fold), eps, T=T, measure=measure,
                                         space=space, **_pixel_stats(exp, space), batch_size=BATCH, progress=False)
                for variant, probs in (("baseline", plain), ("ours", ours)):
                    rows.append({"backbone": bb, "method": m, "variant": variant, "fold": sp.fold,
                                 **exp.evaluate(probs, sp.fold)})
    return pd.DataFrame(rows)


def table2(rows: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours, paper_vs_ours): MCR and SCR in percent, mean (std over folds), keyed as the paper's Table 2."""
    agg = M.aggregate(rows, by=["backbone", "method", "variant"], metrics=["mcr", "scr"])  # long: one row per metric
    ds = label(DATASET_LABELS, dataset)
    ours = []
    for _, r in agg.iterrows():
        name = label(METHOD_LABELS, r["method"]) + ("+ours" if r["variant"] == "ours" else "")
        ours.append({"table": "table2", "row": f"{label(BACKBONE_LABELS, r['backbone'])}|{name}",
                     "column": f"{ds}|{r['metric'].upper()}", "value": 100 * r["mean"],
                     "spread": 100 * r["std"] if r["n"] > 1 else np.nan})
    ours = pd.DataFrame(ours)
    ref = report.load_reference(PAPER, table="table2")
    ref = ref[ref["column"].str.startswith(f"{ds}|")]
    return ours, report.paper_vs_ours(ref, ours)


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
    for bb in backbones:
        for m in methods:
            for sp in exp.splits:
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
                     T: float = 1000.0, space: str = "normalized", train: dict | None = None) -> pd.DataFrame:
    """The difference-measure ablation: MCR/SCR (percent, mean over folds) per method and measure."""
    rows = []
    for m in methods:
        for sp in exp.splits:
            run = exp.train(sp.fold, backbone, m, **(train or {}))
            test, counts = exp.images(sp.fold), exp.train_counts(sp.fold)
            rows.append({"method": label(METHOD_LABELS, m), "measure": "none (baseline)", "fold": sp.fold,
                         **_pct(exp.evaluate(exp.predict(run, sp.fold), sp.fold))})
            for meas in measures:
                p = predict_perturbed(run.model, test, counts, eps, T=T, measure=meas, space=space,
                                      **_pixel_stats(exp, space), batch_size=BATCH, progress=False)
                rows.append({"method": label(METHOD_LABELS, m), "measure": meas, "fold": sp.fold,
                             **_pct(exp.evaluate(p, sp.fold))})
    df = pd.DataFrame(rows)
    agg = M.aggregate(df, by=["method", "measure"], metrics=["MCR", "SCR"])
    agg["value"] = [M.format_mean_std(a, b if n > 1 else None, scale=1) for a, b, n in zip(agg["mean"], agg["std"], agg["n"])]
    return agg.pivot_table(index=["method", "measure"], columns="metric", values="value", aggfunc="first",
                           sort=False).reset_index()


def _pct(mets: dict) -> dict:
    return {"MCR": 100 * mets["mcr"], "SCR": 100 * mets["scr"]}


def inference_time(exp: Experiment, backbone: str, method: str, eps: float, T: float = 1000.0,
                   n: int = 256, batch_size: int = 64, repeats: int = 3, train: dict | None = None) -> pd.DataFrame:
    """Seconds per image, plain vs perturbed, same model and test images, batched (median of `repeats`)."""
    run = exp.train(0, backbone, method, **(train or {}))
    x = exp.images(0)[:n]
    device = resolve_device("auto")
    counts = exp.train_counts(0)

    fns = {"plain": lambda: predict(run.model, x, batch_size=batch_size, device=device),
           "perturbed": lambda: predict_perturbed(run.model, x, counts, eps, T=T, batch_size=batch_size,
                                                  device=device, progress=False)}
    for fn in fns.values():
        fn()  # warm-up
    t = time_calls(fns, repeats, device)
    plain, pert = t["plain"] / len(x), t["perturbed"] / len(x)
    return pd.DataFrame([{"backbone": label(BACKBONE_LABELS, backbone), "device": str(device), "batch": batch_size,
                          "plain_s_per_image": plain, "perturbed_s_per_image": pert, "ratio": pert / plain,
                          "paper_ratio": 0.283 / 0.107}])


def verdict(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, method): does the perturbation raise MCR and, more strongly, SCR? Effect and its spread.

    Differences are paired by fold (ours - baseline), in percentage points: mean, std over folds, folds improved.
    """
    out = []
    for (bb, m), g in rows.groupby(["backbone", "method"], sort=False):
        base = g[g["variant"] == "baseline"].set_index("fold")
        ours = g[g["variant"] == "ours"].set_index("fold")
        rec = {"backbone": label(BACKBONE_LABELS, bb), "method": label(METHOD_LABELS, m)}
        for met in ("mcr", "scr"):
            d = 100 * (ours[met] - base[met])
            rec[f"d{met.upper()} (pp)"] = M.format_mean_std(d.mean(), d.std(ddof=1) if len(d) > 1 else None, scale=1)
            rec[f"{met.upper()} up in folds"] = f"{int((d > 0).sum())}/{len(d)}"
            rec[f"d{met}"] = float(d.mean())
        rec["MCR up"] = rec["dmcr"] > 0
        rec["SCR up more than MCR"] = rec["dscr"] > max(rec["dmcr"], 0)
        out.append(rec)
    return pd.DataFrame(out)


def verdict_text(verdicts: pd.DataFrame, profile: str) -> str:
    """A short written verdict per claim, from `verdict` tables (with a `dataset` column)."""
    lines = []
    for ds, g in verdicts.groupby("dataset", sort=False):
        n = len(g)
        best = g.loc[g["dscr"].idxmax()]
        lines.append(
            f"- **{ds}**: the perturbation raised MCR for {int(g['MCR up'].sum())} of {n} (backbone, method) pairs "
            f"(mean change {g['dmcr'].mean():+.2f} pp, from {g['dmcr'].min():+.2f} to {g['dmcr'].max():+.2f}) and "
            f"raised SCR by more than MCR for {int(g['SCR up more than MCR'].sum())} of {n} (mean SCR change "
            f"{g['dscr'].mean():+.2f} pp; largest {best['dscr']:+.2f} pp for {best['backbone']} {best['method']}).")
    claim1 = bool(verdicts["MCR up"].all())
    claim2 = bool(verdicts["SCR up more than MCR"].all())
    lines.append(f"- Claim 1 (MCR rises for every baseline): **{'holds' if claim1 else 'does not hold'}** here. "
                 f"Claim 2 (SCR rises more strongly): **{'holds' if claim2 else 'does not hold'}** for every pair.")
    if profile == "smoke":
        lines.append("- Smoke profile: synthetic data, a tiny CNN, few epochs and 2 folds. These numbers show that "
                     "every step runs; they are not evidence for or against the paper.")
    return "\n".join(lines)
