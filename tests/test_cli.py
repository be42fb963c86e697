"""The command line (`python -m kitlib`) and the papermill runner, on two fixture notebooks.

tests/fixtures/tiny.ipynb writes its parameters (and the kernel's interpreter) to out_dir/tiny.json;
tests/fixtures/failing.ipynb raises ValueError in its cell 3 (0-based, markdown cell included).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from kitlib import profiles
from kitlib.cli import main
from kitlib.reproduce import PAPERS, default_notebooks_dir, find_notebook, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# ----------------------------------------------------------------------------- -p parsing
def test_parse_overrides_reads_yaml_scalars_and_lists():
    got = parse_overrides([
        "epochs=3", "methods=[ce,rs]", "lr=1e-3", "ratios=[0.7, 0.1]", "arch=resnet18",
        "pretrained=true", "tag=", "eps=[1e-3, 2]", "epochs=5", "note=a=b",
    ])
    assert got == {"epochs": 5, "methods": ["ce", "rs"], "lr": 0.001, "ratios": [0.7, 0.1],
                   "arch": "resnet18", "pretrained": True, "tag": None, "eps": [0.001, 2],
                   "note": "a=b"}
    assert type(got["epochs"]) is int and type(got["lr"]) is float  # PyYAML alone gives "1e-3" as str


@pytest.mark.parametrize("item, message", [
    ("epochs", "expected key=value"),
    ("1x=3", "not a valid notebook parameter name"),
    ("device=cuda", "use --device"),
    ("out_dir=/tmp", "use --out"),
    ("methods=[ce,", "not a YAML"),
])
def test_parse_overrides_rejects_bad_items(item, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_overrides([item])
    assert repr(item) in str(err.value)


# ----------------------------------------------------------------------------- notebook lookup
def test_find_notebook_maps_papers_and_prefixed_names(tmp_path, monkeypatch):
    assert PAPERS["care"] == "04_care.ipynb" and list(PAPERS)[0] == "perturbed_input"
    assert find_notebook("care", tmp_path) is None
    (tmp_path / "04_care.ipynb").write_text("{}")
    (tmp_path / "07_extra.ipynb").write_text("{}")
    (tmp_path / "plain.ipynb").write_text("{}")
    assert find_notebook("care", tmp_path) == tmp_path / "04_care.ipynb"
    assert find_notebook("extra", tmp_path) == tmp_path / "07_extra.ipynb"
    assert find_notebook("plain", tmp_path) == tmp_path / "plain.ipynb"
    assert find_notebook("xtra", tmp_path) is None
    (tmp_path / "08_extra.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="several notebooks"):
        find_notebook("extra", tmp_path)
    monkeypatch.delenv("KITLIB_NOTEBOOKS_DIR", raising=False)
    assert default_notebooks_dir() == ROOT / "notebooks"
    monkeypatch.setenv("KITLIB_NOTEBOOKS_DIR", str(tmp_path))
    assert default_notebooks_dir() == tmp_path.resolve()


# ----------------------------------------------------------------------------- errors before running
def test_reproduce_refuses_unknown_paper_and_parameter(tmp_path, capsys):
    args = ["--notebooks-dir", str(FIXTURES), "--out", str(tmp_path), "--device", "cpu", "--no-progress"]
    assert main(["reproduce", "nosuchpaper", *args]) == 2
    assert "no notebook for paper 'nosuchpaper'" in capsys.readouterr().err
    assert main(["reproduce", "tiny", "-p", "epohcs=3", *args]) == 2
    err = capsys.readouterr().err
    assert "epohcs" in err and "tiny.ipynb" in err and "'words'" in err
    # no PAPER: none of the five paper notebooks is in the fixtures folder
    assert main(["reproduce", *args]) == 2
    captured = capsys.readouterr()
    assert "no paper notebooks found" in captured.err
    assert all(f"skipped {p}" in captured.out for p in PAPERS)
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_module_entry_point_and_argparse_errors():
    run = [sys.executable, "-m", "kitlib"]
    res = subprocess.run([*run, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and all(c in res.stdout for c in ("datasets", "fetch", "reproduce"))
    res = subprocess.run([*run, "reproduce", "--profile", "huge"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "invalid choice: 'huge'" in res.stderr


# ----------------------------------------------------------------------------- end to end
def test_reproduce_runs_notebooks_records_failure_and_keeps_going(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(profiles.PROFILES, "tiny", {"smoke": {"n": 4, "words": ["p"]}, "laptop": {"n": 40}})
    code = main(["reproduce", "failing", "tiny", "--notebooks-dir", str(FIXTURES), "--out", str(tmp_path),
                 "--device", "cpu", "-p", "words=[x, y, z]", "--no-progress"])
    assert code == 1  # one notebook failed

    # tiny ran after failing: profile value n=4, -p beats the profile for words
    tiny = tmp_path / "smoke" / "tiny"
    written = json.loads((tiny / "tiny.json").read_text())
    assert written["n"] == 4 and written["words"] == ["x", "y", "z"] and written["total"] == 12
    assert written["profile"] == "smoke" and written["device"] == "cpu"
    assert Path(written["executable"]).resolve() == Path(sys.executable).resolve()  # the venv's kernel
    assert Path(written["cwd"]) == FIXTURES  # kernel runs beside its notebook
    assert sorted(p.name for p in tiny.iterdir()) == ["run.json", "tiny.ipynb", "tiny.json"]
    rec = json.loads((tiny / "run.json").read_text())
    assert rec["status"] == "ok" and rec["error"] is None and rec["paper"] == "tiny"
    assert rec["parameters"] == {"profile": "smoke", "n": 4, "words": ["x", "y", "z"], "device": "cpu",
                                 "out_dir": str(tiny)}
    assert rec["config"]["overrides"] == {"words": ["x", "y", "z"]} and rec["config"]["profile"] == "smoke"
    assert rec["packages"]["papermill"] == papermill.__version__ and rec["packages"]["kitlib"]
    assert rec["started_at"] <= rec["finished_at"] and rec["duration_s"] > 0
    executed = nbformat.read(tiny / "tiny.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n = 4" in injected[0].source

    # failing: its cell 3 is named, the attempt is kept apart in failing.failed/, no result folder appears
    assert not (tmp_path / "smoke" / "failing").exists()
    failing = tmp_path / "smoke" / "failing.failed"
    assert sorted(p.name for p in failing.iterdir()) == ["failing.ipynb", "run.json"]
    assert sorted(p.name for p in (tmp_path / "smoke").iterdir()) == ["failing.failed", "tiny"]  # no staging left
    rec = json.loads((failing / "run.json").read_text())
    assert rec["status"] == "failed"
    assert rec["error"]["cell_index"] == 3 and rec["error"]["executed_cell_index"] == 4
    assert rec["error"]["ename"] == "ValueError" and rec["error"]["evalue"] == "fixture failure on purpose"
    assert rec["config"]["overrides"] == {}  # failing.ipynb declares no `words`
    kept = nbformat.read(failing / "failing.ipynb", as_version=4)
    assert not any("never_reached" in str(c.get("outputs")) for c in kept.cells)

    out = capsys.readouterr().out
    summary = out[out.index("paper"):]
    row = {line.split()[0]: line for line in summary.splitlines()[2:] if line.strip()}
    assert "FAILED" in row["failing"] and "cell 3" in row["failing"] and "ValueError" in row["failing"]
    assert row["tiny"].split()[1] == "ok"
    assert "1 notebook(s) failed: failing" in out


def test_reproduce_all_present_papers_skips_absent_ones(tmp_path, monkeypatch, capsys):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    shutil.copy(FIXTURES / "tiny.ipynb", nbdir / PAPERS["contrastive"])
    monkeypatch.setitem(profiles.PROFILES, "contrastive", {"laptop": {"n": 7}})
    import kitlib.reproduce
    monkeypatch.setattr(kitlib.reproduce, "paper_schema", lambda paper: None)  # the fixture declares no schema
    out_dir = tmp_path / "res" / "laptop" / "contrastive"
    out_dir.mkdir(parents=True)
    failed = tmp_path / "res" / "laptop" / "contrastive.failed"
    failed.mkdir()
    (failed / "run.json").write_text("{}")  # left over from an earlier failure
    code = main(["reproduce", "--profile", "laptop", "--notebooks-dir", str(nbdir), "--out",
                 str(tmp_path / "res"), "--device", "cpu", "--no-progress"])
    assert code == 0
    assert json.loads((out_dir / "tiny.json").read_text())["n"] == 7
    assert json.loads((out_dir / "run.json").read_text())["parameters"]["profile"] == "laptop"
    assert sorted(p.name for p in out_dir.iterdir()) == ["contrastive.ipynb", "run.json", "tiny.json"]
    assert not failed.exists()  # superseded by the successful run
    out = capsys.readouterr().out
    for paper in PAPERS:
        if paper != "contrastive":
            assert f"skipped {paper}" in out
            assert any(line.startswith(paper) and "SKIPPED" in line for line in out.splitlines())


# ----------------------------------------------------------------------------- data commands
def test_datasets_lists_every_manifest(capsys):
    catalog = pytest.importorskip("kitlib.data.catalog", reason="kitlib.data.catalog not written yet")
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [m.name for m in catalog.list_datasets()]
    assert names
    for name in names:
        status, _ = catalog.dataset_status(name)
        row = next(line for line in lines if line.split()[:1] == [name])
        assert row.split()[1] == status.split()[0]


def test_fetch_reports_status_and_errors(capsys):
    pytest.importorskip("kitlib.data.catalog", reason="kitlib.data.catalog not written yet")
    assert main(["fetch", "synthetic"]) == 0  # nothing to download: present
    assert capsys.readouterr().out.startswith("synthetic: present")
    assert main(["fetch", "no_such_dataset"]) == 1
    assert "fetch no_such_dataset:" in capsys.readouterr().err


# ----------------------------------------------------------------------------- environment.yml
def test_environment_yml_pins_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .[test,lab]" in pip  # JupyterLab works out of the box from environment.yml
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["test"]) | set(extras["lab"])
    assert {p for p in pip if not p.startswith("-e")} == wanted
