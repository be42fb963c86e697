"""Paper 003 (Zhuang et al., Neurocomputing 2023): CARE, class attention to regions of the lesion. Notebook 04.

Every table is a list of *variants* (backbone, base method, +- CARE with its settings, box source) run on every
seed by `run_variants`; training goes through the run cache (the CARE run is fine-tuned from its cached
pretrained run), so re-rendering never retrains and the sweeps share their pretrained runs.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kitlib.claims import verdict_text  # noqa: F401 (the one written verdict of every notebook)
from kitlib import claims as C
from kitlib import explain
from kitlib import metrics as M
from kitlib import params as P
from kitlib import report
from kitlib.data.core import ImageArrays
from kitlib.experiment import Experiment
from kitlib.profiles import PROFILE_NAMES
from kitlib.progress import bar

PAPER = "care"
BASE_LABELS = {"ce": "Baseline", "rw": "CSL", "focal": "FL", "da": "DA", "ce+tp": "Siamese", "ce->crw": "Decouple"}
BACKBONE_LABELS = {"resnet18": "ResNet18", "resnet50": "ResNet50", "resnet152": "ResNet152", "vgg19": "VGG19 (GAP)",
                   "vgg19_fc": "VGG19",
                   "tiny_cnn": "TinyCNN"}
BASES = tuple(BASE_LABELS)
BOX_SOURCES = ("gt", "saliency", "segmentation")
BOX_LABELS = {"gt": "GT", "saliency": "saliency", "segmentation": "DeepLabV3"}


def _parameters() -> P.Schema:
    num = P.Float(0, 1)
    return P.Schema(
        PAPER, profile=P.Str(choices=PROFILE_NAMES), overrides=P.DictOf(), device=P.DEVICE, out_dir=P.PATH,
        run_root=P.PATH, dataset=P.Str(what="a dataset name (python -m kitlib datasets) or a path"),
        dataset_options=P.DictOf(), max_images=P.Optional(P.Int(lo=50)), keep_all_below=P.Int(lo=0), image_size=P.Int(lo=8),
        test_frac=P.Float(0, 1, lo_open=True, hi_open=True), val_frac=P.Float(0, 1, lo_open=True, hi_open=True),
        seeds=P.ListOf(P.Int(lo=0)), split_seed=P.Int(lo=0),
        backbone=P.Str(what="a kitlib.models name"), table4_backbones=P.ListOf(P.Str(what="a kitlib.models name")),
        model_width=P.Int(lo=1), pretrained=P.Bool(),
        table2_bases=P.ListOf(P.Str(choices=["ce", "rw", "focal", "da"])),
        table3_bases=P.ListOf(P.Str(choices=["ce+tp", "ce->crw"]), min_len=0),
        decouple_trains=P.Str(choices=["last_block", "head"]),
        sweep_base=P.Str(choices=["ce", "rw", "focal"]), focal_gamma=P.Float(0),
        da=P.DictOf(), epochs=P.Int(lo=1), batch_size=P.Int(lo=1), lr=P.Float(0, lo_open=True),
        optimizer=P.Str(choices=["sgd", "adamw", "adam"]), weight_decay=P.Float(0),
        finetune_epochs=P.Int(lo=1), finetune_lr=P.Float(0, lo_open=True),
        alpha=num, tau=num, lam=P.Float(0), box_scale=P.Float(0, lo_open=True),
        reduction=P.Str(choices=["mean", "sum"]), cam_relu=P.Bool(),
        alphas=P.ListOf(num), taus=P.ListOf(num), lams=P.ListOf(P.Float(0)), box_scales=P.ListOf(P.Float(0, lo_open=True)),
        box_class_sets=P.ListOf(P.ListOf(P.Str(what="a class name"))),
        auto_bases=P.ListOf(P.Str(choices=["ce", "rw", "focal"]), min_len=0),
        saliency=P.Str(choices=list(explain.SALIENCY)), saliency_blur=P.Float(0),
        saliency_threshold=P.Either(P.Str(choices=["otsu"]), P.Float(0, 1, lo_open=True, hi_open=True)),
        seg_arch=P.Str(choices=["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50"]), seg_steps=P.Int(lo=1),
        seg_images=P.Int(lo=4), overlay_images=P.Int(lo=1),
    )


PARAMETERS = _parameters()


# --------------------------------------------------------------------------- data
def subsample(arrays: ImageArrays, max_images: int | None, seed: int = 0, keep_all_below: int = 0) -> ImageArrays:
    """A stratified random subset of about max_images: classes with at most `keep_all_below` images keep them all
    (the minority classes CARE is about), the others keep their share of max_images (at least 10 images)."""
    if max_images is None or len(arrays) <= max_images:
        return arrays
    rng = np.random.default_rng(seed)
    counts = arrays.class_counts()
    keep = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(arrays.labels == c)
        k = n if n <= keep_all_below else min(n, max(10, int(round(max_images * n / counts.sum()))))
        keep.append(rng.choice(idx, k, replace=False))
    return arrays.subset(np.sort(np.concatenate(keep)))


def statistics(arrays: ImageArrays, exp: Experiment) -> pd.DataFrame:
    """Images per class (largest first) in the whole set, the training and the test split, with lesion masks."""
    sp = exp.splits[0]
    rows = []
    order = np.argsort(-arrays.class_counts(), kind="stable")
    for c in order:
        rows.append({"class": arrays.class_names[c], "images": int((arrays.labels == c).sum()),
                     "train": int((arrays.labels[sp.train] == c).sum()), "val": int((arrays.labels[sp.val] == c).sum()),
                     "test": int((arrays.labels[sp.test] == c).sum()),
                     "with mask": int(((arrays.labels == c) & _has_mask(arrays)).sum())})
    return pd.DataFrame(rows)


def _has_mask(arrays: ImageArrays) -> np.ndarray:
    if arrays.masks is None:
        return np.zeros(len(arrays), bool)
    if arrays.has_lesion is not None:
        return np.asarray(arrays.has_lesion, bool)
    return arrays.masks.reshape(len(arrays), -1).any(1)


def figure1(arrays: ImageArrays, exp: Experiment):
    """Fig. 1: images per class, largest to smallest (log axis as the paper's histograms)."""
    counts = pd.Series(arrays.class_counts(), index=arrays.class_names)
    return report.plot_class_histogram(counts, title=f"Fig. 1 · images per class ({arrays.name})", logy=True)


# --------------------------------------------------------------------------- variants
@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a table: a base method, +- CARE (its settings), a backbone, the boxes it learns from."""

    name: str
    base: str = "ce"
    with_care: bool = False
    care: tuple = ()  # CARE parameters that differ from the defaults, as sorted (key, value) pairs
    backbone: str | None = None
    boxes: str = "gt"


def variant(name, base="ce", care: dict | None = None, backbone=None, boxes="gt") -> Variant:
    if boxes not in BOX_SOURCES:
        raise ValueError(f"variant {name!r}: boxes must be one of {BOX_SOURCES}, got {boxes!r}")
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (care or {}).items()))
    return Variant(name, base, care is not None, items, backbone, boxes)


def _pair_key(base: str) -> tuple[str, dict, str]:
    """(pretrain method, its params, the CARE base) of a table base name (DA = CE on the augmenting experiment)."""
    if base == "da":
        return "ce", {}, "ce"
    if base == "ce->crw":
        return "ce->crw", {}, "rw"
    return base, {}, base


class Runner:
    """Trains (through the cache) and evaluates variants on every seed.

    exps: {"plain": Experiment, "da": Experiment with rotation/flip/colour jitter, box source -> Experiment whose
    masks are that source's boxes}; settings: backbone, finetune (TrainConfig fields of the fine-tuning stage),
    care (defaults of the CARE parameters), base_params (e.g. focal gamma).
    """

    def __init__(self, exps: dict, backbone: str, seeds, finetune: dict, care: dict, base_params: dict | None = None):
        self.exps, self.backbone, self.seeds = exps, backbone, list(seeds)
        self.finetune, self.care, self.base_params = dict(finetune), dict(care), dict(base_params or {})
        self.cache: dict = {}

    def run(self, v: Variant, seed: int):
        exp = self.exps["da" if v.base == "da" else "plain"]
        pre, pre_params, care_base = _pair_key(v.base)
        pre_params = self.base_params.get(pre, pre_params)
        bb = v.backbone or self.backbone
        if not v.with_care:
            return exp, exp.train(0, bb, pre, pre_params, seed=seed)
        care = {**self.care, **dict(v.care), "base": care_base, "base_params": self.base_params.get(care_base, {})}
        fexp = exp if v.boxes == "gt" else self.exps[v.boxes]
        return fexp, fexp.finetune(0, bb, pre, "care", care, pre_params, seed=seed, finetune=self.finetune,
                                   pretrained_from=exp)

    def rows(self, variants, desc: str, attention: bool = True) -> pd.DataFrame:
        out = []
        for v, seed in bar([(v, s) for v in variants for s in self.seeds], desc=desc, leave=False):
            key = (v, seed)
            if key not in self.cache:
                exp, run = self.run(v, seed)
                plain = self.exps["plain"]
                probs = plain.predict(run, 0)
                mets = plain.evaluate(probs, 0)
                row = {"variant": v.name, "base": v.base, "care": v.with_care, "backbone": v.backbone or self.backbone,
                       "boxes": v.boxes, "seed": seed, **dict(v.care), **mets,
                       "at_chance": M.at_chance(plain.labels(0), probs)}
                if attention:
                    row.update(attention_inside(plain, run))
                self.cache[key] = (row, run)
            out.append(self.cache[key][0])
        return pd.DataFrame(out)


def minority(exp: Experiment) -> int:
    return int(np.argmin(exp.train_counts(0)))


# --------------------------------------------------------------------------- attention inside the box
def test_regions(exp: Experiment, kind: str = "box") -> tuple[np.ndarray, np.ndarray]:
    """(regions (N, H, W) {0,1} at the test images' size, has (N,)) of fold 0's test split: each lesion mask's
    tight box ("box") or the mask itself ("mask")."""
    idx = exp.splits[0].test
    masks = exp.arrays.masks[idx]
    t = torch.from_numpy(masks).float()[:, None]
    t = F.interpolate(t, size=(exp.size, exp.size), mode="nearest")[:, 0].numpy()
    has = t.reshape(len(t), -1).any(1) & _has_mask(exp.arrays)[idx]
    if kind == "mask":
        return t, has
    return np.stack([explain.box_mask(explain.box_from_mask(m), exp.size, exp.size) for m in t]), has


def attention_inside(exp: Experiment, run, max_images: int = 400) -> dict:
    """Energy inside the lesion box of the true class's Grad-CAM (ReLU, standard), fold 0 test images with a mask:
    `att_minority` (the smallest training class) and `att_all` (mean over classes of the per-class means)."""
    x = exp.images(0)
    y = exp.labels(0)
    regions, has = test_regions(exp)
    sel = np.flatnonzero(has)
    m = minority(exp)
    rng = np.random.default_rng(0)
    if len(sel) > max_images:  # every minority image, a fixed sample of the others
        mi, ot = sel[y[sel] == m], sel[y[sel] != m]
        sel = np.sort(np.concatenate([mi, rng.choice(ot, max(0, max_images - len(mi)), replace=False)]))
    with explain.GradCAM(run.model) as cam:
        maps = cam(x[sel], torch.as_tensor(y[sel]))
    e = explain.energy_inside(maps, regions[sel])
    per = pd.Series(e).groupby(y[sel]).mean()
    return {"att_minority": float(per.get(m, np.nan)), "att_all": float(per.mean())}


# --------------------------------------------------------------------------- tables
METRICS = {"scr": "minority_recall", "auc_ovr": "AUC", "mcr": "MCA"}


def summary(rows: pd.DataFrame, by=("variant",), extra=()) -> pd.DataFrame:
    """Mean (std over seeds) of minority recall, AUC, MCA (percent; AUC as a fraction) and attention inside the box."""
    cols = ["scr", "auc_ovr", "mcr", "att_minority", "att_all", *extra]
    out = []
    for key, g in rows.groupby(list(by), sort=False):
        r = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for c in cols:
            if c not in g:
                continue
            s = 1 if c == "auc_ovr" else 100
            r[c] = M.format_mean_std(g[c].mean() * s, g[c].std() * s if len(g) > 1 else None, scale=1,
                                     digits=3 if c == "auc_ovr" else 1)
            if 0 < g[c].notna().sum() < len(g):  # e.g. seeds whose every map of the class is zero after ReLU
                r[c] += f" [{g[c].notna().sum()} of {len(g)} seeds]"
        r["seeds"] = len(g)
        out.append(r)
    return pd.DataFrame(out).rename(columns={**METRICS, "att_minority": "attention inside box, minority (%)",
                                             "att_all": "attention inside box, class mean (%)"})


def paper_vs_ours(rows: pd.DataFrame, table: str, ours_is: str, paper_is: str = "paper: ResNet50 224 px, Skin7",
                  row_of=lambda v: f"ResNet50|{v}") -> pd.DataFrame:
    """Absolute: the paper's Skin7 numbers beside ours (mean over seeds), each side labelled; no diff (our
    backbone, image size and data are not the paper's)."""
    ref = report.load_reference(PAPER, table=table).set_index(["row", "column"])["value"]
    out = []
    for v, g in rows.groupby("variant", sort=False):
        for k, lab in METRICS.items():
            key = (row_of(v), f"Skin7|{lab}")
            pv = float(ref[key]) if key in ref.index else np.nan
            s = 1 if k == "auc_ovr" else 100
            out.append({"variant": v, "metric": lab, "paper is": paper_is,
                        "paper": "no paper row" if np.isnan(pv) else f"{pv:g}", "ours is": ours_is,
                        "ours": f"{g[k].mean() * s:.3g}" if k == "auc_ovr" else f"{g[k].mean() * s:.1f}"})
    return pd.DataFrame(out)


def per_class_recall(rows: pd.DataFrame, exp: Experiment) -> pd.DataFrame:
    """Per-class recall (fractions, mean over seeds): one row per class (largest first), one column per variant."""
    order = np.argsort(-exp.train_counts(0), kind="stable")
    data = {v: [g[f"recall_{c}"].mean() for c in order] for v, g in rows.groupby("variant", sort=False)}
    return pd.DataFrame(data, index=[exp.class_names[c] for c in order])


def effects(rows: pd.DataFrame, pairs, ref_table: str | None = "table2") -> tuple[pd.DataFrame, dict]:
    """Effect table of (with, without) variant pairs on minority recall and MCA (pp) and attention (pp), per seed;
    paper effects from the reference Skin7 rows where the pair is the paper's. Returns (table, {pair: {metric: Effect}})."""
    ref = report.load_reference(PAPER).set_index(["table", "row", "column"])["value"] if ref_table else None
    table, sets = [], {}
    for a, b in pairs:
        sets[(a, b)] = {}
        for k, lab in (("scr", "minority_recall"), ("mcr", "MCA"), ("att_minority", "attention")):
            A = rows[rows["variant"] == a].set_index("seed")[k] * 100
            B = rows[rows["variant"] == b].set_index("seed")[k] * 100
            if A.isna().all() or B.isna().all():
                continue
            e = C.paired_effect(A, B)
            pe = np.nan
            if ref is not None and lab != "attention":
                ka, kb = (ref_table, f"ResNet50|{a}", f"Skin7|{lab}"), (ref_table, f"ResNet50|{b}", f"Skin7|{lab}")
                if ka in ref.index and kb in ref.index:
                    pe = float(ref[ka]) - float(ref[kb])
            sets[(a, b)][lab] = (e, pe)
            table.append({"contrast": f"{a} - {b}", "metric": f"{lab} (pp)", "paper_effect": pe, "our_effect": e.mean,
                          "our_std": e.std, "ci_low": e.ci_low, "ci_high": e.ci_high, "n_units": e.n_units,
                          "diffs": " ".join(f"{d:+.1f}" for d in e.diffs)})
    return pd.DataFrame(table), sets


def figure9(run, title: str):
    """Fig. 9: per-epoch training loss, validation MCA and validation minority recall of one run (the engine's
    history; its train-side metrics are the loss only)."""
    import matplotlib.pyplot as plt

    h = run.history
    m = int(np.argmin(run.class_counts))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(h["epoch"] + 1, h["loss"], marker="o")
    axes[0].set(xlabel="epoch", ylabel="training loss", title="(a) loss")
    axes[1].plot(h["epoch"] + 1, 100 * h["val_mcr"], marker="s")
    axes[1].set(xlabel="epoch", ylabel="validation MCA (%)", title="(b) MCA")
    axes[2].plot(h["epoch"] + 1, 100 * h[f"val_recall_{m}"], marker="^")
    axes[2].set(xlabel="epoch", ylabel="validation minority recall (%)", title="(c) minority recall")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_figure(rows: pd.DataFrame, x: str, title: str, xlabel: str):
    long = pd.concat([rows.assign(metric="MCA", value=100 * rows["mcr"]),
                      rows.assign(metric="minority recall", value=100 * rows["scr"])])
    return report.plot_curves(long, x=x, y="value", hue="metric", title=title, xlabel=xlabel, ylabel="test score (%)")


# --------------------------------------------------------------------------- automatic boxes
def auto_boxes(exp: Experiment, classes, saliency: str = "fine_grained", blur: float = 4.0,
               threshold: str | float = 0.3, seg_arch: str = "deeplabv3_resnet50", seg_steps: int = 50,
               seg_images: int = 200, seed: int = 0, device: str = "cpu") -> tuple[dict, pd.DataFrame]:
    """Boxes for the images of `classes` from (a) OpenCV saliency and (b) a DeepLabV3 trained on the lesion masks of
    images NOT of those classes; returns ({source: ImageArrays whose masks are the rasterised boxes of that source
    for the images of `classes` (others keep their masks, unused by CARE)}, IoU table against the mask's box, with
    a reference row: one fixed centred box covering 60 % of each side, the same for every image)."""
    a = exp.arrays
    target = np.isin(a.labels, list(classes)) & _has_mask(a)
    gt = np.stack([explain.box_from_mask(m) for m in a.masks])
    idx = np.flatnonzero(target)
    sal = np.full((len(a), 4), np.nan, np.float32)
    for i in bar(idx, desc="saliency boxes", leave=False):
        sal[i] = explain.saliency_box(a.images[i], saliency, threshold=threshold, blur=blur)
    donors = np.flatnonzero(~np.isin(a.labels, list(classes)) & _has_mask(a))
    rng = np.random.default_rng(seed)
    donors = rng.choice(donors, min(seg_images, len(donors)), replace=False)
    from kitlib.data import TorchImageSet, build_transform

    tt = build_transform(train=False, size=a.images.shape[1])
    def tensors(rows):
        ds = TorchImageSet(a, tt, indices=rows, with_masks=True)
        items = [ds[k] for k in range(len(ds))]
        return torch.stack([it["image"] for it in items]), torch.stack([it["mask"][0] for it in items])
    xi, mi = tensors(donors)
    net = explain.train_segmenter(xi, (mi > 0.5).long(), steps=seg_steps, seed=seed, arch=seg_arch, device=device)
    seg = np.full((len(a), 4), np.nan, np.float32)
    if len(idx):
        seg[idx] = explain.segmentation_boxes(net, tensors(idx)[0])
    h, w = a.images.shape[1:3]
    centre = np.full((len(a), 4), np.nan, np.float32)
    centre[idx] = [0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h]
    rows = []
    for label, boxes in ((BOX_LABELS["saliency"], sal), (BOX_LABELS["segmentation"], seg),
                         ("centred 60 % box (reference)", centre)):
        ious = np.array([explain.box_iou(boxes[i], gt[i]) for i in idx])
        rows.append({"boxes": label, "images": len(idx), "found": int((~np.isnan(boxes[idx]).any(1)).sum()),
                     "IoU mean": float(np.nanmean(ious)) if np.isfinite(ious).any() else np.nan,
                     "IoU median": float(np.nanmedian(ious)) if np.isfinite(ious).any() else np.nan,
                     "IoU >= 0.5 (%)": float(100 * np.mean(np.nan_to_num(ious) >= 0.5)) if len(idx) else np.nan})
    out = {}
    for name, boxes in (("saliency", sal), ("segmentation", seg)):
        masks = a.masks.copy()
        for i in idx:
            masks[i] = explain.box_mask(boxes[i], h, w)  # an image without a found box gets none (no attention loss)
        has = _has_mask(a).copy()
        has[idx] = ~np.isnan(boxes[idx]).any(1)
        out[name] = dataclasses.replace(a, masks=masks, has_lesion=has, meta={k: v for k, v in a.meta.items()
                                                                            if k != "_fingerprint"})
    return out, pd.DataFrame(rows)


def unboxed_sources(iou: pd.DataFrame) -> dict:
    """{auto_<source>: reason} for each automatic source of `auto_boxes`'s IoU table that boxed no image: CARE with it
    fine-tuned without the attention loss, so its rows are shown but not judged."""
    found = iou.set_index("boxes")["found"]
    return {f"auto_{s}": f"CARE with {BOX_LABELS[s]} boxes: not judged ({BOX_LABELS[s]} found no box on the boxed "
                         "classes' images, so its fine-tuning had no attention loss)"
            for s in ("saliency", "segmentation") if found[BOX_LABELS[s]] == 0}


def attention_table(*rows: pd.DataFrame) -> pd.DataFrame:
    """Attention inside the box per (variant, backbone) over the runner's rows of several tables: mean and std in
    percent, and count = seeds with a number (a seed whose maps of the class are all zero after ReLU has none).
    A run listed in several tables counts once."""
    att = pd.concat(rows)[["variant", "backbone", "seed", "att_minority", "att_all"]]
    att = att.drop_duplicates(["variant", "backbone", "seed"])
    table = att.groupby(["variant", "backbone"], sort=False)[["att_minority", "att_all"]].agg(["mean", "std", "count"])
    table.loc[:, (slice(None), ["mean", "std"])] *= 100
    return table


# --------------------------------------------------------------------------- overlays
def overlays(exp: Experiment, runs: dict, n: int = 4, cls: int | None = None, title: str = ""):
    """Grad-CAM overlays (true class, ReLU) of the same n test images of class `cls` (default: the minority class)
    for each run in `runs` {column title: run}, the lesion box drawn (green); the energy inside the box in
    each panel's title. Returns (figure, table of the energies)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from kitlib.data.transforms import denormalize

    cls = minority(exp) if cls is None else cls
    y = exp.labels(0)
    regions, has = test_regions(exp)
    sel = np.flatnonzero((y == cls) & has)[:n]
    x = exp.images(0)[sel]
    imgs = denormalize(x).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    cols = ["image"] + list(runs)
    fig, axes = plt.subplots(len(sel), len(cols), figsize=(2.2 * len(cols), 2.2 * len(sel)), squeeze=False)
    table = []
    maps = {}
    for name, run in runs.items():
        with explain.GradCAM(run.model) as cam:
            maps[name] = cam(x, torch.full((len(sel),), cls))
    for r, i in enumerate(sel):
        box = explain.box_from_mask(regions[i])
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(imgs[r])
            if name != "image":
                ax.imshow(maps[name][r], cmap="jet", alpha=0.45, vmin=0, vmax=1)
                e = float(explain.energy_inside(maps[name][r:r + 1], regions[i:i + 1])[0])
                table.append({"test image": int(exp.splits[0].test[i]), "model": name, "energy inside box": e})
                ax.set_title(f"{name}\ninside {100 * e:.0f} %", fontsize=8)
            elif r == 0:
                ax.set_title("image + lesion box", fontsize=8)
            ax.add_patch(Rectangle((box[0] - .5, box[1] - .5), box[2] - box[0], box[3] - box[1], fill=False,
                                   edgecolor="lime", linewidth=1.2))
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(table)


# --------------------------------------------------------------------------- claims
def claims(sets: dict, robust: dict, auto: dict, skipped: dict, margin: float = 5.0) -> list[dict]:
    """claims.csv rows. sets: {(with, without): {metric: (Effect, paper effect)}} of the +- CARE pairs;
    robust: {name: Effect of (worst sweep value - default) MCA}; auto: {(auto, gt or baseline): ...}."""
    rows = []

    def every(cid, text, metric, pairs):
        eff = {f"{a} - {b}": sets[(a, b)][metric][0] for a, b in pairs if (a, b) in sets and metric in sets[(a, b)]}
        pe = [sets[(a, b)][metric][1] for a, b in pairs if (a, b) in sets and metric in sets[(a, b)]]
        pe = float(np.nanmin(pe)) if pe and not np.isnan(pe).all() else None
        claim = C.Claim(cid, text, "X+CARE - X, every base", f"{metric} (pp)", "greater", 0.0, pe)
        rows.append(C.judge_every(PAPER, claim, eff) if eff else C.judge(PAPER, claim, None, note="no pair was run"))

    care_pairs = [p for p in sets if p[0].endswith("+CARE") and "(" not in p[0]]
    every("minority_recall", "CARE raises minority-class recall over every base method", "minority_recall", care_pairs)
    every("mca", "CARE raises MCA over every base method", "MCA", care_pairs)
    every("attention", "CARE moves Grad-CAM attention into the lesion box (minority class)", "attention", care_pairs)
    for (a, b), ms in auto.items():
        cid = f"auto_{a}_vs_{b}".replace(" ", "").replace("+", "").replace("(", "_").replace(")", "")
        e, pe = ms["MCA"]
        if "GT" in a:  # GT best: GT - auto > 0
            rows.append(C.judge(PAPER, C.Claim(cid, "CARE with ground-truth boxes beats CARE with automatic boxes",
                                               f"{a} - {b}", "MCA (pp)", "greater", 0.0, pe), e))
        else:
            rows.append(C.judge(PAPER, C.Claim(cid, "CARE with automatic boxes beats the base method without CARE",
                                               f"{a} - {b}", "MCA (pp)", "greater", 0.0, pe), e))
    for name, e in robust.items():
        rows.append(C.judge(PAPER, C.Claim(f"robust_{name}", f"MCA is robust to {name} (within +-{margin:g} pp of "
                                           f"the default)", f"worst {name} - default", "MCA (pp)", "within",
                                           (-margin, margin)), e))
    for cid, why in skipped.items():
        rows.append(C.judge(PAPER, C.Claim(cid, why.split(":")[0], "-", "-"), None, note=why))
    return rows


def robust_effect(rows: pd.DataFrame, key: str, default) -> C.Effect | None:
    """Worst (largest |mean|) per-seed MCA difference of any swept value against the default value (pp)."""
    base = rows[rows[key] == default].set_index("seed")["mcr"] * 100
    worst = None
    for v, g in rows[rows[key] != default].groupby(key):
        e = C.paired_effect(g.set_index("seed")["mcr"] * 100, base)
        if worst is None or abs(e.mean) > abs(worst.mean):
            worst = e
    return worst
