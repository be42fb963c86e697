"""Paper 004 (Zeng et al., 2022): metric learning in the first of two stages. Tables and figures of notebook 05.

A run is (dataset, backbone, method, seed) on the 7.5 : 0.5 : 2 split; methods are kitlib method names, two-stage
ones written "X->crw" / "X->crs" (Experiment.train). Scores are MCR in percent over all / major / minor classes.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from kitlib import claims as kc
from kitlib import metrics as M
from kitlib import report
from kitlib.progress import bar

PAPER = "metric_learning"
N_MINOR = {"skin7": 2}  # the paper's minority group: 3 least frequent classes, 2 on Skin7
METRIC_LOSSES = ("ce+ct", "ce+tp", "ce+sc")
DEFAULT_WEIGHT = {"ce+ct": 0.001, "ce+tp": 0.001, "ce+sc": 1.0}  # Sec. 3.1
STABLE_RANGE = {"ce+ct": (5e-5, 0.004), "ce+tp": (5e-5, 0.01), "ce+sc": (0.04, 1.8)}  # Sec. 3.3
LABELS = {"ce": "CE", "rs": "RS", "rw": "RW", "ldam": "LDAM", "ldam_drw": "LDAM-DRW", "ce_drw": "CE-DRW",
          "focal": "Focal", "cb_focal": "CB-Focal", "bbn": "BBN", "mixup": "Mixup", "cutmix": "CutMix",
          "ce+ct": "CE+CT", "ce+tp": "CE+TP", "ce+sc": "CE+SC", "sc": "SC", "crw": "cRW", "crs": "cRS"}
PAPER_DATA = {"skin7": "Skin7", "xray9": "X-ray9", "pathmnist_lt": "PathMNIST-LT"}
PAPER_BACKBONE = {"resnet50": "ResNet50", "densenet121": "DenseNet121", "mobilenet_v2": "MobileNetV2"}
BACKBONE_RE = r"[a-z0-9_]+(@\d+)?"


def class_groups(dataset: str, train_counts, n_major: int = 3) -> dict[str, list[int]]:
    """Major / minor classes from training counts: the 3 most frequent; the 3 least frequent (2 on Skin7)."""
    n_minor = N_MINOR.get(dataset, 3)
    return M.class_groups_by_count(train_counts, n_major, min(n_minor, len(train_counts) - n_major))


def three_groups(train_counts) -> dict[str, list[int]]:
    """Table 5 (Flower-LT, Stanford-Dogs-LT): many / medium / few = the classes by count in thirds."""
    c = len(train_counts)
    g = M.class_groups_by_count(train_counts, c // 3, c // 3)
    return {"major": g["major"], "medium": g["middle"], "minor": g["minor"]}


def label(method: str) -> str:
    """'ce+sc->crw' -> 'CE+SC->cRW' (the paper's row names)."""
    return "->".join(LABELS.get(p.strip(), p) for p in method.split("->"))


def backbone_args(backbone: str) -> tuple[str, dict]:
    """'tiny_cnn@8' -> ('tiny_cnn', {'width': 8}); any other kitlib.models name as is."""
    m = re.fullmatch(r"([a-z0-9_]+)(?:@(\d+))?", backbone)
    if m is None:
        raise ValueError(f"backbones: {backbone!r} is not a kitlib.models name or tiny_cnn@WIDTH")
    return m.group(1), ({"width": int(m.group(2))} if m.group(2) else {})


def _use_backbone(exp, kw: dict) -> None:
    """The experiment's model keywords plus this backbone's own (tiny_cnn@W: its width), not leaking to the next."""
    if not hasattr(exp, "_ml_model_kwargs"):
        exp._ml_model_kwargs = dict(exp.model_kwargs)
    exp.model_kwargs = {**exp._ml_model_kwargs, **kw}


def statistics(exps: dict) -> pd.DataFrame:
    """Table 1 from the training split actually used: classes, image size, N_min, N_max, rho."""
    rows = []
    for name, exp in exps.items():
        n = exp.train_counts(0)
        h, w = exp.arrays.images.shape[1:3]
        rows.append({"dataset": name, "classes": len(n), "image size": f"{w}x{h}", "train images": int(n.sum()),
                     "N_min": int(n.min()), "N_max": int(n.max()), "rho": round(float(n.max() / n.min()), 1)})
    return pd.DataFrame(rows)


def run_methods(exp, dataset: str, backbone: str, methods, seeds, groups: str = "two",
                method_params: dict | None = None, tag: str = "") -> pd.DataFrame:
    """Train (cached) every method for every seed; one row per run with MCR all / major / minor in percent."""
    name, kw = backbone_args(backbone)
    g = (three_groups if groups == "three" else lambda n: class_groups(dataset, n))(exp.train_counts(0))
    rows = []
    for method in bar(list(methods), desc=f"{dataset}/{backbone}{tag}"):
        for seed in seeds:
            _use_backbone(exp, kw)
            run = exp.train(0, name, method, (method_params or {}).get(method.split("->")[0]), seed=seed)
            mets = exp.evaluate(exp.predict(run, 0), 0, class_groups=g)
            row = {"dataset": dataset, "backbone": backbone, "method": method, "seed": seed,
                   "all": 100 * mets["mcr"]}
            row.update({k: 100 * mets[f"recall_{k}"] for k in g})
            rows.append(row)
    return pd.DataFrame(rows)


def table(rows: pd.DataFrame, cols=("all", "major", "minor")) -> pd.DataFrame:
    """mean ± std over seeds, one row per (dataset, backbone, method)."""
    cols = [c for c in cols if c in rows]
    g = rows.groupby(["dataset", "backbone", "method"], sort=False)[cols]
    mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
    out = mean.copy().astype(object)
    for c in cols:
        out[c] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(mean[c], std[c])]
    out = out.reset_index()
    out.insert(3, "row", out["method"].map(label))
    return out


def reference(table_name: str) -> pd.DataFrame:
    ref = report.load_reference(PAPER, table_name)
    return ref


def paper_vs_ours(rows: pd.DataFrame, table_name: str, ours_label: str, same_setup: bool = False) -> pd.DataFrame:
    """Absolute side-by-side: the paper's MCR (its dataset and backbone) beside ours, each labelled with what it is;
    a diff column only when dataset, backbone and protocol are the paper's."""
    ref = reference(table_name)
    mean = rows.groupby(["dataset", "backbone", "method"], sort=False)[[c for c in ("all", "minor") if c in rows]].mean()
    out = []
    for (ds, bb, method), r in mean.iterrows():
        p_bb = PAPER_BACKBONE.get(bb, "ResNet50")
        p_ds = PAPER_DATA.get(ds, "Skin7")
        for col in r.index:
            hit = ref[(ref["row"] == f"{p_bb}|{label(method)}") & (ref["column"] == f"{p_ds}|MCR_{col}")]
            pv = float(hit["value"].iloc[0]) if len(hit) else np.nan
            row = {"method": label(method), "group": col, f"paper: {p_bb} 224 px, {p_ds}": pv,
                   f"ours: {ours_label}, {ds}": round(float(r[col]), 2)}
            if same_setup:
                row["diff"] = round(float(r[col]) - pv, 2)
            out.append(row)
    return pd.DataFrame(out)


def sweep(exp, dataset: str, backbone: str, weights: dict, seeds, second: str = "crw") -> pd.DataFrame:
    """Fig. 2: MCR of CE+L_M -> cRW for each coefficient w of each metric loss."""
    parts = []
    for loss, ws in weights.items():
        for w in ws:
            r = run_methods(exp, dataset, backbone, [f"{loss}->{second}"], seeds, method_params={loss: {"weight": w}},
                            tag=f" {loss} w {w:g}")
            parts.append(r.assign(loss=loss, weight=w))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def figure2(rows: pd.DataFrame):
    """One panel per metric loss: MCR (all) against its coefficient, log-x, the paper's default marked."""
    import matplotlib.pyplot as plt

    losses = list(dict.fromkeys(rows["loss"]))
    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3.2), squeeze=False)
    for ax, loss in zip(axes[0], losses):
        r = rows[rows["loss"] == loss].groupby("weight")["all"].agg(["mean", "std"]).reset_index()
        ax.errorbar(r["weight"], r["mean"], yerr=r["std"].fillna(0), marker="o", color="tab:green", label=label(loss))
        d = DEFAULT_WEIGHT[loss]
        if d in set(r["weight"]):
            ax.plot([d], [float(r.loc[r["weight"] == d, "mean"].iloc[0])], "^", color="red", ms=10, label="default")
        lo, hi = STABLE_RANGE[loss]
        ax.axvspan(lo, hi, color="0.9", label="paper: stable range")
        ax.set_xscale("log")
        ax.set_xlabel(f"coefficient w of {label(loss)[3:]} (log scale)")
        ax.set_ylabel("MCR all (%)")
        ax.set_title(f"{label(loss)} -> cRW")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def compactness(exp, dataset: str, backbone: str, methods, seeds) -> pd.DataFrame:
    """Beyond the paper: stage-1 test features, mean distance to the own class centre over the mean distance
    between class centres (lower = more compact, better separated), per method and seed."""
    import torch

    name, kw = backbone_args(backbone)
    x, y = exp.images(0, "test"), exp.labels(0, "test")
    rows = []
    for method in methods:
        for seed in seeds:
            _use_backbone(exp, kw)
            run = exp.train(0, name, method, seed=seed)
            with torch.no_grad():
                f = run.model.eval()(x, out="all")["feat"].double().numpy()
            cls = np.unique(y)
            centres = np.stack([f[y == c].mean(0) for c in cls])
            intra = np.mean([np.linalg.norm(f[y == c] - centres[i], axis=1).mean() for i, c in enumerate(cls)])
            d = np.linalg.norm(centres[:, None] - centres[None], axis=2)
            inter = d[np.triu_indices(len(cls), 1)].mean()
            rows.append({"dataset": dataset, "backbone": backbone, "method": method, "seed": seed,
                         "intra": intra, "inter": inter, "ratio": intra / inter})
    return pd.DataFrame(rows)


def _effect(rows, a, b, col):
    pa = rows[rows["method"] == a].set_index("seed")[col]
    pb = rows[rows["method"] == b].set_index("seed")[col]
    if pa.empty or pb.empty:
        return None
    return kc.paired_effect(pa, pb)


def _paper_diff(table_name, a, b, col, ds="Skin7", bb="ResNet50"):
    ref = reference(table_name)
    v = {}
    for m in (a, b):
        hit = ref[(ref["row"] == f"{bb}|{label(m)}") & (ref["column"] == f"{ds}|MCR_{col}")]
        v[m] = float(hit["value"].iloc[0]) if len(hit) else None
    return None if None in v.values() else v[a] - v[b]


def contrasts(t2_rows, t3_rows, metric_losses, baselines) -> list[tuple]:
    """(rows, method, baseline, column, paper table) of every contrast the claims use."""
    out = []
    for lm in metric_losses:
        for b in baselines:
            for col in ("all", "minor"):
                out.append(("c1", t2_rows, f"{lm}->crw", b, col, "table2"))
    for b in baselines:
        if "->" not in b and f"{b}->crw" in set(t2_rows["method"]):
            out.append(("c2", t2_rows, f"{b}->crw", b, "all", "table2"))
    for a, b in (("ce+sc", "ce"), ("ce->crw", "ce"), ("ce+sc->crw", "ce+sc"), ("ce+sc->crw", "ce->crw"),
                 ("ce+sc->crw", "sc->crw")):
        out.append(("c3", t3_rows, a, b, "all", "table3"))
    return out


def effects(t2_rows, t3_rows, metric_losses, baselines) -> pd.DataFrame:
    rows = []
    for cid, r, a, b, col, tab in contrasts(t2_rows, t3_rows, metric_losses, baselines):
        e = _effect(r, a, b, col)
        if e is None:
            continue
        rows.append({"claim": cid, "contrast": f"{label(a)} - {label(b)}", "metric": f"MCR {col} (pp)",
                     "paper_effect": _paper_diff(tab, a, b, col), "our_effect": e.mean, "our_std": e.std,
                     "ci_low": e.ci_low, "ci_high": e.ci_high, "n_units": e.n_units})
    return pd.DataFrame(rows)


def claims(t2_rows, t3_rows, sweep_rows, metric_losses, baselines, stable_pp: float = 3.0) -> list[dict]:
    """The four claims of the issue, as kitlib.claims rows."""
    rows = []
    fam = {f"{label(a)} - {label(b)} ({col})": _effect(r, a, b, col)
           for cid, r, a, b, col, _ in contrasts(t2_rows, t3_rows, metric_losses, baselines) if cid == "c1"}
    rows.append(kc.judge_every(PAPER, kc.Claim(
        "c1", "CE+L_M -> cRW beats every one- and two-stage baseline on All and Minor",
        "CE+L_M->cRW - baseline", "MCR all / minor (pp)"), fam))
    c2 = {label(a): _effect(r, a, b, col)
          for cid, r, a, b, col, _ in contrasts(t2_rows, t3_rows, metric_losses, baselines) if cid == "c2"}
    rows.append(kc.judge_every(PAPER, kc.Claim(
        "c2", "two-stage (X -> cRW) does not consistently beat one-stage X on medical images",
        "X->cRW - X", "MCR all (pp)", test="within", bound=(-stable_pp, stable_pp)), c2))
    c3 = {f"{label(a)} - {label(b)}": _effect(r, a, b, col)
          for cid, r, a, b, col, _ in contrasts(t2_rows, t3_rows, metric_losses, baselines) if cid == "c3"}
    rows.append(kc.judge_every(PAPER, kc.Claim("c3", "each component of the ablation (CE, SC, cRW) helps",
                                               "with - without the component", "MCR all (pp)"), c3))
    c4 = {}
    for lm in metric_losses:
        r = sweep_rows[sweep_rows["loss"] == lm] if len(sweep_rows) else sweep_rows
        lo, hi = STABLE_RANGE[lm]
        r = r[(r["weight"] >= lo) & (r["weight"] <= hi)] if len(r) else r
        if len(r) == 0 or r["weight"].nunique() < 2:
            c4[label(lm)] = None
            continue
        spread = r.groupby("seed")["all"].agg(lambda s: s.max() - s.min())  # per seed: range over coefficients
        c4[label(lm)] = kc.Effect.from_diffs(spread.to_numpy())
    rows.append(kc.judge_every(PAPER, kc.Claim(
        "c4", "performance is stable over the stated coefficient ranges",
        "max - min MCR over the coefficients in the paper's range", "MCR all (pp)", test="less", bound=stable_pp), c4))
    return rows


def _parameters():
    from kitlib import params as P
    from kitlib.profiles import PROFILE_NAMES

    ds = P.Str(what="a dataset name (python -m kitlib datasets)")
    method = P.Str(pattern=r"[a-z0-9_+]+(->(crw|crs))?", what="a kitlib method, optionally ->crw / ->crs")
    return P.Schema(
        PAPER, profile=P.Str(choices=PROFILE_NAMES), overrides=P.DictOf(), device=P.DEVICE, out_dir=P.PATH,
        run_root=P.PATH, datasets=P.ListOf(ds), dataset_options=P.DictOf(), image_size=P.Int(lo=8),
        ratios=P.ListOf(P.Float(0, 1, lo_open=True)), seeds=P.ListOf(P.Int(lo=0)), split_seed=P.Int(lo=0),
        backbone=P.Str(pattern=BACKBONE_RE, what="a kitlib.models name or tiny_cnn@WIDTH"),
        table4_backbones=P.ListOf(P.Str(pattern=BACKBONE_RE, what="a kitlib.models name or tiny_cnn@WIDTH"), min_len=0),
        baselines=P.ListOf(method), metric_losses=P.ListOf(P.Str(choices=list(METRIC_LOSSES))),
        table4_methods=P.ListOf(method), sweep_weights=P.DictOf(), table5_datasets=P.ListOf(ds, min_len=0),
        table5_options=P.DictOf(), table5_methods=P.ListOf(method),
        epochs=P.Int(lo=1), batch_size=P.Int(lo=1), lr=P.Float(0, lo_open=True), warmup_epochs=P.Float(0),
        min_lr=P.Float(0), weight_decay=P.Float(0), stage2_epochs=P.Int(lo=1), stage2_lr=P.Float(0, lo_open=True),
        pretrained=P.Bool(), stable_pp=P.Float(0, lo_open=True),
    )


PARAMETERS = _parameters()
