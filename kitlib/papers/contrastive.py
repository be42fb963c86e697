"""Paper 002 (Marrakchi et al., MICCAI 2021): fighting class imbalance with contrastive learning. Notebook 03.

Every function takes an `Experiment` (one dataset, one 7:3 split) and returns tidy DataFrames or figures;
training goes through the run cache (`Experiment.train`), so re-rendering never retrains. The units of
every interval are training seeds (the paper: "3 independent runs").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from kitlib import claims as C
from kitlib import metrics as M
from kitlib import report
from kitlib.experiment import Experiment

PAPER = "contrastive"
PAPER_SETTING = "paper: ResNet50, 224 px crops of 256 px, 1000/250 epochs"
BACKBONE_LABELS = {"resnet50": "ResNet50", "resnet18": "ResNet18", "tiny_cnn": "TinyCNN"}
PAPER_DATASETS = ("ISIC2018", "APTOS2019")
"""The paper's datasets; the notebook maps each to one of ours (the `datasets` parameter)."""
ROWS = ("CE", "FL", "LDAM", "CL", "CE+RS", "CL+RS")
"""Table 1/2 rows in the paper's order; "RS" is the paper's "+ resample" (oversampling by copies)."""


@dataclass(frozen=True)
class Recipe:
    """How one Table 1/2 row is trained: a kitlib method (two-stage written "X->crs") and its parameters."""

    method: str
    params: dict
    resample: bool


def recipes(tau: float, base_temperature: float | None = None, proj_dim: int = 128, stage1_sampler: str = "oversample",
            focal_gamma: float = 2.0) -> dict[str, Recipe]:
    """The six rows of Tables 1-2. CL = supervised contrastive stage 1 (Eq. 1) then a linear head on frozen
    features trained with CE (Eq. 2) on class-balanced batches ("->crs"); "+RS" oversamples in stage 1."""
    sup = {"temperature": tau, "base_temperature": base_temperature, "proj_dim": proj_dim}
    return {
        "CE": Recipe("ce", {}, False),
        "FL": Recipe("focal", {"gamma": focal_gamma}, False),
        "LDAM": Recipe("ldam", {}, False),
        "CL": Recipe("supcon->crs", {**sup, "sampler": "instance"}, False),
        "CE+RS": Recipe("ce_os", {}, True),
        "CL+RS": Recipe("supcon->crs", {**sup, "sampler": stage1_sampler}, True),
    }


def _updates_matched_epochs(exp: Experiment, epochs: int) -> int:
    """Epochs with oversampling that give about the same number of updates as `epochs` without (Sect. 4.3:
    1000 vs 250 on ISIC): an oversampled epoch holds C x (largest class) items instead of N."""
    counts = exp.train_counts(0)
    return max(1, int(round(epochs * counts.sum() / (len(counts) * counts.max()))))


def train_row(exp: Experiment, recipe: Recipe, backbone: str, seed: int, epochs: int, stage2: dict,
              select: str = "last", extra_params: dict | None = None):
    """The trained run of one row and seed (cached). Stage 1 keeps `select` ("last": no selection on any
    split; "best": best validation epoch); stage 2 uses `stage2` (TrainConfig fields, incl. its own select)."""
    ep = _updates_matched_epochs(exp, epochs) if recipe.resample else epochs
    params = {**recipe.params, **(extra_params or {})}
    # the contrastive stage has no classifier to score on validation: it always keeps its last epoch
    sel = "last" if recipe.method.startswith("supcon") else select
    kw = {"stage2": stage2} if "->" in recipe.method else {}
    return exp.train(0, backbone, recipe.method, params, seed=seed, epochs=ep, select=sel, **kw)


def class_groups(exp: Experiment, n_major: int = 1, n_minor: int = 4) -> dict[str, list[int]]:
    """Table 3 groups from the *training* counts: the n_major largest classes, the n_minor smallest, the rest
    middle (ISIC 2018: nv >= 6000 images; mel, bkl ~1100; bcc, akiec, vasc, df <= 550)."""
    return M.class_groups_by_count(exp.train_counts(0), n_major, n_minor)


def groups_table(exp: Experiment, groups: dict, dataset: str) -> pd.DataFrame:
    counts = exp.train_counts(0)
    return pd.DataFrame([{"dataset": dataset, "group": g, "class": exp.class_names[c], "train_images": int(counts[c])}
                         for g, ids in groups.items() for c in sorted(ids, key=lambda c: -counts[c])])


def run_rows(exp: Experiment, rows: dict[str, Recipe], backbone: str, seeds, epochs: int, stage2: dict,
             select: str = "last", groups: dict | None = None) -> pd.DataFrame:
    """Test metrics of every (row, seed): one record each with every kitlib.metrics key (fractions),
    `f1_<group>` for the Table 3 groups and `at_chance` (kitlib.metrics.at_chance on the test split)."""
    out = []
    for name, rec in rows.items():
        for s in seeds:
            run = train_row(exp, rec, backbone, s, epochs, stage2, select)
            probs = exp.predict(run, 0)
            out.append({"row": name, "seed": s, "key": run.key, "at_chance": M.at_chance(exp.labels(0), probs),
                        **exp.evaluate(probs, 0, class_groups=groups)})
    return pd.DataFrame(out)


def _ours_long(results: pd.DataFrame, table: str, ds: str, metrics=("acc", "macro_F1")) -> pd.DataFrame:
    key = {"acc": "acc", "macro_F1": "macro_f1"}
    agg = results.groupby("row", sort=False)
    return pd.DataFrame([{"table": table, "row": r, "column": f"{ds}|{m}", "value": g[key[m]].mean(),
                          "spread": g[key[m]].std(ddof=1) if len(g) > 1 else np.nan}
                         for r, g in agg for m in metrics])


def _tau_key(tau: float) -> str:
    """Temperature as the reference rows spell it: 0.01, 0.05, 0.1, 0.5, 1.0."""
    return f"{tau:g}" + (".0" if float(tau).is_integer() else "")


def table12(results: pd.DataFrame, dataset: str, ours_label: str, same_setting: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours, paper vs ours) for Table 1 (ISIC 2018) or Table 2 (APTOS 2019): accuracy and macro F-score,
    mean (std over seeds). The paper's side is labelled with its setting and ours with ours; `diff` is filled
    only when `same_setting` (the paper profile on the paper's dataset), else left empty."""
    ds = dataset
    table = "table1" if ds == "ISIC2018" else "table2"
    ours = _ours_long(results, table, ds)
    ref = report.load_reference(PAPER, table=table)
    ref = ref.assign(row=ref["row"].str.replace("ResNet50|", "", regex=False))
    side = report.paper_vs_ours(ref, ours, digits=3)
    if not same_setting:
        side["diff"] = ""
    side = side.rename(columns={"paper": PAPER_SETTING, "ours": f"ours: {ours_label}"})
    return ours, side


def figure3(results: pd.DataFrame, exp: Experiment, dataset: str, pair=("CE", "CL")):
    """Fig. 3: per-class F-score of CE and CL (mean over seeds), classes largest to smallest (training)."""
    counts = exp.train_counts(0)
    order = np.argsort(-counts, kind="stable")
    data = pd.DataFrame({m: [results.loc[results["row"] == m, f"f1_{c}"].mean() for c in order] for m in pair},
                        index=[f"{exp.class_names[c]} ({counts[c]})" for c in order])
    fig = report.plot_per_class_bars(data, title=f"Fig. 3: per-class F-score, {dataset} (training images in brackets)",
                                     ylabel="F-score", scale=1.0)
    return fig, data.rename_axis("class (train images)").reset_index()


def run_temperature(exp: Experiment, taus, backbone: str, seeds, epochs: int, stage2: dict, groups: dict,
                    base_temperature: float | None = None, proj_dim: int = 128,
                    stage1_sampler: str = "oversample") -> pd.DataFrame:
    """Table 3 data: CL and CL+RS at each temperature, every seed: f1 per group and macro F1."""
    out = []
    for tau in taus:
        rows = {k: v for k, v in recipes(tau, base_temperature, proj_dim, stage1_sampler).items() if k in ("CL", "CL+RS")}
        r = run_rows(exp, rows, backbone, seeds, epochs, stage2, groups=groups)
        out.append(r.assign(tau=float(tau), resample=r["row"] == "CL+RS"))
    return pd.concat(out, ignore_index=True)


def table3(temps: pd.DataFrame, groups: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours as the paper prints it: 'without/with' per group, paper beside ours)."""
    ref = report.load_reference(PAPER, table="table3")
    rows = []
    for tau, g in temps.groupby("tau", sort=True):
        rec = {"temperature": tau}
        for grp in groups:
            vals = []
            for rs in (False, True):
                x = g.loc[g["resample"] == rs, f"f1_{grp}"]
                vals.append(f"{x.mean():.3f}" if len(x) else "")
            rec[f"ours {grp} (without/with)"] = "/".join(vals)
            p = [ref.loc[(ref["row"] == f"ResNet50|{'CL+RS' if rs else 'CL'}-tau{_tau_key(tau)}")
                         & (ref["column"] == f"ISIC2018|F1_{grp}"), "value"] for rs in (False, True)]
            p = [f"{v.iloc[0]:.3f}" if len(v) else "" for v in p]
            rec[f"paper {grp} (without/with)"] = "/".join(p) if any(p) else ""
        rows.append(rec)
    long = temps.melt(id_vars=["tau", "resample", "seed"], value_vars=[f"f1_{g}" for g in groups],
                      var_name="group", value_name="f1")
    long = long.groupby(["tau", "resample", "group"], as_index=False)["f1"].agg(["mean", "std", "count"]).reset_index()
    return pd.DataFrame(rows), long


@torch.no_grad()
def test_features(run, exp: Experiment, batch_size: int = 256) -> np.ndarray:
    """Pooled backbone features (N, D) of the test images, L2-normalised (the space Eq. 1 acts on)."""
    model = run.model.eval()
    dev = next(model.parameters()).device
    x = exp.images(0, "test")
    feats = [model(x[i:i + batch_size].to(dev), out="feat").float().cpu() for i in range(0, len(x), batch_size)]
    return torch.nn.functional.normalize(torch.cat(feats), dim=1).numpy()


def feature_space(exp: Experiment, runs: dict, max_points: int = 1000, seed: int = 0, perplexity: float = 30.0):
    """Beyond the paper: t-SNE (scikit-learn) of the same test images' features for each run, and the
    silhouette score of the test features by class (cosine distance; higher = classes better separated).
    runs: {label: TrainedRun}. Returns (figure with one panel per run, silhouette table)."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    y = exp.labels(0, "test")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(y), size=min(max_points, len(y)), replace=False))
    counts = exp.train_counts(0)
    order = np.argsort(-counts, kind="stable")
    palette = report._palette(len(order))
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs) + 1.8, 4.0), squeeze=False)
    sil = []
    for ax, (name, run) in zip(axes[0], runs.items()):
        f = test_features(run, exp)[keep]
        sil.append({"run": name, "silhouette_cosine": float(silhouette_score(f, y[keep], metric="cosine")),
                    "points": len(keep)})
        emb = TSNE(n_components=2, perplexity=min(perplexity, (len(keep) - 1) / 3), init="pca", random_state=seed,
                   metric="cosine").fit_transform(f)
        for j, c in enumerate(order):
            m = y[keep] == c
            ax.scatter(emb[m, 0], emb[m, 1], s=6, color=palette[j], label=f"{exp.class_names[c]} ({counts[c]})",
                       marker="os^vDP*"[j % 7], alpha=0.7)
        ax.set_title(f"{name}: silhouette {sil[-1]['silhouette_cosine']:.3f}")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    axes[0][-1].legend(title="class (train images)", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                       markerscale=2)
    fig.suptitle("Test features (pooled backbone output), same images in each panel")
    fig.tight_layout()
    return fig, pd.DataFrame(sil)


def silhouettes(exp: Experiment, runs_by_seed: dict[str, dict], max_points: int = 1000) -> pd.DataFrame:
    """Silhouette (cosine) of the test features by class, per row and seed: {row: {seed: run}}."""
    from sklearn.metrics import silhouette_score

    y = exp.labels(0, "test")
    keep = np.sort(np.random.default_rng(0).choice(len(y), size=min(max_points, len(y)), replace=False))
    return pd.DataFrame([{"row": r, "seed": s, "silhouette": float(silhouette_score(test_features(run, exp)[keep],
                                                                                    y[keep], metric="cosine"))}
                         for r, by in runs_by_seed.items() for s, run in by.items()])


# --------------------------------------------------------------------------- effects and claims
def _paper_value(table: str, row: str, column: str) -> float | None:
    ref = report.load_reference(PAPER, table=table)
    v = ref.loc[(ref["row"] == row) & (ref["column"] == column), "value"]
    return float(v.iloc[0]) if len(v) else None


def _paper_diff(table, a, b, column):
    pa, pb = _paper_value(table, f"ResNet50|{a}", column), _paper_value(table, f"ResNet50|{b}", column)
    return None if pa is None or pb is None else pa - pb


def _by_seed(results: pd.DataFrame, row: str, col: str) -> pd.Series:
    r = results[results["row"] == row]
    return pd.Series(r[col].to_numpy(dtype=float), index=r["seed"].to_numpy())


def effects(results: dict[str, pd.DataFrame], temps: pd.DataFrame | None) -> pd.DataFrame:
    """Effect table: every contrast of the claims, paper's effect beside ours (paired by seed, 95 % CI)."""
    rows = []
    for ds, res in results.items():
        pds = ds
        table = "table1" if pds == "ISIC2018" else "table2"
        for a, b in (("CL", "CE"), ("CL", "FL"), ("CL", "LDAM"), ("CL+RS", "CL"), ("CE+RS", "CE")):
            for col, m in (("macro_f1", "macro_F1"), ("acc", "acc")):
                e = C.paired_effect(_by_seed(res, a, col), _by_seed(res, b, col))
                rows.append(_eff_row(ds, f"{a} - {b}", m, _paper_diff(table, a, b, f"{pds}|{m}"), e))
        for grp in ("major", "middle", "minor"):
            if f"f1_{grp}" in res:
                e = C.paired_effect(_by_seed(res, "CL", f"f1_{grp}"), _by_seed(res, "CE", f"f1_{grp}"))
                rows.append(_eff_row(ds, "CL - CE", f"F1_{grp}", None, e))
    if temps is not None and len(temps):
        for rs in (False, True):
            t = temps[temps["resample"] == rs]
            taus = sorted(t["tau"].unique())
            if 0.05 not in taus:
                continue
            name = "CL+RS" if rs else "CL"
            for other in taus:
                if other == 0.05:
                    continue
                a = t[t["tau"] == 0.05].set_index("seed")["f1_minor"]
                b = t[t["tau"] == other].set_index("seed")["f1_minor"]
                pa = _paper_value("table3", f"ResNet50|{name}-tau0.05", "ISIC2018|F1_minor")
                pb = _paper_value("table3", f"ResNet50|{name}-tau{_tau_key(other)}", "ISIC2018|F1_minor")
                rows.append(_eff_row("ISIC table 3", f"{name} tau0.05 - tau{other:g}", "F1_minor",
                                     None if pa is None or pb is None else pa - pb, C.paired_effect(a, b)))
    return pd.DataFrame(rows)


def _eff_row(ds, contrast, metric, paper, e) -> dict:
    return {"dataset": ds, "contrast": contrast, "metric": metric,
            "paper_effect": np.nan if paper is None else paper, "our_effect": e.mean, "our_std": e.std,
            "ci_low": e.ci_low, "ci_high": e.ci_high, "n_units": e.n_units,
            "diffs": " ".join(f"{d:+.3f}" for d in e.diffs), "_effect": e}


MAJOR_BOUND = 0.02
"""'The major class is unaffected': |CL - CE| on its F-score within +-0.02 (the paper gives no bound; 0.02 is
about its own seed-to-seed spread in Table 1)."""


def claim_rows(results: dict[str, pd.DataFrame], temps: pd.DataFrame | None, eff: pd.DataFrame,
               missing: dict[str, str]) -> list[dict]:
    """One claims.csv row per claim of the abstract, results and conclusion (kitlib.claims.judge).
    results: {"ISIC2018" | "APTOS2019": run_rows table}; missing: {paper dataset: why it was not run}."""
    isic = "ISIC2018" if "ISIC2018" in results else None
    aptos = "APTOS2019" if "APTOS2019" in results else None
    def get(ds, contrast, metric):
        if ds is None:
            return None
        r = eff[(eff["dataset"] == ds) & (eff["contrast"] == contrast) & (eff["metric"] == metric)]
        return r["_effect"].iloc[0] if len(r) else None

    def chance(ds, *rows_):
        return ds is not None and bool(results[ds].loc[results[ds]["row"].isin(rows_), "at_chance"].any())

    why = missing.get("ISIC2018", "ISIC2018: not run")
    out = []
    for metric, col in (("macro_F1", "F-score"), ("acc", "accuracy")):
        claim = C.Claim(f"cl_beats_baselines_{metric}", f"CL beats CE, focal loss and LDAM on ISIC 2018 and APTOS 2019 "
                        f"({col})", "CL - {CE, FL, LDAM}, both datasets", metric)
        members, at = {}, []
        for ds, pds in ((isic, "ISIC2018"), (aptos, "APTOS2019")):
            for b in ("CE", "FL", "LDAM"):
                k = f"{pds}: CL - {b}"
                members[k] = get(ds, f"CL - {b}", metric)
                if chance(ds, "CL", b):
                    at.append(k)
        out.append(C.judge_every(PAPER, claim, members, at_chance=at))
    specs = [
        (C.Claim("resample_helps_cl_isic", "Resampling helps CL on ISIC 2018 (complementary)", "CL+RS - CL (ISIC)",
                 "macro_F1", paper_effect=_paper_diff("table1", "CL+RS", "CL", "ISIC2018|macro_F1")),
         "ISIC2018", "CL+RS - CL", "macro_F1", ("CL+RS", "CL")),
        (C.Claim("resample_no_help_cl_aptos", "Resampling does not help CL on APTOS 2019 (it lowers the F-score)",
                 "CL+RS - CL (APTOS)", "macro_F1", test="less",
                 paper_effect=_paper_diff("table2", "CL+RS", "CL", "APTOS2019|macro_F1")),
         "APTOS2019", "CL+RS - CL", "macro_F1", ("CL+RS", "CL")),
        (C.Claim("gain_on_minor", "CL's gain over CE is on the minority classes (ISIC 2018)", "CL - CE (ISIC)",
                 "F1_minor"), "ISIC2018", "CL - CE", "F1_minor", ("CL", "CE")),
        (C.Claim("major_unaffected", "CL does not hurt the major class (ISIC 2018)", "CL - CE (ISIC)", "F1_major",
                 test="within", bound=(-MAJOR_BOUND, MAJOR_BOUND)), "ISIC2018", "CL - CE", "F1_major", ("CL", "CE")),
    ]
    for claim, pds, contrast, metric, rows_ in specs:
        ds = pds if pds in results else None
        e = get(ds, contrast, metric)
        note = "" if e is not None else missing.get(pds, f"{pds}: not run")
        out.append(C.judge(PAPER, claim, e, note=note, at_chance=chance(ds, *rows_)))
    # Table 3: tau = 0.05 best for plain CL; a high tau hurts the minor classes
    t_claims = [
        (C.Claim("tau_high_hurts_minor", "A high temperature (1.0) hurts the minor classes of plain CL (ISIC, Table 3)",
                 "CL tau0.05 - tau1", "F1_minor", paper_effect=0.713 - 0.531), "CL tau0.05 - tau1"),
    ]
    for claim, contrast in t_claims:
        r = eff[(eff["dataset"] == "ISIC table 3") & (eff["contrast"] == contrast)] if len(eff) else eff
        e = r["_effect"].iloc[0] if len(r) else None
        out.append(C.judge(PAPER, claim, e, note="" if e is not None else
                           (why if isic is None else "temperature 1.0 not in the sweep (temperatures parameter)")))
    fam = {}
    if len(eff):
        for _, r in eff[(eff["dataset"] == "ISIC table 3") & eff["contrast"].str.startswith("CL tau")].iterrows():
            fam[r["contrast"]] = r["_effect"]
    claim = C.Claim("tau_005_best", "tau = 0.05 gives plain CL its best minor-class F-score (ISIC, Table 3)",
                    "CL tau0.05 - every other tau", "F1_minor")
    out.append(C.judge_every(PAPER, claim, fam) if fam else C.judge(PAPER, claim, None, note=why if isic is None else
                                                                     "fewer than 2 temperatures incl. 0.05 in the sweep"))
    return out


def verdict_text(claims: pd.DataFrame, profile: str) -> str:
    lines = [f"- **{r['claim_id']}** ({r['claim']}): **{r['verdict']}**"
             + ("" if r["n_units"] == 0 else f"; ours {r['our_effect']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
                f" over {int(r['n_units'])} seeds" + ("" if pd.isna(r["paper_effect"]) else f", paper {r['paper_effect']:+.3f}"))
             + (f" ({r['note']})" if r["note"] else "") for _, r in claims.iterrows()]
    if profile == "smoke":
        lines.append("- Smoke profile: synthetic data, a tiny CNN, a few epochs. These verdicts only show that every "
                     "step runs; they are not evidence for or against the paper.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- notebook parameters
def _parameters():
    from kitlib import params as P
    from kitlib.models import BACKBONES
    from kitlib.profiles import PROFILE_NAMES
    from kitlib.train import SCHEDULES

    per_dataset = ("datasets",)
    return P.Schema(
        profile=P.Str(choices=PROFILE_NAMES), device=P.DEVICE, out_dir=P.PATH,
        datasets=P.DictOf(P.Str(what="a dataset name (python -m kitlib datasets) or a path to your data")),
        dataset_options=P.DictOf(P.DictOf()),
        image_size=P.PerKey(P.Optional(P.Int(lo=8)), per_dataset, fallback=None, kind="dataset"),
        crop=P.PerKey(P.Optional(P.Int(lo=8)), per_dataset, fallback=None, kind="dataset"),
        color_jitter=P.Float(0), test_fraction=P.Float(0, 1, lo_open=True, hi_open=True),
        val_frac=P.Float(0, 1, lo_open=True, hi_open=True), split_seed=P.Int(lo=0),
        seeds=P.ListOf(P.Int(lo=0), min_len=1), backbone=P.Str(choices=BACKBONES), pretrained=P.Bool(),
        model_width=P.Int(lo=1),
        epochs=P.PerKey(P.Int(lo=1), per_dataset, fallback=10, kind="dataset"),
        batch_size=P.Int(lo=2), lr=P.Float(0, lo_open=True), min_lr=P.Float(0), weight_decay=P.Float(0),
        momentum=P.Float(0, 1, hi_open=True), schedule=P.Str(choices=SCHEDULES), warmup_epochs=P.Float(0),
        select=P.Str(choices=["last", "best"]),
        tau=P.Float(0, lo_open=True), base_temperature=P.Optional(P.Float(0, lo_open=True)), proj_dim=P.Int(lo=1),
        stage1_resample=P.Str(choices=["oversample", "class_aware", "class"]), focal_gamma=P.Float(0),
        stage2_epochs=P.Int(lo=1), stage2_lr=P.Float(0, lo_open=True), stage2_min_lr=P.Float(0),
        stage2_batch_size=P.Int(lo=1), stage2_select=P.Str(choices=["last", "best"]),
        temperatures=P.ListOf(P.Float(0, lo_open=True), min_len=1), group_sizes=P.ListOf(P.Int(lo=1), min_len=2),
        tsne_points=P.Int(lo=10), run_root=P.PATH,
    )


PARAMETERS = _parameters()
