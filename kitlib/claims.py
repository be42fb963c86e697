"""Paper vs ours by effects: paired differences, their bootstrap interval, and the one verdict rule.

Every paper notebook states its claims as :class:`Claim` objects, measures each as an
:class:`Effect` (per-fold / per-seed paired differences of the same contrast the paper makes) and
writes ``claims.csv`` with :func:`write_claims`. :func:`verdict` is the only place where numbers
become ``supported`` / ``not supported`` / ``inconclusive`` / ``not run``; :data:`RULE` says it in
words for the notebooks. ``python -m kitlib claims`` gathers every run's file into one page
(:func:`collect`, :func:`claims_page`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from kitlib.metrics import bootstrap_mean_ci

COLUMNS = ("paper", "claim_id", "claim", "contrast", "metric", "paper_effect", "our_effect",
           "ci_low", "ci_high", "n_units", "verdict", "note")
VERDICTS = ("supported", "not supported", "inconclusive", "not run")
TESTS = ("greater", "less", "within")

RULE = (
    "Each claim is one contrast the paper makes (a method minus the baseline it is compared with, same "
    "table and column). We measure it on every fold or seed as a paired difference and take the 95 % "
    "percentile-bootstrap interval of their mean (10 000 resamples). A claim that something rises "
    "(test `greater` than a bound, 0 unless stated) is **supported** when the whole interval lies above "
    "the bound, **not supported** when it lies wholly below, and **inconclusive** when it spans the bound; "
    "`less` is the mirror image. A claim that two things are about equal, or that a value is about x "
    "(test `within` [lo, hi]), is supported when the interval lies inside [lo, hi], not supported when it "
    "lies wholly outside, inconclusive otherwise. Fewer than 2 units (folds/seeds), or any model at chance "
    "level, give inconclusive; a claim whose data or models were not run is **not run**, with the reason."
)


@dataclass(frozen=True)
class Effect:
    """Our measurement of one contrast: the per-unit paired differences and their summary."""

    diffs: tuple[float, ...]
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def n_units(self) -> int:
        return len(self.diffs)

    @classmethod
    def from_diffs(cls, diffs, n_boot: int = 10000, seed: int = 0) -> "Effect":
        """Summary of per-unit differences (NaNs dropped); the CI is :func:`kitlib.metrics.bootstrap_mean_ci`."""
        x = np.asarray(list(diffs), dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        if x.size == 0:
            raise ValueError("Effect.from_diffs: no finite difference to summarise")
        lo, hi = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
        std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
        return cls(tuple(float(v) for v in x), float(x.mean()), std, lo, hi)


def paired_effect(method: Mapping | pd.Series, baseline: Mapping | pd.Series, **kw) -> Effect:
    """Effect of ``method - baseline`` paired on their common units (fold or seed ids).

    Both map unit -> score. Units present on only one side are dropped; none in common is an error.
    """
    a, b = pd.Series(dict(method) if isinstance(method, Mapping) else method, dtype=float), \
        pd.Series(dict(baseline) if isinstance(baseline, Mapping) else baseline, dtype=float)
    common = [u for u in a.index if u in set(b.index)]
    if not common:
        raise ValueError(f"paired_effect: method units {list(a.index)} and baseline units {list(b.index)} "
                         "have none in common: pair the same folds/seeds")
    return Effect.from_diffs((a[common] - b[common]).to_numpy(), **kw)


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, stated as a test on an effect.

    test: ``greater`` (effect > bound), ``less`` (effect < bound) or ``within`` (bound = (lo, hi)).
    contrast: what is compared, e.g. ``"CE+perturbed - CE"``; metric: the column, e.g. ``"MCR (pp)"``.
    paper_effect: the same contrast computed from the paper's numbers (None when the paper gives none).
    """

    claim_id: str
    claim: str
    contrast: str
    metric: str
    test: str = "greater"
    bound: float | tuple[float, float] = 0.0
    paper_effect: float | None = None

    def __post_init__(self):
        if self.test not in TESTS:
            raise ValueError(f"Claim {self.claim_id!r}: test must be one of {TESTS}, got {self.test!r}")
        if self.test == "within":
            ok = isinstance(self.bound, (tuple, list)) and len(self.bound) == 2 and self.bound[0] <= self.bound[1]
            if not ok:
                raise ValueError(f"Claim {self.claim_id!r}: test 'within' needs bound=(lo, hi) with lo <= hi, "
                                 f"got {self.bound!r}")
        elif not isinstance(self.bound, (int, float)):
            raise ValueError(f"Claim {self.claim_id!r}: test {self.test!r} needs a number as bound, got {self.bound!r}")


def verdict(claim: Claim, effect: Effect | None) -> str:
    """The rule (:data:`RULE`): an effect's interval against the claim's bound."""
    if effect is None:
        return "not run"
    lo, hi = effect.ci_low, effect.ci_high
    if effect.n_units < 2 or math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if claim.test == "greater":
        return "supported" if lo > claim.bound else "not supported" if hi < claim.bound else "inconclusive"
    if claim.test == "less":
        return "supported" if hi < claim.bound else "not supported" if lo > claim.bound else "inconclusive"
    blo, bhi = claim.bound
    if blo <= lo and hi <= bhi:
        return "supported"
    return "not supported" if hi < blo or lo > bhi else "inconclusive"


def _bound_text(claim: Claim) -> str:
    if claim.test == "within":
        return f"within [{claim.bound[0]:g}, {claim.bound[1]:g}]"
    return f"{'>' if claim.test == 'greater' else '<'} {claim.bound:g}"


def judge(paper: str, claim: Claim, effect: Effect | None, note: str = "", at_chance: bool = False) -> dict:
    """One claims.csv row. ``effect=None`` is ``not run`` (say why in ``note``); ``at_chance`` forces inconclusive."""
    if effect is None and not note:
        raise ValueError(f"claim {claim.claim_id!r} not run: say why in note (which data or model is missing)")
    v = verdict(claim, effect)
    notes = [f"test: {_bound_text(claim)}"]
    if at_chance and effect is not None:
        v = "inconclusive"
        notes.append("a model is at chance level: not evidence for or against the claim")
    elif effect is not None and effect.n_units < 2:
        notes.append("one unit: no interval")
    if note:
        notes.append(note)
    nan = float("nan")
    return {
        "paper": paper, "claim_id": claim.claim_id, "claim": claim.claim, "contrast": claim.contrast,
        "metric": claim.metric,
        "paper_effect": nan if claim.paper_effect is None else float(claim.paper_effect),
        "our_effect": nan if effect is None else effect.mean,
        "ci_low": nan if effect is None else effect.ci_low,
        "ci_high": nan if effect is None else effect.ci_high,
        "n_units": 0 if effect is None else effect.n_units,
        "verdict": v, "note": "; ".join(notes),
    }


def judge_every(paper: str, claim: Claim, effects: Mapping[str, Effect | None], at_chance: Iterable[str] = ()) -> dict:
    """A claim about every member of a family ("MCR rises for every baseline").

    Supported when every member's effect is supported; not supported when any member's is not
    supported; otherwise inconclusive (not run when none was run). The row shows the member with
    the weakest evidence (lowest interval end in the claimed direction) and lists every verdict.
    """
    chance = set(at_chance)
    ran = {k: e for k, e in effects.items() if e is not None}
    if not ran:
        return judge(paper, claim, None, note=f"none of {list(effects)} was run")
    each = {k: ("inconclusive" if k in chance else verdict(claim, e)) for k, e in ran.items()}
    if all(v == "supported" for v in each.values()):
        v = "supported"
    elif any(v == "not supported" for v in each.values()):
        v = "not supported"
    else:
        v = "inconclusive"
    sign = -1 if claim.test == "less" else 1

    def strength(k):  # a member without an interval (one unit) is shown only when no member has one
        end = ran[k].ci_low if sign > 0 else ran[k].ci_high
        return (bool(np.isnan(end)), sign * end)
    weakest = min(ran, key=strength)
    missing = [k for k in effects if effects[k] is None]
    note = "each: " + ", ".join(f"{k} {each[k]}" for k in each)
    if missing:
        note += f"; not run: {', '.join(missing)}"
    row = judge(paper, Claim(claim.claim_id, claim.claim, f"{claim.contrast} (weakest: {weakest})", claim.metric,
                             claim.test, claim.bound, claim.paper_effect), ran[weakest], note=note)
    row["verdict"] = v
    return row


def effect_table(scores: pd.DataFrame, contrasts: Sequence[tuple], unit: str = "fold", value: str = "value",
                 key: str = "method", scale: float = 1.0) -> pd.DataFrame:
    """Effect table: for each contrast, the paper's effect beside ours with its spread and 95 % CI.

    scores : long table, one row per (``key`` value, ``unit``, ``metric``) with the score in ``value``
        (further columns are ignored).
    contrasts : tuples ``(method, baseline, metric)`` or ``(method, baseline, metric, paper_effect)``.
    scale : multiplies our differences (e.g. 100 for fractions against a paper in percent).
    Returns columns ``contrast, metric, paper_effect, our_effect, our_std, ci_low, ci_high, n_units, diffs``.
    """
    need = {key, unit, "metric", value}
    if need - set(scores.columns):
        raise ValueError(f"effect_table: scores lacks columns {sorted(need - set(scores.columns))} "
                         f"(has {list(scores.columns)})")
    rows = []
    for c in contrasts:
        method, base, metric = c[:3]
        paper = c[3] if len(c) > 3 else None
        sub = scores[scores["metric"] == metric]
        side = {}
        for name in (method, base):
            s = sub[sub[key] == name]
            if s.empty:
                raise ValueError(f"effect_table: no {metric!r} scores for {key} {name!r} "
                                 f"(have {sorted(map(str, sub[key].unique()))})")
            side[name] = s.set_index(unit)[value].astype(float) * scale
        e = paired_effect(side[method], side[base])
        rows.append({"contrast": f"{method} - {base}", "metric": metric,
                     "paper_effect": np.nan if paper is None else float(paper), "our_effect": e.mean,
                     "our_std": e.std, "ci_low": e.ci_low, "ci_high": e.ci_high, "n_units": e.n_units,
                     "diffs": " ".join(f"{d:+.2f}" for d in e.diffs)})
    return pd.DataFrame(rows)


def verdict_text(claims_rows: pd.DataFrame, profile: str) -> str:
    """The written verdict of a notebook: one line per claim (verdict, our effect with its interval, the paper's),
    the smoke caveat, then :data:`RULE`."""
    lines = []
    for _, r in claims_rows.iterrows():
        ours = "" if r["n_units"] == 0 else (f": ours {r['our_effect']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] "
                                             f"{r['metric']}, n = {int(r['n_units'])}")
        paper = "" if pd.isna(r["paper_effect"]) else f" (paper {r['paper_effect']:+.2f})"
        lines.append(f"- **{r['verdict']}** · {r['claim_id']}: {r['claim']}{ours}{paper}. {r['note']}.")
    if profile == "smoke":
        lines.append("- Smoke profile: synthetic data, tiny models, a few epochs. These verdicts show that every "
                     "step runs; they are not evidence for or against the paper.")
    lines.append(f"\n*Rule.* {RULE}")
    return "\n".join(lines)


def claims_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Rows (from :func:`judge`) as a DataFrame with exactly :data:`COLUMNS`, checked."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"claims rows lack columns {missing}")
    bad = sorted(set(df["verdict"]) - set(VERDICTS))
    if bad:
        raise ValueError(f"claims: verdict {bad[0]!r} is not one of {VERDICTS}")
    dup = df["claim_id"].duplicated()
    if dup.any():
        raise ValueError(f"claims: claim_id {df.loc[dup, 'claim_id'].iloc[0]!r} appears twice")
    return df[list(COLUMNS)]


def write_claims(rows: Iterable[Mapping], out_dir) -> pd.DataFrame:
    """Write ``claims.csv`` and ``claims.md`` into ``out_dir``; returns the table."""
    from kitlib import report

    df = claims_frame(rows)
    report.write_table(df, Path(out_dir) / "claims", float_format="%.3g")
    return df


# --------------------------------------------------------------------------------------------
# the one page: every claim of every paper that has run


def collect(results: str | Path, profile: str) -> tuple[pd.DataFrame, list[str]]:
    """Every ``<results>/<profile>/<paper>/claims.csv`` of a whole, successful result.

    Returns (claims, problems): results that are incomplete or failed (see
    :func:`kitlib.reproduce.verify_result`) or a claims.csv that is malformed are left out and named in
    ``problems``. ``.failed`` and staging folders are never read.
    """
    from kitlib.reproduce import verify_result

    root = Path(results) / profile
    frames, problems = [], []
    if not root.is_dir():
        return pd.DataFrame(columns=COLUMNS), [f"{root}: no results for profile {profile!r}"]
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and not p.name.endswith(".failed")):
        path = folder / "claims.csv"
        if not path.is_file():
            problems.append(f"{path}: missing (the notebook wrote no claims)")
            continue
        wrong = verify_result(folder)
        if wrong:
            problems.append(f"{folder}: not a whole successful result, left out ({wrong[0]})")
            continue
        try:
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
            frames.append(claims_frame(df.to_dict("records")))
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            problems.append(f"{path}: malformed ({err})")
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return df, problems


def _num(x, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.{digits}f}"


def claims_page(claims: pd.DataFrame, profile: str, problems: Sequence[str] = ()) -> str:
    """Markdown: a verdict count, then one table per paper (claim, paper's effect, ours with its CI, verdict)."""
    lines = [f"# Claims, profile `{profile}`", ""]
    if profile == "smoke":
        lines += ["Smoke runs use synthetic data and tiny models: their verdicts only show that each step runs.", ""]
    if claims.empty:
        lines.append("No claims yet: run `python -m kitlib reproduce --profile " + profile + "`.")
    else:
        counts = claims["verdict"].value_counts()
        lines.append(" · ".join(f"{v}: {int(counts.get(v, 0))}" for v in VERDICTS))
        for paper, sub in claims.groupby("paper", sort=False):
            lines += ["", f"## {paper}", "", "| claim | contrast | metric | paper | ours [95 % CI] | n | verdict | note |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            for _, r in sub.iterrows():
                ours = "" if r["n_units"] == 0 else f"{_num(r['our_effect'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
                cells = [f"{r['claim_id']}: {r['claim']}", r["contrast"], r["metric"], _num(r["paper_effect"]), ours,
                         str(int(r["n_units"])), f"**{r['verdict']}**", r["note"] if isinstance(r["note"], str) else ""]
                lines.append("| " + " | ".join(" ".join(str(c).replace("|", "/").split()) for c in cells) + " |")
    if problems:
        lines += ["", "Left out:", ""] + [f"- {p}" for p in problems]
    lines += ["", "How a verdict is reached: " + RULE, ""]
    return "\n".join(lines)
