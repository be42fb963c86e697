"""Run the paper notebooks with papermill and record each run (`python -m kitlib reproduce`).

For every selected paper the notebook is executed (kernel ``python3`` of the running interpreter)
with parameters ``profiles.get(paper, profile)`` (or just ``profile`` when the paper has no
profiles entry), then ``device``, then the ``-p key=value`` overrides; they are checked against the
paper's declared parameters (``kitlib.papers.<paper>.PARAMETERS``) before anything runs.

A result folder never mixes two runs. The notebook writes into a hidden staging folder
``<out>/<profile>/.<paper>.staging-<pid>/``; only when every cell succeeded does that folder become
``<out>/<profile>/<paper>/``:

    <paper>.ipynb   the executed notebook
    run.json        kitlib.report.run_record (config, versions, git commit, device, ...) plus parameters,
                    package versions, start/end times, duration, status, datasets skipped, and every
                    file of the result with its size and sha256 (`verify_result` checks them)
    ...             whatever tables and figures the notebook writes to ``out_dir``

A failed or interrupted run becomes ``<out>/<profile>/<paper>.failed/`` instead (same layout, run.json
names the failing cell) and the previous result is left untouched. The new result replaces the old one in
one atomic rename (renameat2 exchange on Linux; two renames elsewhere, undone by the next run if killed
between them). Staging folders of runs that died
(kill -9) are removed by the next run.

A notebook's ``parameters`` cell must declare ``profile``, ``device`` and ``out_dir``.
"""
from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import tempfile
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
RESULTS_ENV = "KITLIB_RESULTS"  # results root of notebooks run without out_dir (nbval, JupyterLab)
PROGRESS_ENV = "KITLIB_PROGRESS"  # kitlib.progress.ENV; "0": kitlib shows no progress bars (set for the kernels reproduce runs)
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
    kept: Path | None = None  # a failed run: the previous complete result, left untouched
    skipped: dict = field(default_factory=dict)  # datasets the notebook could not load: {name: why}
    notices: list = field(default_factory=list)  # leftovers of dead runs cleaned up before this one


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


def notebook_defaults(notebook: Path) -> dict:
    """The values of the notebook's parameters cell (literals only; a non-literal value is left out)."""
    import papermill

    out = {}
    for name, info in papermill.inspect_notebook(str(notebook)).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            pass
    return out


def paper_schema(paper: str):
    """``kitlib.papers.<paper>.PARAMETERS`` (a kitlib.params.Schema), or None when the paper declares none."""
    try:
        module = importlib.import_module(f"kitlib.papers.{paper}")
    except ModuleNotFoundError as exc:
        if exc.name != f"kitlib.papers.{paper}":
            raise
        return None
    return getattr(module, "PARAMETERS", None)


def check_parameters(paper: str, notebook: Path, params: dict) -> dict:
    """Check the notebook's defaults updated with `params` against the paper's declared parameters.

    Returns the normalised values (just the merged values when the paper declares none); raises
    ValueError naming the paper, the parameter, what it got and what it expects.
    """
    from kitlib.params import ParameterError

    values = {**notebook_defaults(notebook), **params, "out_dir": None}
    schema = paper_schema(paper)
    if schema is None:
        return values
    try:
        return schema.check(values)
    except ParameterError as exc:
        raise ValueError(f"{paper}: {exc}") from None


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


# ----------------------------------------------------------------------------- one result folder
_STAGING, _OLD = "staging", "old"
FAILED_SUFFIX = ".failed"


def _side_path(parent: Path, paper: str, kind: str) -> Path:
    """A hidden folder beside the result owned by this process: ``.<paper>.<kind>-<pid>``."""
    return parent / f".{paper}.{kind}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():  # runs of one process are sequential: an earlier leftover of ours is dead
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(parent: Path, paper: str) -> list[str]:
    """Remove the staging folders of dead runs of `paper` in `parent`; put back a previous result that a run
    killed between its two renames had moved aside. Returns one notice per folder handled."""
    notices = []
    final = parent / paper
    for side in sorted(parent.glob(f".{paper}.*-*")):
        m = re.fullmatch(rf"\.{re.escape(paper)}\.({_STAGING}|{_OLD})-(\d+)", side.name)
        if not m or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == _OLD and not final.exists():
            os.replace(side, final)
            notices.append(f"{paper}: restored the previous result {final} that a killed run had moved aside")
        else:
            shutil.rmtree(side, ignore_errors=True)
            notices.append(f"{paper}: removed {side.name}, left by a run that died (never a result)")
    return notices


def file_checksums(folder: Path, skip: tuple[str, ...] = ("run.json",)) -> dict[str, dict]:
    """{relative path: {"bytes": size, "sha256": hex}} of every file under `folder` (except `skip`)."""
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in skip:
            continue
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[rel] = {"bytes": path.stat().st_size, "sha256": h.hexdigest()}
    return out


def verify_result(folder: Path | str) -> list[str]:
    """What is wrong with a result folder (empty list: it is whole and is a successful run).

    Checks that run.json exists and says "ok", and that every file it lists is there with its size and
    checksum, and that no unlisted file was added.
    """
    folder = Path(folder)
    run_json = folder / "run.json"
    if not run_json.is_file():
        return [f"{run_json}: missing (not a kitlib result, or an unfinished one)"]
    try:
        record = json.loads(run_json.read_text())
    except (OSError, ValueError) as exc:
        return [f"{run_json}: unreadable ({exc})"]
    problems = []
    if record.get("status") != "ok":
        problems.append(f"{run_json}: status is {record.get('status')!r}, not 'ok'")
    listed = record.get("files")
    if not isinstance(listed, dict):
        return problems + [f"{run_json}: has no 'files' list (written before kitlib recorded checksums)"]
    found = file_checksums(folder)
    for rel, want in listed.items():
        got = found.get(rel)
        if got is None:
            problems.append(f"{folder / rel}: listed in run.json but missing")
        elif got != want:
            problems.append(f"{folder / rel}: changed since the run (size or sha256 differs from run.json)")
    problems += [f"{folder / rel}: not part of the run (not listed in run.json)" for rel in found if rel not in listed]
    return problems


def output_dir(out_dir: str | None, paper: str, profile: str) -> Path:
    """Where a notebook writes: `out_dir` when given (reproduce passes its staging folder), else
    ``$KITLIB_RESULTS/<profile>/<paper>`` when set (the test suite's temporary folder), else
    ``<repo>/results/interactive/<profile>/<paper>`` (a notebook run by hand never overwrites a result of
    `reproduce`). The folder is created."""
    if out_dir:
        path = Path(out_dir)
    else:
        root = os.environ.get(RESULTS_ENV)
        path = (Path(root) if root else REPO_ROOT / "results" / "interactive") / profile / paper
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(folder: Path) -> None:
    """Create `folder` and write a probe file there; ValueError naming the folder when that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".kitlib-write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"--out: cannot write results to {folder} ({exc.strerror or exc}); "
                         f"choose a writable folder with --out DIR") from None


def run_notebook(paper: str, notebook: Path, parameters: dict, out_dir: Path, *, config: dict,
                 env: dict, timeout: float | None = None, progress: bool = True) -> RunResult:
    """Execute `notebook` into a staging folder and make it `out_dir` only when every cell succeeded.

    The notebook gets ``out_dir`` = the staging folder ``.<paper>.staging-<pid>`` beside `out_dir`. On
    success run.json (with every file's checksum) is written there and the folder replaces `out_dir`
    (the previous result is moved aside first and deleted after). On failure or interruption the staging
    folder becomes ``<paper>.failed/`` (run.json names the failing cell) and `out_dir` is left as it was.
    Never raises for a failing notebook; KeyboardInterrupt is recorded as "interrupted" and re-raised.
    """
    import papermill

    from kitlib.report import run_record, write_json

    parent = out_dir.parent
    notices = clean_leftovers(parent, paper)
    staging = _side_path(parent, paper, _STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    executed = staging / f"{paper}.ipynb"
    started, t0 = _now(), time.perf_counter()
    status, error, interrupted = "ok", None, None
    saved_progress = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "0"  # the kernel inherits it: no progress-bar outputs in the saved notebook
    try:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters={**parameters, "out_dir": str(staging)},
            kernel_name=KERNEL_NAME, cwd=str(notebook.parent), progress_bar=progress, execution_timeout=timeout,
            **_kernel_transport(),
        )
    except KeyboardInterrupt as exc:
        status, interrupted = "interrupted", exc
        error = {"ename": "KeyboardInterrupt", "evalue": "", "cell_index": None,
                 "executed_cell_index": None, "execution_count": None, "source": None}
    except Exception as exc:  # noqa: BLE001 - any failure of one notebook must not stop the others
        status, error = "failed", _error_info(exc, executed)
    finally:
        if saved_progress is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = saved_progress
    duration = time.perf_counter() - t0

    failed = parent / f"{paper}{FAILED_SUFFIX}"
    final = out_dir if status == "ok" else failed
    record = run_record(config, extra={
        "paper": paper,
        "status": status,
        "parameters": parameters,
        "result_dir": str(final),
        "staged_in": str(staging),  # the notebook's out_dir while it ran; renamed to result_dir
        "notebook": str(final / executed.name),
        "started_at": started,
        "finished_at": _now(),
        "duration_s": round(duration, 3),
        "error": error,
        "skipped": _skipped(staging),
        "files": file_checksums(staging),
        **env,
    })
    write_json(staging / "run.json", record)
    if status == "ok":
        _swap_in(staging, out_dir, _side_path(parent, paper, _OLD))
        shutil.rmtree(failed, ignore_errors=True)  # an earlier failure is superseded
    else:
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(staging, failed)
    if interrupted is not None:
        raise interrupted
    return RunResult(paper, status, duration, final / executed.name, final / "run.json", error, parameters,
                     kept=out_dir if status != "ok" and out_dir.exists() else None,
                     skipped=record["skipped"], notices=notices)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic rename (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(staging: Path, final: Path, old: Path) -> None:
    """Make `staging` the folder `final`. An existing `final` is exchanged with it in one rename where the
    system can (the old result then sits in `staging` and is deleted); elsewhere it is first moved to `old`,
    which `clean_leftovers` puts back should the process die between the two renames."""
    if not final.exists():
        os.replace(staging, final)
        return
    if _exchange(staging, final):
        shutil.rmtree(staging, ignore_errors=True)
        return
    os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _kernel_transport() -> dict:
    """On POSIX the kernel talks over local IPC sockets, not TCP (no "running over TCP without encryption")."""
    if os.name != "posix":
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport": "ipc"}})}


def _skipped(folder: Path) -> dict:
    """{dataset: why} that the notebook wrote into record.json under "skipped" (datasets it could not load)."""
    try:
        skipped = json.loads((folder / "record.json").read_text()).get("skipped") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}


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

    try:
        device = str(resolve_device(device))
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--device {device}: {exc}") from None
    planned = []
    for paper, nb in chosen:
        applied = {k: v for k, v in overrides.items() if k in declared[paper]}
        params = {**paper_parameters(paper, profile), "device": device, **applied}
        if "overrides" in declared[paper]:  # the notebook re-applies profile + overrides itself (kitlib.params)
            params["overrides"] = applied
        check_parameters(paper, nb, params)
        planned.append((paper, nb, applied, params))

    out = Path(out).resolve()
    check_writable(out / profile)
    env = environment()
    if env["kernel_python"] not in (None, sys.executable):
        log(f"warning: kernel {KERNEL_NAME!r} runs {env['kernel_python']}, not {sys.executable}")

    results = []
    for paper, nb, applied, params in tqdm(planned, desc="notebooks", unit="nb", disable=not progress):
        out_dir = out / profile / paper
        config = {"paper": paper, "profile": profile, "notebook": str(nb), "out_dir": str(out_dir),
                  "device": device, "overrides": applied, "timeout_s": timeout, "kernel_name": KERNEL_NAME,
                  "command": command}
        res = run_notebook(paper, nb, {**params, "out_dir": str(out_dir)}, out_dir, config=config, env=env,
                           timeout=timeout, progress=progress)
        for notice in res.notices:
            tqdm.write(notice)
        tqdm.write(f"{paper}: {res.status} ({res.duration_s:.1f} s)" + (f" - {describe_error(res.error)}"
                                                                          if res.error else ""))
        results.append(res)
    return results + skipped


def describe_error(error: dict | None) -> str:
    """One line: where and what failed (``cell 3 (In [2]): ValueError: ...``; first line of the message)."""
    if not error:
        return ""
    where = ""
    if error.get("cell_index") is not None:
        where = f"cell {error['cell_index']}"
        if error.get("execution_count") is not None:
            where += f" (In [{error['execution_count']}])"
        where += ": "
    evalue = (error.get("evalue") or "").strip().splitlines()
    msg = f"{error.get('ename')}: {evalue[0]}" if evalue else str(error.get("ename"))
    return where + msg


def format_summary(results: list[RunResult], root: Path | None = None) -> str:
    """A plain-text table (paper, status, time, result folder or error), then a line per failed run saying
    where its attempt went and which previous result was kept, and one per dataset a notebook skipped."""
    root = Path.cwd() if root is None else root

    def rel(p):
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return str(p)

    rows = [("paper", "status", "time", "result / error")]
    notes = []
    for r in results:
        t = "-" if r.duration_s is None else f"{r.duration_s:.1f} s"
        if r.status == "skipped":
            detail = f"absent: {rel(r.notebook)}"
        elif r.status == "ok":
            detail = rel(r.notebook.parent)
        else:
            detail = describe_error(r.error)
            notes.append(f"{r.paper}: the failed attempt is in {rel(r.notebook.parent)}/ (run.json names the cell); "
                         + (f"the previous result {rel(r.kept)}/ is untouched" if r.kept else "no earlier result"))
        for name, why in r.skipped.items():
            first = why.strip().splitlines()[0] if why.strip() else "no reason given"
            notes.append(f"{r.paper}: {name} not run - {first}")
        rows.append((r.paper, r.status.upper() if r.status != "ok" else "ok", t, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines + ([""] + notes if notes else []))
