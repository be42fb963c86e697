"""Paper 001 (Galdran et al., MICCAI 2021): Balanced-MixUp. Tables, figures and claims of notebook 02.

The notebook builds one `Experiment` per (task, backbone) with `experiments`, trains every method on every unit
(fold x seed) with `run_task` (cached runs: re-rendering never retrains), and turns the rows into the paper's
tables (`table1`, `table2`, `table3`), figures (`figure1`, `figure3`, `alpha_figure`), the effect table and the
claims file (`effects`, `claims`).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats

from kitlib.claims import verdict_text  # noqa: F401 (the one written verdict of every notebook)
from kitlib import claims as C
from kitlib import metrics as M
from kitlib import report
from kitlib.data.core import ImageArrays
from kitlib.experiment import Experiment
from kitlib.progress import bar

PAPER = "balanced_mixup"

# baseline method names (kitlib.methods) -> the row names of the paper's tables (results/reference)
BASELINES = {"rs": "class-sampling", "ce": "instance-sampling", "sqrt": "sqrt-sampling", "focal": "FL", "cb": "CB"}
PAPER_BACKBONES = ("MobileNetV2", "ResNeXt50")  # the paper's small and large model, in that order
PAPER_DATA = {"dr": "eyepacs", "gi": "hyper_kvasir"}
PAPER_BACKBONE_NAMES = ("mobilenet_v2", "resnext50_bit")
BACKBONE_LABELS = {"mobilenet_v2": "MobileNetV2", "resnext50_bit": "ResNeXt50 (BiT)",
                   "resnext50_32x4d": "ResNeXt50", "resnet18": "ResNet18", "resnet50": "ResNet50"}
# our metric keys (kitlib.metrics) <-> the paper's column names (results/reference/balanced_mixup.csv)
DR_METRICS = {"kappa_quadratic": "quad_kappa", "mcc": "MCC", "kendall_tau": "kendall_tau"}
GI_METRICS = {"mcc": "MCC", "mcr": "B-ACC", "macro_f1": "macro_F1"}
METRIC_LABELS = {"kappa_quadratic": "quad-κ", "mcc": "MCC", "kendall_tau": "Kendall-τ", "mcr": "B-ACC",
                 "macro_f1": "macro-F1"}
REF_DATASET = {"table1": "EyePACS", "table2": "EyePACS", "table3": "Hyper-Kvasir"}
BACKBONE_RE = r"[a-z0-9_]+(@\d+)?"


def bmu(alpha: float) -> str:
    """Row name of Balanced-MixUp with this alpha (as in results/reference)."""
    return f"BalancedMixUp-a{alpha:g}"


def parse_backbone(spec: str) -> tuple[str, dict]:
    """"tiny_cnn@16" -> ("tiny_cnn", {"width": 16}); any other name -> (name, {})."""
    if not re.fullmatch(BACKBONE_RE, spec):
        raise ValueError(f"backbone {spec!r}: expected a kitlib.models name, or tiny_cnn@WIDTH")
    name, _, width = spec.partition("@")
    if width and name != "tiny_cnn":
        raise ValueError(f"backbone {spec!r}: only tiny_cnn takes a width (@N)")
    return name, ({"width": int(width)} if width else {})


def backbone_label(spec: str) -> str:
    name, kw = parse_backbone(spec)
    if name == "tiny_cnn":
        return f"TinyCNN-w{kw.get('width', 32)}"
    return BACKBONE_LABELS.get(name, name)


def method_grid(baselines, alphas, focal_gamma: float = 2.0, cb_beta: float = 0.9999, form: str = "text",
                lam_per: str = "batch") -> list[tuple[str, str, dict]]:
    """(row name, kitlib method, method params) for every baseline then Balanced-MixUp at every alpha."""
    params = {"focal": {"gamma": focal_gamma}, "cb": {"beta": cb_beta}}
    grid = [(BASELINES[b], b, params.get(b, {})) for b in baselines]
    return grid + [(bmu(a), "balanced_mixup", {"alpha": float(a), "form": form, "lam_per": lam_per}) for a in alphas]


def subsample(arrays: ImageArrays, n: int | None, seed: int = 0) -> ImageArrays:
    """A stratified random subset of n images (all when n is None or >= the dataset), order kept; every class
    keeps at least one image."""
    if n is None or n >= len(arrays):
        return arrays
    rng = np.random.default_rng(seed)
    y = arrays.labels
    counts = np.bincount(y, minlength=arrays.num_classes)
    take = np.maximum(1, np.round(counts * n / len(y))).astype(int)
    keep = np.concatenate([rng.choice(np.flatnonzero(y == c), min(int(k), int(counts[c])), replace=False)
                           for c, k in enumerate(take) if counts[c]])
    return arrays.subset(np.sort(keep))


def experiments(arrays: ImageArrays, backbones, *, protocol: str, folds: int, seed: int, val_frac: float,
                image_size: int | None, train: dict, device: str, run_root=None, pretrained: bool = False,
                progress: bool = True) -> dict[str, Experiment]:
    """One Experiment per backbone spec (same splits: they depend only on data, protocol and seed)."""
    out = {}
    for spec in backbones:
        _, kw = parse_backbone(spec)
        out[spec] = Experiment(arrays, protocol=protocol, folds=folds, seed=seed, val_frac=val_frac,
                               image_size=image_size, augment={"flip": True}, train=train, device=device,
                               run_root=run_root, progress=progress, pretrained=pretrained, model=kw)
    return out


def statistics(named: dict[str, ImageArrays]) -> pd.DataFrame:
    """Dataset statistics of what was loaded: images, classes, smallest/largest class, imbalance, image size."""
    rows = []
    for task, arrays in named.items():
        counts = arrays.class_counts()
        h, w = arrays.images.shape[1:3]
        rows.append({"task": task, "dataset": arrays.name, "images": int(counts.sum()), "classes": arrays.num_classes,
                     "largest": int(counts.max()), "smallest": int(counts.min()),
                     "imbalance": round(float(counts.max() / max(counts.min(), 1)), 1), "loaded_size": f"{w}*{h}"})
    return pd.DataFrame(rows)


def _unit(fold: int, seed: int) -> str:
    return f"fold{fold}/seed{seed}"


def run_task(exps: dict[str, Experiment], methods, seeds, tta: str = "flip", external: ImageArrays | None = None,
             progress: bool = True) -> pd.DataFrame:
    """Train (cached) every backbone x method on every unit = (fold, seed); test metrics per unit.

    Returns one row per (backbone, method, unit) with every kitlib.metrics key (fractions), `at_chance` (the
    model's test MCR is not distinguishable from 1/C, kitlib.metrics.at_chance), `part` = "test" (the
    protocol's test split) and, when `external` is given, a second row per run with `part` = "external" (the same
    model on every image of the external set, no retraining; Table 2).
    """
    jobs = [(bb, m, sp.fold, s) for bb, exp in exps.items() for m in methods for sp in exp.splits for s in seeds]
    rows = []
    for bb, (label, name, params), fold, seed in bar(jobs, progress=progress, desc="runs", leave=False):
        exp = exps[bb]
        run = exp.train(fold, parse_backbone(bb)[0], name, params, seed=seed)
        base = {"backbone": bb, "method": label, "unit": _unit(fold, seed), "fold": fold, "seed": seed,
                "run": run.key, "best_epoch": run.best_epoch}
        probs = exp.predict(run, fold, tta=tta)
        base["at_chance"] = M.at_chance(exp.labels(fold), probs)
        rows.append({**base, "part": "test", **exp.evaluate(probs, fold)})
        if external is not None:
            probs = exp.predict_arrays(run, external, tta=tta)
            mets = M.evaluate(external.labels, probs, train_counts=exp.train_counts(fold),
                              num_classes=exp.arrays.num_classes)
            rows.append({**base, "part": "external", **mets})
    return pd.DataFrame(rows)


def lambdas(exps: dict[str, Experiment], alphas, form: str = "text", lam_per: str = "batch",
            seed: int = 0) -> pd.DataFrame:
    """The lambdas Balanced-MixUp drew while training (cached runs of the last backbone, fold 0): alpha, lambda."""
    bb = list(exps)[-1]
    exp = exps[bb]
    rows = []
    for a in alphas:
        run = exp.train(0, parse_backbone(bb)[0], "balanced_mixup",
                        {"alpha": float(a), "form": form, "lam_per": lam_per}, seed=seed)
        drawn = [v for epoch in run.history.get("lambdas", pd.Series(dtype=object)).dropna() for v in epoch]
        rows += [{"alpha": float(a), "lambda": v} for v in drawn]
    return pd.DataFrame(rows, columns=["alpha", "lambda"])


# --------------------------------------------------------------------------- tables
def _agg(rows: pd.DataFrame, metrics, how: str) -> pd.DataFrame:
    """Per (backbone, method, metric): centre (mean or median over units, x100), std, min, max, n."""
    out = []
    for (bb, m), g in rows.groupby(["backbone", "method"], sort=False):
        for met in metrics:
            v = 100 * g[met].to_numpy(dtype=float)
            v = v[~np.isnan(v)]
            centre = (np.median(v) if how == "median" else np.mean(v)) if v.size else np.nan
            out.append({"backbone": bb, "method": m, "metric": met, "value": centre,
                        "std": float(np.std(v, ddof=1)) if v.size > 1 else np.nan,
                        "min": v.min() if v.size else np.nan, "max": v.max() if v.size else np.nan, "n": v.size})
    return pd.DataFrame(out)


def results_table(rows: pd.DataFrame, task: str, how: str = "mean") -> pd.DataFrame:
    """Our Table 1 (task "dr": mean (std) over units) or Table 3 ("gi": median [min, max] over folds), wide:
    one row per (backbone, method), one column per metric, in percent."""
    metrics = DR_METRICS if task == "dr" else GI_METRICS
    agg = _agg(rows[rows["part"] == "test"], list(metrics), how)

    def cell(r):
        if np.isnan(r["value"]):
            return ""
        if how == "median":
            return f"{r['value']:.2f} [{r['min']:.2f}, {r['max']:.2f}]"
        return f"{r['value']:.2f}" + (f" ({r['std']:.2f})" if r["n"] > 1 else "")

    agg["cell"] = agg.apply(cell, axis=1)
    agg["backbone"] = agg["backbone"].map(backbone_label)
    wide = agg.pivot_table(index=["backbone", "method"], columns="metric", values="cell", aggfunc="first",
                           sort=False).reset_index()
    wide.columns.name = None
    return wide.rename(columns={k: METRIC_LABELS[k] for k in metrics})[
        ["backbone", "method", *(METRIC_LABELS[k] for k in metrics)]]


def paper_vs_ours(rows: pd.DataFrame, task: str, dataset: str, backbones, setting: str, same_setup: bool,
                  how: str = "mean") -> pd.DataFrame:
    """Absolute table: the paper's number beside ours, each side labelled with what it is; `diff` only where
    dataset, backbone and protocol are the paper's (`same_setup`)."""
    table = "table1" if task == "dr" else "table3"
    metrics = DR_METRICS if task == "dr" else GI_METRICS
    ref = report.load_reference(PAPER, table=table)
    agg = _agg(rows[rows["part"] == "test"], list(metrics), how)
    out = []
    for role, bb in enumerate(backbones[:2]):
        for _, r in agg[agg["backbone"] == bb].iterrows():
            key = f"{PAPER_BACKBONES[role]}|{r['method']}"
            col = f"{REF_DATASET[table]}|{metrics[r['metric']]}"
            hit = ref[(ref["row"] == key) & (ref["column"] == col)]
            p = float(hit["value"].iloc[0]) if len(hit) else np.nan
            out.append({"method": r["method"], "metric": METRIC_LABELS[r["metric"]],
                        "paper setting": f"{PAPER_BACKBONES[role]}, {REF_DATASET[table]}",
                        "paper": "" if np.isnan(p) else f"{p:.2f}",
                        "our setting": f"{backbone_label(bb)}, {dataset}, {setting}",
                        "ours": "" if np.isnan(r["value"]) else f"{r['value']:.2f}",
                        "diff": f"{r['value'] - p:+.2f}" if same_setup and not np.isnan(p) else ""})
    return pd.DataFrame(out)


def table2(rows: pd.DataFrame | None, dr_name: str, ext_name: str | None, why_not: str = "") -> pd.DataFrame:
    """Table 2: quad-κ of the Table 1 models on the DR test split and, without retraining, on the external set
    (mean (std) over units), beside the paper's Rx50 alpha = 0.2 and the published methods it quotes."""
    ref = report.load_reference(PAPER, table="table2")
    out = []
    for _, r in ref.iterrows():
        where = r["column"].split("|")[0]
        out.append({"source": "paper", "model": r["row"], "test set": where, "quad-κ": f"{r['value']:.2f}"})
    if rows is None or rows.empty:
        return pd.DataFrame(out)
    for (bb, m), g in rows.groupby(["backbone", "method"], sort=False):
        for part, name in (("test", f"{dr_name} (test split)"),
                           ("external", f"{ext_name or 'external'} (external, no retraining)")):
            v = 100 * g.loc[g["part"] == part, "kappa_quadratic"].to_numpy(dtype=float)
            if part == "external" and not v.size:
                cell = f"not run: {why_not}" if why_not else "not run"
            else:
                cell = f"{np.nanmean(v):.2f}" + (f" ({np.nanstd(v, ddof=1):.2f})" if v.size > 1 else "")
            out.append({"source": "ours", "model": f"{backbone_label(bb)}|{m}", "test set": name,
                        "quad-κ": cell})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- figures
def figure1(named: dict[str, ImageArrays]):
    """Fig. 1: images per class of each task, largest class left; one panel per task (left DR, right GI)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(named), figsize=(5.2 * len(named), 3.8), squeeze=False)
    for ax, (title, arrays), tag in zip(axes[0], named.items(), "abcdefgh"):
        counts = arrays.class_counts()
        order = np.argsort(-counts, kind="stable")
        bars = ax.bar(np.arange(len(counts)), counts[order], color="#4c72b0")
        ax.bar_label(bars, labels=[str(int(c)) for c in counts[order]], fontsize=7, padding=1)
        ax.set_xticks(np.arange(len(counts)), [arrays.class_names[i] for i in order], rotation=45, ha="right",
                      fontsize=7)
        ax.set_xlabel("Class (largest to smallest)")
        ax.set_ylabel("Number of images")
        ax.set_title(f"({tag}) {title}: {arrays.name}, K = {arrays.num_classes}")
        ax.margins(y=0.12)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def figure3(alphas, drawn: pd.DataFrame | None = None, form: str = "text"):
    """Fig. 3: (a) Beta(alpha, 1) densities; (b) histograms of the lambdas drawn in training with their density."""
    import matplotlib.pyplot as plt

    x = np.linspace(0.005, 0.995, 400)
    panels = 2 if drawn is not None and len(drawn) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False)
    ax = axes[0][0]
    styles = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1))]
    for i, a in enumerate(alphas):
        ax.plot(x, stats.beta(a, 1).pdf(x), linestyle=styles[i % len(styles)], label=f"α = {a:g}")
    ax.set_yscale("log")
    ax.set_xlabel("λ (weight of the class-balanced sample)" if form == "text" else "λ (weight of the instance sample)")
    ax.set_ylabel("density (log scale)")
    ax.set_title("(a) Beta(α, 1) densities")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    if panels == 2:
        ax = axes[0][1]
        for i, (a, g) in enumerate(drawn.groupby("alpha")):
            ax.hist(g["lambda"], bins=np.linspace(0, 1, 26), density=True, histtype="step", linewidth=1.5,
                    label=f"α = {a:g}: {len(g)} draws", color=f"C{i}")
            ax.plot(x, stats.beta(a, 1).pdf(x), color=f"C{i}", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("λ drawn in training")
        ax.set_ylabel("density (log scale)")
        ax.set_title("(b) drawn λ (histogram) vs Beta(α, 1) (dotted)")
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def alpha_figure(rows: pd.DataFrame, metric: str, alphas, baselines, title: str):
    """Sensitivity to alpha: the metric (mean ± std over units) against alpha, one panel per backbone; each
    baseline a horizontal line with its own colour and dash."""
    import matplotlib.pyplot as plt

    rows = rows[rows["part"] == "test"]
    bbs = list(pd.unique(rows["backbone"]))
    fig, axes = plt.subplots(1, len(bbs), figsize=(4.8 * len(bbs) + 1.6, 3.8), squeeze=False, sharey=True)
    dashes = ["--", ":", "-.", (0, (5, 2)), (0, (1, 1)), (0, (3, 1, 1, 1))]
    for ax, bb, tag in zip(axes[0], bbs, "abcdefgh"):
        g = rows[rows["backbone"] == bb]
        means, stds = [], []
        for a in alphas:
            v = 100 * g.loc[g["method"] == bmu(a), metric].to_numpy(dtype=float)
            means.append(np.nanmean(v) if v.size else np.nan)
            stds.append(np.nanstd(v, ddof=1) if v.size > 1 else 0.0)
        ax.errorbar(alphas, means, yerr=stds, marker="o", color="k", capsize=3, label="Balanced-MixUp")
        for i, b in enumerate(baselines):
            v = 100 * g.loc[g["method"] == BASELINES[b], metric].to_numpy(dtype=float)
            if v.size:
                ax.axhline(np.nanmean(v), color=f"C{i}", linestyle=dashes[i % len(dashes)], linewidth=1.3,
                           label=BASELINES[b])
        ax.set_xticks(list(alphas))
        ax.set_xlabel("α of Balanced-MixUp")
        ax.set_ylabel(f"{METRIC_LABELS[metric]} (%)")
        ax.set_title(f"({tag}) {backbone_label(bb)}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- effects and claims
def _scores(rows: pd.DataFrame, bb: str, method: str, metric: str, part: str = "test") -> pd.Series:
    g = rows[(rows["backbone"] == bb) & (rows["method"] == method) & (rows["part"] == part)]
    return pd.Series(100 * g[metric].to_numpy(dtype=float), index=g["unit"].to_numpy())


def _ref(table: str, role: int, method: str, metric: str) -> float | None:
    metrics = DR_METRICS if table == "table1" else GI_METRICS
    ref = report.load_reference(PAPER, table=table)
    hit = ref[(ref["row"] == f"{PAPER_BACKBONES[role]}|{method}") &
              (ref["column"] == f"{REF_DATASET[table]}|{metrics[metric]}")]
    return float(hit["value"].iloc[0]) if len(hit) else None


def _paper_diff(table, role, a, b, metric):
    pa, pb = _ref(table, role, a, metric), _ref(table, role, b, metric)
    return None if pa is None or pb is None else pa - pb


def effects(rows: pd.DataFrame, task: str, backbones, alphas, baselines) -> pd.DataFrame:
    """Effect table: Balanced-MixUp (every alpha) minus every baseline, per backbone, on the task's main metric
    (quad-κ for DR, MCC for GI), ours paired by unit with its spread and 95 % bootstrap CI, beside the paper's."""
    table = "table1" if task == "dr" else "table3"
    metric = "kappa_quadratic" if task == "dr" else "mcc"
    out = []
    for role, bb in enumerate(backbones[:2]):
        for a in alphas:
            for b in baselines:
                e = C.paired_effect(_scores(rows, bb, bmu(a), metric), _scores(rows, bb, BASELINES[b], metric))
                p = _paper_diff(table, role, bmu(a), BASELINES[b], metric)
                out.append({"backbone": f"ours {backbone_label(bb)} / paper {PAPER_BACKBONES[role]}",
                            "contrast": f"{bmu(a)} - {BASELINES[b]}", "metric": f"{METRIC_LABELS[metric]} (pp)",
                            "paper_effect": np.nan if p is None else round(p, 2), "our_effect": e.mean,
                            "our_std": e.std, "ci_low": e.ci_low, "ci_high": e.ci_high, "n_units": e.n_units})
    return pd.DataFrame(out)


def _median_over_methods(rows, bb_a, bb_b, methods, metric) -> C.Effect:
    """Per unit: the median over methods of (backbone a - backbone b) ("for almost all methods": one outlying
    method does not decide), then the Effect of those unit values."""
    per = []
    for m in methods:
        per.append(_scores(rows, bb_a, m, metric) - _scores(rows, bb_b, m, metric))
    return C.Effect.from_diffs(pd.concat(per, axis=1).median(axis=1).to_numpy())


def _paper_median_over_methods(table, methods, metric, a_role, b_role):
    d = [(_ref(table, a_role, m, metric) or np.nan) - (_ref(table, b_role, m, metric) or np.nan) for m in methods]
    d = [x for x in d if not np.isnan(x)]
    return round(float(np.median(d)), 2) if d else None


def claims(dr: pd.DataFrame | None, gi: pd.DataFrame | None, backbones, alphas, baselines,
           why_not: dict[str, str]) -> list[dict]:
    """One claims.csv row per claim of the abstract, results and conclusion (kitlib.claims rule).

    dr / gi: run_task rows (None: that task was not run, the reason in why_not["dr"] / why_not["gi"]; the
    external set's reason in why_not["external"]). backbones: (small, large). Contrasts use alpha 0.1 for the
    small model and 0.2 for the large one, as the paper's text (when those alphas are in `alphas`). A contrast
    with a model at chance level (`at_chance` of run_task) counts as inconclusive.
    """
    small, large = backbones[0], backbones[1]
    a_small = 0.1 if 0.1 in alphas else alphas[0]
    a_large = 0.2 if 0.2 in alphas else alphas[-1]
    names = [BASELINES[b] for b in baselines]
    methods = names + [bmu(a) for a in alphas]
    rows = []

    def chance(task_rows, bb, *methods_):
        if task_rows is None or "at_chance" not in task_rows:
            return False
        g = task_rows[(task_rows["backbone"] == bb) & task_rows["method"].isin(methods_) & (task_rows["part"] == "test")]
        return bool(g["at_chance"].astype(bool).any())

    def every(cid, text, task_rows, table, metric, pairs, reason, contrast="Bal-MixUp - baseline, each pair"):
        claim = C.Claim(cid, text, contrast, f"{METRIC_LABELS[metric]} (pp)",
                        paper_effect=_min_paper(table, pairs, metric, backbones))
        if task_rows is None or not pairs:
            return C.judge(PAPER, claim, None, note=reason or "no pair to compare")
        eff, dead = {}, []
        for bb, a, b in pairs:
            key = f"{backbone_label(bb)} {a} - {b}"
            eff[key] = C.paired_effect(_scores(task_rows, bb, a, metric), _scores(task_rows, bb, b, metric))
            if chance(task_rows, bb, a, b):
                dead.append(key)
        return C.judge_every(PAPER, claim, eff, at_chance=dead)

    def all_chance(task_rows, *bbs):
        return any(chance(task_rows, bb, *methods) for bb in bbs)

    dr_pairs_s = [(small, bmu(a_small), b) for b in names]
    dr_pairs_l = [(large, bmu(a_large), b) for b in names]
    rows.append(every("dr_beats_baselines_small",
                      f"DR grading: Bal-MixUp (α={a_small:g}) beats every sampling/loss baseline with the small model",
                      dr, "table1", "kappa_quadratic", dr_pairs_s, why_not.get("dr", "")))
    rows.append(every("dr_beats_baselines_large",
                      f"DR grading: Bal-MixUp (α={a_large:g}) beats every sampling/loss baseline with the large model",
                      dr, "table1", "kappa_quadratic", dr_pairs_l, why_not.get("dr", "")))
    rows.append(every("dr_every_alpha_large",
                      "DR grading, large model: all three α beat every other alternative",
                      dr, "table1", "kappa_quadratic", [(large, bmu(a), b) for a in alphas for b in names],
                      why_not.get("dr", "")))
    rows.append(every("alpha_small_0.1_best", f"α = {a_small:g} is the best α for the small model (DR quad-κ)",
                      dr, "table1", "kappa_quadratic", [(small, bmu(a_small), bmu(a)) for a in alphas if a != a_small],
                      why_not.get("dr", ""), contrast=f"{bmu(a_small)} - each other alpha, small model"))
    rows.append(every("alpha_large_0.2_best", f"α = {a_large:g} is the best α for the large model (DR quad-κ)",
                      dr, "table1", "kappa_quadratic", [(large, bmu(a_large), bmu(a)) for a in alphas if a != a_large],
                      why_not.get("dr", ""), contrast=f"{bmu(a_large)} - each other alpha, large model"))
    claim = C.Claim("dr_large_model_better", "DR grading: the larger model raises the performance of (almost) all "
                    "methods", "large - small, median over methods", "quad-κ (pp)",
                    paper_effect=_paper_median_over_methods("table1", methods, "kappa_quadratic", 1, 0))
    rows.append(C.judge(PAPER, claim, None, note=why_not.get("dr", "")) if dr is None else
                C.judge(PAPER, claim, _median_over_methods(dr, large, small, methods, "kappa_quadratic"),
                        at_chance=all_chance(dr, small, large)))
    # Table 2: generalisation to an external set without retraining
    claim = C.Claim("t2_external_generalises", f"Bal-MixUp (large model, α={a_large:g}) trained on EyePACS keeps "
                    "its quad-κ on Messidor-2 without retraining (85.14 vs 80.78)",
                    f"external - internal test, {bmu(a_large)}", "quad-κ (pp)", test="greater", bound=-5.0,
                    paper_effect=85.14 - 80.78)
    ext = None if dr is None else dr[dr["part"] == "external"]
    if ext is None or ext.empty:
        rows.append(C.judge(PAPER, claim, None, note=why_not.get("external") or why_not.get("dr") or "no external set"))
    else:
        rows.append(C.judge(PAPER, claim, C.paired_effect(
            _scores(dr, large, bmu(a_large), "kappa_quadratic", "external"),
            _scores(dr, large, bmu(a_large), "kappa_quadratic", "test")), at_chance=chance(dr, large, bmu(a_large))))
    # GI (Table 3)
    rows.append(every("gi_mcc_beats_baselines", "GI long tail: Bal-MixUp improves MCC over every baseline, both "
                      f"models (α={a_small:g} small, {a_large:g} large)", gi, "table3", "mcc",
                      [(small, bmu(a_small), b) for b in names] + [(large, bmu(a_large), b) for b in names],
                      why_not.get("gi", "")))
    for metric, cid in (("mcr", "gi_small_model_better_bacc"), ("macro_f1", "gi_small_model_better_f1")):
        claim = C.Claim(cid, f"GI long tail: the smaller architecture is better on {METRIC_LABELS[metric]} for "
                        "(almost) all methods", "small - large, median over methods", f"{METRIC_LABELS[metric]} (pp)",
                        paper_effect=_paper_median_over_methods("table3", methods, metric, 0, 1))
        rows.append(C.judge(PAPER, claim, None, note=why_not.get("gi", "")) if gi is None else
                    C.judge(PAPER, claim, _median_over_methods(gi, small, large, methods, metric),
                                at_chance=all_chance(gi, small, large)))
    rows.append(every("gi_small_every_alpha_bacc", "GI, small model: Bal-MixUp raises B-ACC over instance sampling "
                      "for every α", gi, "table3", "mcr",
                      [(small, bmu(a), BASELINES["ce"]) for a in alphas] if "ce" in baselines else [],
                      why_not.get("gi", "") if gi is None else "instance sampling (ce) is not among the baselines"))
    return rows


def _min_paper(table, pairs, metric, backbones):
    vals = []
    for bb, a, b in pairs:
        role = list(backbones[:2]).index(bb)
        d = _paper_diff(table, role, a, b, metric)
        if d is not None:
            vals.append(d)
    return round(min(vals), 2) if vals else None




# --------------------------------------------------------------------------- notebook parameters
def _parameters():
    from kitlib import params as P
    from kitlib.experiment import PROTOCOLS
    from kitlib.infer import TTA
    from kitlib.methods import BALANCED_MIXUP_FORMS, LAMBDA_PER
    from kitlib.metrics import BASE_METRICS
    from kitlib.profiles import PROFILE_NAMES
    from kitlib.train import SCHEDULES

    dataset = P.Str(what="a dataset name (python -m kitlib datasets) or a path to your data")
    size = P.Optional(P.Int(lo=8))
    return P.Schema(
        profile=P.Str(choices=PROFILE_NAMES), device=P.DEVICE, out_dir=P.PATH,
        dr_dataset=P.Optional(dataset), dr_options=P.DictOf(), dr_protocol=P.Str(choices=PROTOCOLS),
        dr_folds=P.Int(lo=2), dr_image_size=size,
        external_dataset=P.Optional(dataset), external_options=P.DictOf(),
        gi_dataset=P.Optional(dataset), gi_options=P.DictOf(), gi_max_images=P.Optional(P.Int(lo=20)),
        gi_folds=P.Int(lo=2), gi_image_size=size,
        seeds=P.ListOf(P.Int(lo=0)), split_seed=P.Int(lo=0), val_frac=P.Float(0, 1, lo_open=True, hi_open=True),
        backbones=P.ListOf(P.Str(pattern=BACKBONE_RE, what="a kitlib.models name or tiny_cnn@WIDTH"), min_len=2),
        baselines=P.ListOf(P.Str(choices=list(BASELINES))), alphas=P.ListOf(P.Float(0, lo_open=True)),
        mix_form=P.Str(choices=BALANCED_MIXUP_FORMS), lam_per=P.Str(choices=LAMBDA_PER),
        focal_gamma=P.Float(0), cb_beta=P.Float(0, 1, hi_open=True), pretrained=P.Bool(),
        epochs=P.Int(lo=1), batch_size=P.Int(lo=1), lr=P.Float(0, lo_open=True), momentum=P.Float(0, 1, hi_open=True),
        weight_decay=P.Float(0), schedule=P.Str(choices=SCHEDULES), patience=P.Int(lo=0),
        lr_gamma=P.Float(0, 1, lo_open=True), cycle_epochs=P.Int(lo=1),
        dr_select=P.Str(choices=list(BASE_METRICS)), gi_select=P.Str(choices=list(BASE_METRICS)),
        tta=P.Str(choices=TTA), fig3_alphas=P.ListOf(P.Float(0, lo_open=True)), run_root=P.PATH,
    )


PARAMETERS = _parameters()
