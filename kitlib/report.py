"""Report outputs: tables (CSV + Markdown), figures (PNG + PDF), paper-vs-ours tables, run records.

Every file is written atomically: the content goes to a temporary file in the destination folder,
which then replaces the destination with ``os.replace``. A reader therefore sees either the old
file or the complete new one, never a half-written file; after an error the old file is intact
and no temporary file is left behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform as _platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

import kitlib

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_write_bytes",
    "write_table",
    "markdown_table",
    "save_figure",
    "reference_dir",
    "load_reference",
    "paper_vs_ours",
    "run_record",
    "write_json",
    "plot_per_class_bars",
    "plot_curves",
    "plot_class_histogram",
]

REPO_ROOT = Path(kitlib.__file__).resolve().parents[1]
"""Repository root: the folder holding the ``kitlib`` package."""

REFERENCE_COLUMNS = ("table", "row", "column", "value", "spread")

# --------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    Creates the folder if needed. The temporary name ends with ``path``'s suffix (so tools that
    infer the format from the extension work). If the block raises, the temporary file is
    removed, ``path`` is left as it was and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (folders created). Returns ``Path(path)``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (folders created). Returns ``Path(path)``."""
    return atomic_write_bytes(path, text.encode(encoding))


def _with_suffix(stem: str | os.PathLike, suffix: str) -> Path:
    # append rather than Path.with_suffix: "eps_0.001" must not lose its ".001"
    return Path(f"{os.fspath(stem)}{suffix}")


# --------------------------------------------------------------------------------------------
# tables


def _fmt_cell(value, float_format: str | Callable | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        if float_format is None:
            return repr(float(value))
        return float_format(value) if callable(float_format) else float_format % value
    if value is pd.NA or value is pd.NaT:
        return ""
    text = str(value).replace("\r\n", " ").replace("\n", " ")
    return text.replace("|", "\\|")


def _flat_columns(df: pd.DataFrame) -> pd.DataFrame:
    if isinstance(df.columns, pd.MultiIndex):
        df = df.copy()
        df.columns = [" / ".join(str(x) for x in col if str(x) != "") for col in df.columns]
    return df


def _use_index(df: pd.DataFrame, index: bool | None) -> bool:
    if index is not None:
        return index
    return any(name is not None for name in df.index.names)


def markdown_table(
    df: pd.DataFrame, float_format: str | Callable | None = "%.2f", index: bool | None = None
) -> str:
    """GitHub-flavoured Markdown table of ``df`` (numeric columns right-aligned).

    Floats are formatted with ``float_format`` (a ``%`` format or a callable), NaN / None are
    empty cells, ``|`` is escaped. ``index=None`` writes the index only when it has a name.
    """
    df = _flat_columns(df)
    if _use_index(df, index):
        df = df.reset_index()
    headers = [_fmt_cell(str(c), None) for c in df.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(df.iloc[:, i]) and not pd.api.types.is_bool_dtype(df.iloc[:, i])
        for i in range(df.shape[1])
    ]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if num else ":---" for num in numeric) + "|",
    ]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_fmt_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    df: pd.DataFrame,
    path_stem: str | os.PathLike,
    float_format: str | Callable | None = "%.2f",
    index: bool | None = None,
) -> tuple[Path, Path]:
    """Write ``df`` as ``<path_stem>.csv`` and ``<path_stem>.md`` (atomically, folders created).

    ``float_format`` applies to floats in both files (so they show the same numbers);
    ``index=None`` writes the index only when it has a name. MultiIndex columns are flattened as
    ``"a / b"``. Returns ``(csv_path, md_path)``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"write_table expects a pandas DataFrame, got {type(df).__name__}")
    flat = _flat_columns(df)
    use_index = _use_index(flat, index)
    csv_path, md_path = _with_suffix(path_stem, ".csv"), _with_suffix(path_stem, ".md")
    csv_text = flat.to_csv(index=use_index, float_format=float_format, lineterminator="\n")
    atomic_write_text(csv_path, csv_text)
    atomic_write_text(md_path, markdown_table(flat, float_format=float_format, index=use_index))
    return csv_path, md_path


# --------------------------------------------------------------------------------------------
# figures


def save_figure(fig, path_stem: str | os.PathLike, dpi: int = 150, show: bool = True) -> tuple[Path, Path]:
    """Save ``fig`` as ``<path_stem>.png`` (``dpi``) and ``<path_stem>.pdf``, atomically, and, inside a
    notebook (an IPython kernel) with ``show``, display it in the cell's output.

    Uses ``bbox_inches="tight"`` so legends placed outside the axes are kept. The figure is
    closed afterwards (also on error), so it is shown once. Returns ``(png_path, pdf_path)``.
    """
    import matplotlib.pyplot as plt

    png, pdf = _with_suffix(path_stem, ".png"), _with_suffix(path_stem, ".pdf")
    try:
        for path, fmt in ((png, "png"), (pdf, "pdf")):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        if show and _in_kernel():
            from IPython.display import display
            display(fig)
    finally:
        plt.close(fig)
    return png, pdf


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), False in a terminal or a script."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


# --------------------------------------------------------------------------------------------
# reference numbers of the papers


def reference_dir() -> Path:
    """``<repo root>/results/reference``: where ``<paper>.csv`` reference tables live."""
    return REPO_ROOT / "results" / "reference"


def load_reference(
    paper: str, table: str | None = None, directory: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Reference numbers of one paper from ``results/reference/<paper>.csv``.

    The file has the columns ``table,row,column,value,spread`` (``value`` in the paper's units,
    e.g. percent; ``spread`` the std printed in brackets, or empty). ``table``, ``row`` and
    ``column`` are kept as strings exactly as written; ``value`` / ``spread`` become floats
    (empty spread -> NaN); further columns (e.g. ``note``) are kept as strings after these.
    ``table`` selects one table. ``directory`` overrides
    :func:`reference_dir`. A missing or malformed file is an error naming it.
    """
    folder = reference_dir() if directory is None else Path(directory)
    path = folder / f"{paper}.csv"
    if not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []
        raise FileNotFoundError(
            f"no reference table {path}; available papers in {folder}: {have or 'none'} "
            f"(transcribe the paper's numbers there with columns {','.join(REFERENCE_COLUMNS)})"
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"reference table {path} cannot be read as CSV: {err}") from err
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"reference table {path} lacks columns {missing}; "
            f"expected header {','.join(REFERENCE_COLUMNS)} (found {list(df.columns)})"
        )
    extra = [c for c in df.columns if c not in REFERENCE_COLUMNS]  # e.g. a free-text note
    df = df[list(REFERENCE_COLUMNS) + extra].copy()
    for col in ("table", "row", "column"):
        df[col] = df[col].str.strip()
    for col in ("value", "spread"):
        raw = df[col].str.strip()
        num = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
        bad = raw[(raw != "") & num.isna()]
        if len(bad):
            line = int(bad.index[0]) + 2  # header is line 1
            raise ValueError(
                f"reference table {path}, line {line}: {col} {bad.iloc[0]!r} is not a number"
            )
        df[col] = num.astype(np.float64)
    if df["value"].isna().any():
        line = int(np.flatnonzero(df["value"].isna().to_numpy())[0]) + 2
        raise ValueError(f"reference table {path}, line {line}: value is empty")
    dup = df.duplicated(["table", "row", "column"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise ValueError(
            f"reference table {path}: (table, row, column) = "
            f"({first['table']!r}, {first['row']!r}, {first['column']!r}) appears more than once"
        )
    if table is not None:
        if str(table) not in set(df["table"]):
            raise ValueError(
                f"reference table {path} has no table {table!r}; it has {sorted(set(df['table']))}"
            )
        df = df[df["table"] == str(table)]
    return df.reset_index(drop=True)


def paper_vs_ours(
    reference: pd.DataFrame,
    ours: pd.DataFrame,
    value_col: str = "value",
    spread_col: str = "spread",
    scale: float = 1.0,
    digits: int = 2,
) -> pd.DataFrame:
    """Side-by-side table of the paper's numbers and ours.

    Parameters
    ----------
    reference : from :func:`load_reference` (columns ``table,row,column,value,spread``).
    ours : columns ``table``, ``row``, ``column``, ``value_col`` (our mean) and optionally
        ``spread_col`` (our std), in the same units as the reference (use ``scale`` to convert,
        e.g. ``scale=100`` for fractions against a paper in percent).
    digits : decimals of the formatted cells.

    Returns
    -------
    DataFrame with columns ``table,row,column,paper,ours,diff``: ``paper`` and ``ours`` are
    ``"mean (std)"`` strings (empty where that side has no number), ``diff`` = ours - paper
    (float, NaN where a side is missing). The join is on (table, row, column) compared as
    strings; rows of the reference come first in their order, then rows only we have.
    """
    keys = ["table", "row", "column"]
    for name, df, cols in (
        ("reference", reference, keys + ["value", "spread"]),
        ("ours", ours, keys + [value_col]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"paper_vs_ours: {name} lacks columns {missing} (has {list(df.columns)})")

    ref = reference[keys + ["value", "spread"]].copy()
    ref.columns = keys + ["p_val", "p_std"]
    our = ours[keys].copy()
    our["o_val"] = pd.to_numeric(ours[value_col], errors="raise").astype(float) * scale
    our["o_std"] = (
        pd.to_numeric(ours[spread_col], errors="raise").astype(float) * scale
        if spread_col in ours.columns else np.nan
    )
    for df, name in ((ref, "reference"), (our, "ours")):
        for k in keys:
            df[k] = df[k].astype(str)
        dup = df.duplicated(keys)
        if dup.any():
            raise ValueError(
                f"paper_vs_ours: {name} has more than one row for (table, row, column) = "
                f"{tuple(df.loc[dup, keys].iloc[0])}"
            )
    ref["_order"] = np.arange(len(ref))
    our["_order2"] = np.arange(len(our))
    out = ref.merge(our, on=keys, how="outer")
    out["_order"] = out["_order"].fillna(len(ref) + out["_order2"])
    out = out.sort_values("_order", kind="stable").reset_index(drop=True)

    from kitlib.metrics import format_mean_std

    def fmt(v, s):
        return format_mean_std(v, s, scale=1.0, digits=digits) if pd.notna(v) else ""

    return pd.DataFrame(
        {
            "table": out["table"],
            "row": out["row"],
            "column": out["column"],
            "paper": [fmt(v, s) for v, s in zip(out["p_val"], out["p_std"])],
            "ours": [fmt(v, s) for v, s in zip(out["o_val"], out["o_std"])],
            "diff": (out["o_val"] - out["p_val"]).astype(float),
        }
    )


# --------------------------------------------------------------------------------------------
# run records


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = res.stdout.strip()
    return commit if res.returncode == 0 and commit else None


def _device() -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return "cpu"


def run_record(config, extra: Mapping | None = None) -> dict:
    """What a result was made with: a dict ready for :func:`write_json`.

    Keys: ``config`` (the dict given; a dataclass is converted), ``versions`` (torch,
    torchvision, numpy, sklearn, scipy, pandas, kitlib; None when not installed), ``python``,
    ``platform``, ``git_commit`` (HEAD of the repository, None outside git or before the first
    commit), ``device`` (CUDA device name or ``"cpu"``), ``timestamp`` (UTC, ISO 8601), plus the
    keys of ``extra`` (a key clashing with the ones above is an error).
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"run_record: config must be a dict or dataclass, got {type(config).__name__}")
    record = {
        "config": dict(config),
        "versions": {
            "torch": _version("torch"),
            "torchvision": _version("torchvision"),
            "numpy": np.__version__,
            "sklearn": _version("scikit-learn"),
            "scipy": _version("scipy"),
            "pandas": pd.__version__,
            "kitlib": kitlib.__version__,
        },
        "python": _platform.python_version(),
        "platform": _platform.platform(),
        "git_commit": _git_commit(),
        "device": _device(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in (extra or {}).items():
        if key in record:
            raise ValueError(f"run_record: extra key {key!r} clashes with a record field")
        record[key] = value
    return record


def _jsonable(obj):
    """Plain JSON types: numpy scalars/arrays, Paths, tuples/sets, dataclasses, datetimes,
    tensors converted; NaN / inf become None (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(_jsonable(k)) if not isinstance(k, str) else k: _jsonable(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [_jsonable(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if hasattr(obj, "tolist") and callable(obj.tolist):  # torch tensors, pandas arrays
        return _jsonable(obj.tolist())
    raise TypeError(f"write_json: cannot store a {type(obj).__name__} in JSON")


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (folders created).

    Handles numpy scalars and arrays, Paths, tuples, sets, dataclasses and datetimes; NaN and
    inf are written as ``null`` so the file is strict JSON. Returns ``Path(path)``.
    """
    text = json.dumps(_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


# --------------------------------------------------------------------------------------------
# plots shared by the notebooks


def _legend_outside(ax, title: str | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)


def plot_per_class_bars(
    recalls: pd.DataFrame,
    class_names: Sequence[str] | None = None,
    title: str = "Per-class recall",
    ylabel: str = "Recall (%)",
    scale: float = 100.0,
):
    """Grouped bars: one group per class, one bar per method (papers 000 Fig. 2, 002 Fig. 3).

    ``recalls`` is a DataFrame with one row per class (in class order) and one column per method,
    values as fractions (multiplied by ``scale`` for display; use ``scale=1`` and another
    ``ylabel`` for other metrics). ``class_names`` labels the rows (default: the index).
    A bar of height 0 is labelled "0" above the axis so that it stays visible.
    Returns the figure (legend outside the axes).
    """
    import matplotlib.pyplot as plt

    if not isinstance(recalls, pd.DataFrame) or recalls.empty:
        raise ValueError("plot_per_class_bars: recalls must be a non-empty DataFrame (classes x methods)")
    names = [str(i) for i in recalls.index] if class_names is None else [str(c) for c in class_names]
    if len(names) != len(recalls):
        raise ValueError(
            f"plot_per_class_bars: {len(names)} class_names for {len(recalls)} rows of recalls"
        )
    n_cls, n_meth = recalls.shape
    width = 0.8 / n_meth
    x = np.arange(n_cls)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * n_cls * max(1, n_meth) ** 0.5 + 2), 3.6))
    colors = _palette(n_meth)
    for j, method in enumerate(recalls.columns):
        vals = recalls[method].to_numpy(dtype=float) * scale
        bars = ax.bar(x - 0.4 + width * (j + 0.5), vals, width, label=str(method), color=colors[j])
        # a zero bar has no height: label it "0" so it is seen, not mistaken for a missing one
        ax.bar_label(bars, labels=["0" if v == 0 else "" for v in vals], fontsize=7, color=colors[j], padding=1)
    ax.set_xticks(x, names, rotation=30 if max(len(n) for n in names) > 4 else 0,
                  ha="right" if max(len(n) for n in names) > 4 else "center")
    ax.set_xlabel("Class")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _legend_outside(ax, "Method")
    fig.tight_layout()
    return fig


def _palette(n: int) -> list:
    import seaborn as sns

    return sns.color_palette("tab10" if n <= 10 else "husl", n)


def plot_curves(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    style: str | None = None,
    logx: bool = False,
    baselines: Mapping | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    band: bool | None = None,
):
    """Line plot of ``y`` against ``x``, one line per ``hue``, each with its own colour and marker (and dash
    ``style``); e.g. ε sweeps.

    Several rows per (x, hue) are averaged; ``band`` draws a ±1 std band around each line (deterministic, no
    bootstrap); by default only when there are at most 3 lines, since more bands hide each other.
    ``baselines`` maps a hue value to a y value drawn as a dashed horizontal line in that hue's
    colour (e.g. the model without perturbation). Axis labels default to the column names: pass
    ``xlabel`` / ``ylabel`` with units. Returns the figure (legend outside the axes).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    cols = [c for c in (x, y, hue, style) if c is not None]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"plot_curves: columns {missing} not in df (has {list(df.columns)})")
    levels = list(pd.unique(df[hue]))
    for key in (baselines or {}):
        if key not in levels:
            levels.append(key)
    palette = dict(zip(levels, _palette(len(levels))))
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    hues = list(pd.unique(df[hue]))
    if band is None:
        band = len(hues) <= 3
    sns.lineplot(
        data=df, x=x, y=y, hue=hue, style=style or hue, palette={k: palette[k] for k in hues},
        hue_order=hues, markers=True, dashes=style is not None, markersize=7,
        errorbar="sd" if band else None, ax=ax,
    )
    for key, value in (baselines or {}).items():
        ax.axhline(float(value), color=palette[key], linestyle="--", linewidth=1.2,
                   label=f"{key} (baseline)")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel if xlabel is not None else x)
    ax.set_ylabel(ylabel if ylabel is not None else y)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_class_histogram(
    counts,
    class_names: Sequence[str] | None = None,
    title: str = "Images per class",
    sort: bool = True,
    logy: bool = False,
):
    """Bar chart of images per class (papers' dataset figures), majority classes left.

    ``counts``: (C,) array, list, dict or Series of counts. ``sort`` orders the bars by count
    (descending); ``logy`` uses a log count axis. Each bar is annotated with its count.
    """
    import matplotlib.pyplot as plt

    if isinstance(counts, Mapping):
        names_default, vals = [str(k) for k in counts], list(counts.values())
    elif isinstance(counts, pd.Series):
        names_default, vals = [str(k) for k in counts.index], counts.tolist()
    else:
        vals = list(np.asarray(counts).ravel())
        names_default = [str(i) for i in range(len(vals))]
    vals = np.asarray(vals, dtype=float)
    names = names_default if class_names is None else [str(c) for c in class_names]
    if len(names) != len(vals):
        raise ValueError(f"plot_class_histogram: {len(names)} class_names for {len(vals)} counts")
    order = np.argsort(-vals, kind="stable") if sort else np.arange(len(vals))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(vals) + 1.5), 3.4))
    bars = ax.bar(np.arange(len(vals)), vals[order], color=_palette(1)[0])
    ax.bar_label(bars, labels=[f"{int(v)}" if float(v).is_integer() else f"{v:g}" for v in vals[order]],
                 fontsize=8, padding=2)
    long = max((len(n) for n in names), default=0) > 4
    ax.set_xticks(np.arange(len(vals)), [names[i] for i in order], rotation=30 if long else 0,
                  ha="right" if long else "center")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("Class")
    ax.set_ylabel("Number of images" + (" (log scale)" if logy else ""))
    ax.set_title(title)
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig
