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
    """Table 1: dataset statistics computed from the data actually loaded, beside the paper's.

    Counts and sizes are printed as integers, the imbalance ratio with one decimal (`diff` too, as text).
    """
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
    ints, ratio = (report.paper_vs_ours(ref, pd.DataFrame(ours), digits=d) for d in (0, 1))
    one = (ints["column"] == "imbalance").to_numpy()
    out = ints.copy()
    out.loc[one, ["paper", "ours"]] = ratio.loc[one, ["paper", "ours"]]
    out["diff"] = ["" if pd.isna(d) else f"{d + 0.0:.{1 if r else 0}f}" for d, r in zip(out["diff"], one)]
    return out


def select_eps(exp: Experiment, backbone: str, eps_grid, method: str = "ce", T: float = 1000.0,
               measure: str = "ce", space: str = "normalized", metric: str = "mcr", train: dict | None = None):
    """Choose eps on the validation splits, as the paper did (one backbone, pooled over folds).

    Returns (best eps, DataFrame: column eps, then every kitlib.metrics key averaged over folds, in percent).
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


def run_table2(exp: Experiment, backbones, methods, eps: float, T: float = 1000.0, measure: str = "ce",
               space: str = "normalized", train_by_backbone: dict | None = None) -> pd.DataFrame:
    """Every (backbone, method, fold): test metrics without ("baseline") and with ("ours") the perturbation.

    Returns one row per (backbone, method, variant, fold) with all kitlib.metrics keys (fractions) and
    `at_chance`: the trained model's MCR is not distinguishable from chance on the validation or the test split
    (kitlib.metrics.at_chance; the same for both variants, it is a property of the model).
    """
    rows = []
    for bb in backbones:
        for m in methods:
            for sp in exp.splits:
                run = exp.train(sp.fold, bb, m, **(train_by_backbone or {}).get(bb, {}))
                test = exp.images(sp.fold)
                plain = exp.predict(run, sp.fold)
                chance = (M.at_chance(exp.labels(sp.fold), plain)
                          or M.at_chance(exp.labels(sp.fold, "val"), exp.predict(run, sp.fold, "val")))
                ours = predict_perturbed(run.model, test, exp.train_counts(sp.fold), eps, T=T, measure=measure,
                                         space=space, **_pixel_stats(exp, space), batch_size=BATCH, progress=False)
                for variant, probs in (("baseline", plain), ("ours", ours)):
                    rows.append({"backbone": bb, "method": m, "variant": variant, "fold": sp.fold,
                                 "at_chance": chance, **exp.evaluate(probs, sp.fold)})
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
    """Seconds per image, plain vs perturbed, same model and test images, batched (median of `repeats`).

    The times and ratios are text with 3 significant digits ("0.000123", "2.60"), so they print alike
    whatever float_format the table is written with.
    """
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
    def sig3(x):
        return f"{x:#.3g}".rstrip(".")  # 3 significant digits, trailing zeros kept: "0.000123", "2.60", "5.12e-05"

    return pd.DataFrame([{"backbone": label(BACKBONE_LABELS, backbone), "device": str(device), "batch": batch_size,
                          "plain_s_per_image": sig3(plain), "perturbed_s_per_image": sig3(pert),
                          "ratio": sig3(pert / plain), "paper_ratio": sig3(0.283 / 0.107)}])


def verdict(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, method): does the perturbation raise MCR, and SCR more than MCR?

    Differences are paired by fold (ours - baseline, percentage points): their mean, the 95% percentile
    bootstrap interval of that mean (kitlib.metrics.bootstrap_mean_ci) and how many folds went up. A call is
    "up" / "down" only when the interval excludes 0 (with 2 folds: both folds moved the same way), else
    "inconclusive" (always with a single fold). "SCR up more than MCR" is "yes" when SCR is up and so is the
    paired SCR - MCR difference, "no" when either is down. A pair whose model is at chance in any fold
    (`at_chance` from run_table2) gets no call and the note kitlib.metrics.AT_CHANCE.
    """
    if "at_chance" not in rows.columns:
        raise ValueError("verdict: rows lack the at_chance column; make them with run_table2")

    def call(d):
        lo, hi = M.bootstrap_mean_ci(d)
        return ("up" if lo > 0 else "down" if hi < 0 else "inconclusive"), f"[{lo:+.2f}, {hi:+.2f}]"

    out = []
    for (bb, m), g in rows.groupby(["backbone", "method"], sort=False):
        base = g[g["variant"] == "baseline"].set_index("fold").sort_index()
        ours = g[g["variant"] == "ours"].set_index("fold").reindex(base.index)
        d = {met: 100 * (ours[met] - base[met]).to_numpy(dtype=float) for met in ("mcr", "scr")}
        chance = int(base["at_chance"].astype(bool).sum())
        rec = {"backbone": label(BACKBONE_LABELS, bb), "method": label(METHOD_LABELS, m), "folds": len(base),
               "at chance in folds": f"{chance}/{len(base)}"}
        calls = {}
        for met in ("MCR", "SCR"):
            x = d[met.lower()]
            calls[met], ci = call(x)
            rec.update({f"d{met} (pp)": float(np.mean(x)), f"d{met} 95% CI (pp)": ci,
                        f"{met} up in folds": f"{int((x > 0).sum())}/{len(x)}", met: calls[met]})
        more, _ = call(d["scr"] - d["mcr"])
        rec["SCR up more than MCR"] = ("yes" if calls["SCR"] == "up" and more == "up" else
                                       "no" if "down" in (calls["SCR"], more) else "inconclusive")
        if chance:
            rec.update({"MCR": "n/a", "SCR": "n/a", "SCR up more than MCR": "n/a"})
        rec["note"] = M.AT_CHANCE if chance else ""
        out.append(rec)
    return pd.DataFrame(out)


def verdict_text(verdicts: pd.DataFrame, profile: str) -> str:
    """A short written verdict per claim, from `verdict` tables (with a `dataset` column).

    Pairs at chance are listed and left out of the claims: they are not evidence for or against them.
    """
    lines = []
    live = verdicts[verdicts["note"] != M.AT_CHANCE]
    for ds, g in verdicts.groupby("dataset", sort=False):
        dead = g[g["note"] == M.AT_CHANCE]
        g = g[g["note"] != M.AT_CHANCE]
        text = f"- **{ds}**: "
        if len(dead):
            text += (f"{len(dead)} of {len(dead) + len(g)} (backbone, method) pairs have a model "
                     f"{M.AT_CHANCE} ({', '.join(dead['backbone'] + ' ' + dead['method'])}). ")
        if len(g):
            n, mc, sc = len(g), g["MCR"].value_counts(), g["SCR up more than MCR"].value_counts()
            best = g.loc[g["dSCR (pp)"].idxmax()]
            text += (f"Of {n} pair(s), the perturbation raised MCR for {mc.get('up', 0)}, lowered it for "
                     f"{mc.get('down', 0)}, inconclusive for {mc.get('inconclusive', 0)} (mean change "
                     f"{g['dMCR (pp)'].mean():+.2f} pp, from {g['dMCR (pp)'].min():+.2f} to {g['dMCR (pp)'].max():+.2f}); "
                     f"SCR rose more than MCR for {sc.get('yes', 0)}, not for {sc.get('no', 0)}, inconclusive for "
                     f"{sc.get('inconclusive', 0)} (mean SCR change {g['dSCR (pp)'].mean():+.2f} pp; largest "
                     f"{best['dSCR (pp)']:+.2f} pp for {best['backbone']} {best['method']}).")
        lines.append(text.rstrip())

    def claim(col, yes):
        if live.empty:
            return "no evidence either way (every model is at chance)"
        if (live[col] == yes).all():
            return "holds"
        if live[col].isin(["down", "no"]).any():
            return "does not hold"
        return "inconclusive (not every pair moved the same way in every fold)"

    lines.append(f"- Claim 1 (MCR rises for every baseline): **{claim('MCR', 'up')}** here. "
                 f"Claim 2 (SCR rises more strongly): **{claim('SCR up more than MCR', 'yes')}**."
                 + (" Pairs at chance are left out of both." if len(live) < len(verdicts) and len(live) else ""))
    if profile == "smoke":
        lines.append("- Smoke profile: synthetic data, a tiny CNN, few epochs and 2 folds. These numbers show that "
                     "every step runs; they are not evidence for or against the paper.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- notebook parameters
def _parameters():
    from kitlib import params as P
    from kitlib.experiment import PROTOCOLS
    from kitlib.methods import METHODS, TWO_STAGE
    from kitlib.models import BACKBONES
    from kitlib.perturb import MEASURES, SPACES
    from kitlib.profiles import PROFILE_NAMES
    from kitlib.train import SCHEDULES

    methods = P.ListOf(P.Str(choices=[m for m in METHODS if m not in TWO_STAGE]))
    backbones = P.ListOf(P.Str(choices=BACKBONES))
    per_dataset, per_backbone = ("datasets",), ("backbones", "eps_backbones")
    size = P.Optional(P.Int(lo=8))
    return P.Schema(
        profile=P.Str(choices=PROFILE_NAMES), device=P.DEVICE, out_dir=P.PATH,
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
    )


PARAMETERS = _parameters()
