"""Run the paper notebooks with papermill and record each run (`python -m kitlib reproduce`).

For every selected paper the notebook is executed (kernel ``python3`` of the running interpreter)
with parameters ``profiles.get(paper, profile)`` (or just ``profile`` when the paper has no
profiles entry), then ``device`` and ``out_dir``, then the ``-p key=value`` overrides.
Everything a run produces lies in ``<out>/<profile>/<paper>/``:

    <paper>.ipynb          the executed notebook (written as <paper>.running.ipynb, renamed on success)
    <paper>.failed.ipynb   instead, when a cell raised (papermill marks the failing cell)
    run.json               kitlib.report.run_record (config, versions, git commit, device, ...) plus
                           parameters, package versions, start/end times, duration, status, error
    ...                    whatever tables and figures the notebook writes to ``out_dir``

A notebook's ``parameters`` cell must declare ``profile``, ``device`` and ``out_dir``.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kitlib import profiles

# paper key -> notebook file name in the notebooks folder, in run order.
PAPERS: dict[str, str] = {
    "perturbed_input": "01_perturbed_input.ipynb",
    "balanced_mixup": "02_balanced_mixup.ipynb",
    "contrastive": "03_contrastive.ipynb",
    "care": "04_care.ipynb",
    "metric_learning": "05_metric_learning.ipynb",
}

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_ENV = "KITLIB_NOTEBOOKS_DIR"
KERNEL_NAME = "python3"
# Parameters kitlib injects itself; a `-p` override of these is refused (use --profile/--device/--out).
RESERVED = {"profile": "--profile", "device": "--device", "out_dir": "--out"}


@dataclass
class RunResult:
    """Outcome of one notebook: status is "ok", "failed" or "skipped" (notebook absent)."""

    paper: str
    status: str
    duration_s: float | None = None
    notebook: Path | None = None  # executed notebook (or the expected input path when skipped)
    run_json: Path | None = None
    error: dict | None = None
    parameters: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- notebooks
def default_notebooks_dir() -> Path:
    """``$KITLIB_NOTEBOOKS_DIR`` when set, else ``notebooks/`` at the repository root."""
    env = os.environ.get(NOTEBOOKS_ENV)
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "notebooks"


def find_notebook(paper: str, notebooks_dir: Path) -> Path | None:
    """The notebook of `paper` in `notebooks_dir`, or None when there is none.

    A key of `PAPERS` maps to its fixed file name; any other key matches ``<key>.ipynb`` or
    ``<NN>_<key>.ipynb`` (so a folder of extra notebooks, e.g. test fixtures, can be run by name).
    """
    notebooks_dir = Path(notebooks_dir)
    if paper in PAPERS:
        path = notebooks_dir / PAPERS[paper]
        return path if path.is_file() else None
    hits = [p for p in sorted(notebooks_dir.glob("*.ipynb"))
            if re.fullmatch(rf"(\d+_)?{re.escape(paper)}", p.stem)]
    if len(hits) > 1:
        raise ValueError(f"paper {paper!r} matches several notebooks in {notebooks_dir}: "
                         f"{[p.name for p in hits]}; rename one of them")
    return hits[0] if hits else None


# ----------------------------------------------------------------------------- overrides
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _as_plain(value, item: str):
    """YAML value -> str/int/float/bool/None/list/dict (PyYAML reads `1e-3` as a string: fix that)."""
    if isinstance(value, str):
        return float(value) if _FLOAT_RE.fullmatch(value) else value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        return [_as_plain(v, item) for v in value]
    if isinstance(value, dict):
        return {str(k): _as_plain(v, item) for k, v in value.items()}
    # dates, timestamps, ...: keep the text as typed
    return item.split("=", 1)[1].strip()


def parse_overrides(items: list[str] | None) -> dict:
    """Parse ``-p key=value`` items; values are YAML scalars or lists (``epochs=3``, ``methods=[ce,rs]``).

    Returns {key: value} (a later item wins). Raises ValueError naming the bad item.
    """
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"-p {item!r}: expected key=value, e.g. -p epochs=3 or -p methods=[ce,rs]")
        key, text = (s.strip() for s in item.split("=", 1))
        if not key.isidentifier():
            raise ValueError(f"-p {item!r}: {key!r} is not a valid notebook parameter name")
        if key in RESERVED:
            raise ValueError(f"-p {item!r}: {key} is set by kitlib; use {RESERVED[key]} instead")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError as exc:
            raise ValueError(f"-p {item!r}: value is not a YAML scalar or list ({exc.problem})") from None
        out[key] = _as_plain(value, item)
    return out


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's ``parameters``-tagged cell (empty set when it has none)."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def paper_parameters(paper: str, profile: str) -> dict:
    """``profiles.get(paper, profile)``, or ``{"profile": profile}`` when the paper has no entry."""
    if paper in profiles.PROFILES:
        return profiles.get(paper, profile)
    if profile not in profiles.PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {profiles.PROFILE_NAMES}")
    return {"profile": profile}


# ----------------------------------------------------------------------------- provenance
def package_versions() -> dict[str, str | None]:
    """Installed versions of kitlib and of every runtime dependency it declares (None if absent)."""
    names = ["kitlib"]
    try:
        for req in importlib.metadata.requires("kitlib") or []:
            if "extra ==" not in req:
                names.append(re.match(r"[A-Za-z0-9_.\-]+", req).group(0))
    except importlib.metadata.PackageNotFoundError:
        pass
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_dirty(root: Path = REPO_ROOT) -> bool | None:
    """True when tracked files differ from the commit (read-only `git status`); None outside git."""
    try:
        res = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(res.stdout.strip()) if res.returncode == 0 else None


def kernel_python() -> str | None:
    """The interpreter the ``python3`` kernel will start (jupyter_client maps a bare `python` to sys.executable)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        argv0 = KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0]
    except Exception:  # no kernelspec at all: papermill will say so when it runs
        return None
    bare = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    return sys.executable if argv0 in bare else argv0


def environment() -> dict:
    """Provenance added to kitlib.report.run_record (which holds python, platform, git commit, device)."""
    return {
        "executable": sys.executable,
        "kernel_python": kernel_python(),
        "packages": package_versions(),
        "git_dirty": git_dirty(),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- running
def _error_info(exc: BaseException, executed: Path) -> dict:
    """Failing cell and error of a papermill run.

    cell_index: 0-based index of the failing cell in the *source* notebook; executed_cell_index:
    its index in the executed notebook (papermill inserts an `injected-parameters` cell).
    """
    from papermill.exceptions import PapermillExecutionError

    lines = [line for line in str(exc).splitlines() if line.strip()]
    info = {"ename": type(exc).__name__, "evalue": lines[0].strip() if lines else "",
            "cell_index": None, "executed_cell_index": None, "execution_count": None, "source": None}
    if isinstance(exc, PapermillExecutionError):
        info.update(ename=exc.ename, evalue=exc.evalue, executed_cell_index=exc.cell_index,
                    execution_count=exc.exec_count, source=exc.source)
    else:  # e.g. a cell timeout: the failing cell is the last one papermill started
        try:
            import nbformat

            nb = nbformat.read(executed, as_version=4)
            started = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
            if started:
                cell = nb.cells[started[-1]]
                info.update(executed_cell_index=started[-1], execution_count=cell.get("execution_count"),
                            source=cell.source)
        except Exception:  # noqa: BLE001 - no partial notebook: the error itself is still reported
            pass
    if info["executed_cell_index"] is not None:
        injected_at = _injected_index(executed)
        i = info["executed_cell_index"]
        info["cell_index"] = i - 1 if injected_at is not None and i > injected_at else i
    if info["source"]:
        info["source"] = info["source"][:500]
    return info


def _injected_index(executed: Path) -> int | None:
    """Index of papermill's `injected-parameters` cell in the executed notebook (before error markers)."""
    try:
        import nbformat

        cells = [c for c in nbformat.read(executed, as_version=4).cells
                 if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    except Exception:
        return None
    for i, cell in enumerate(cells):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def run_notebook(paper: str, notebook: Path, parameters: dict, out_dir: Path, *, config: dict,
                 env: dict, timeout: float | None = None, progress: bool = True) -> RunResult:
    """Execute `notebook` with `parameters` into `out_dir` and write `out_dir/run.json`.

    Never raises for a failing notebook (the error goes into the result and run.json);
    KeyboardInterrupt is recorded as status "interrupted" and re-raised.
    """
    import papermill

    from kitlib.report import run_record, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    running = out_dir / f"{paper}.running.ipynb"
    done, failed = out_dir / f"{paper}.ipynb", out_dir / f"{paper}.failed.ipynb"
    started, t0 = _now(), time.perf_counter()
    status, error, interrupted = "ok", None, None
    try:
        papermill.execute_notebook(
            str(notebook), str(running), parameters=parameters, kernel_name=KERNEL_NAME,
            cwd=str(notebook.parent), progress_bar=progress, execution_timeout=timeout,
        )
    except KeyboardInterrupt as exc:
        status, interrupted = "interrupted", exc
        error = {"ename": "KeyboardInterrupt", "evalue": "", "cell_index": None,
                 "executed_cell_index": None, "execution_count": None, "source": None}
    except Exception as exc:  # noqa: BLE001 - any failure of one notebook must not stop the others
        status, error = "failed", _error_info(exc, running)
    duration = time.perf_counter() - t0

    if status == "ok":
        os.replace(running, done)
        failed.unlink(missing_ok=True)
        final = done
    else:
        final = failed
        if running.exists():
            os.replace(running, failed)
        done.unlink(missing_ok=True)  # never leave an old success beside a failed run.json

    record = run_record(config, extra={
        "paper": paper,
        "status": status,
        "parameters": parameters,
        "notebook": str(final),
        "started_at": started,
        "finished_at": _now(),
        "duration_s": round(duration, 3),
        "error": error,
        **env,
    })
    run_json = write_json(out_dir / "run.json", record)
    if interrupted is not None:
        raise interrupted
    return RunResult(paper, status, duration, final, run_json, error, parameters)


def select(papers: list[str] | None, notebooks_dir: Path) -> tuple[list[tuple[str, Path]], list[RunResult]]:
    """(runnable (paper, notebook) pairs, skipped results). No papers = every key of PAPERS.

    A paper named explicitly whose notebook is absent is an error (ValueError); with no names the
    absent ones are returned as skipped.
    """
    chosen, skipped = [], []
    if papers:
        for paper in dict.fromkeys(papers):
            nb = find_notebook(paper, notebooks_dir)
            if nb is None:
                expected = PAPERS.get(paper, f"{paper}.ipynb or NN_{paper}.ipynb")
                raise ValueError(f"no notebook for paper {paper!r}: expected {notebooks_dir / expected}; "
                                 f"known papers: {', '.join(PAPERS)}")
            chosen.append((paper, nb))
    else:
        for paper, name in PAPERS.items():
            nb = find_notebook(paper, notebooks_dir)
            if nb is None:
                skipped.append(RunResult(paper, "skipped", notebook=notebooks_dir / name))
            else:
                chosen.append((paper, nb))
    return chosen, skipped


def reproduce(papers: list[str] | None = None, profile: str = "smoke", *, device: str | None = "auto",
              overrides: dict | None = None, out: Path | str = "results", timeout: float | None = None,
              notebooks_dir: Path | str | None = None, progress: bool = True, command: list[str] | None = None,
              log=print) -> list[RunResult]:
    """Run the notebooks of `papers` (None = all that exist) at `profile`; one RunResult per paper.

    out: results root; paper p is written to ``out/<profile>/<p>/``. timeout: seconds per cell.
    command: the command line recorded in run.json (the CLI passes its own); log: prints notices.
    Raises ValueError before running anything when a paper, profile or override is wrong.
    """
    from tqdm.auto import tqdm

    overrides = dict(overrides or {})
    if profile not in profiles.PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {profiles.PROFILE_NAMES}")
    notebooks_dir = Path(notebooks_dir).resolve() if notebooks_dir else default_notebooks_dir()
    chosen, skipped = select(papers, notebooks_dir)
    for s in skipped:
        log(f"skipped {s.paper}: {s.notebook} does not exist")
    if not chosen:
        raise ValueError(f"no paper notebooks found in {notebooks_dir}; expected {', '.join(PAPERS.values())}")

    declared = {paper: declared_parameters(nb) for paper, nb in chosen}
    unknown = [k for k in overrides if not any(k in d for d in declared.values())]
    if unknown:
        raise ValueError(f"-p {', '.join(unknown)}: not a parameter of "
                         f"{', '.join(nb.name for _, nb in chosen)}; "
                         f"their parameters: {sorted(set().union(*declared.values()))}")

    from kitlib.infer import resolve_device

    device = str(resolve_device(device))
    out = Path(out).resolve()
    env = environment()
    if env["kernel_python"] not in (None, sys.executable):
        log(f"warning: kernel {KERNEL_NAME!r} runs {env['kernel_python']}, not {sys.executable}")

    results = []
    for paper, nb in tqdm(chosen, desc="notebooks", unit="nb", disable=not progress):
        out_dir = out / profile / paper
        applied = {k: v for k, v in overrides.items() if k in declared[paper]}
        params = {**paper_parameters(paper, profile), "device": device, "out_dir": str(out_dir), **applied}
        config = {"paper": paper, "profile": profile, "notebook": str(nb), "out_dir": str(out_dir),
                  "device": device, "overrides": applied, "timeout_s": timeout, "kernel_name": KERNEL_NAME,
                  "command": command}
        res = run_notebook(paper, nb, params, out_dir, config=config, env=env, timeout=timeout,
                           progress=progress)
        tqdm.write(f"{paper}: {res.status} ({res.duration_s:.1f} s)" + (f" - {describe_error(res.error)}"
                                                                          if res.error else ""))
        results.append(res)
    return results + skipped


def describe_error(error: dict | None) -> str:
    """One line: where and what failed (``cell 3 (In [2]): ValueError: ...``)."""
    if not error:
        return ""
    where = ""
    if error.get("cell_index") is not None:
        where = f"cell {error['cell_index']}"
        if error.get("execution_count") is not None:
            where += f" (In [{error['execution_count']}])"
        where += ": "
    msg = f"{error.get('ename')}: {error.get('evalue')}" if error.get("evalue") else str(error.get("ename"))
    return where + msg


def format_summary(results: list[RunResult], root: Path | None = None) -> str:
    """A plain-text table: paper, status, time, and the notebook written or the error."""
    root = Path.cwd() if root is None else root

    def rel(p):
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return str(p)

    rows = [("paper", "status", "time", "notebook / error")]
    for r in results:
        t = "-" if r.duration_s is None else f"{r.duration_s:.1f} s"
        if r.status == "skipped":
            detail = f"absent: {rel(r.notebook)}"
        elif r.status == "ok":
            detail = rel(r.notebook)
        else:
            detail = f"{describe_error(r.error)} -> {rel(r.notebook)}"
        rows.append((r.paper, r.status.upper() if r.status != "ok" else "ok", t, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)
