"""Bad inputs and broken runs (issue "trustworthy runs"): each case names its culprit, and nothing half-written
is ever left looking complete. Data is made on the fly; the real datasets are never used here.

Sections: 1. a results folder never mixes two runs; 3. notebook parameters are checked before anything runs.
(2. training and 4-5. data: tests/test_bad_inputs_train.py and tests/test_bad_inputs_data.py.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kitlib import profiles
from kitlib import reproduce as rep
from kitlib.cli import main
from kitlib.papers import perturbed_input as pi
from kitlib.params import ParameterError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NB01 = ROOT / "notebooks" / "01_perturbed_input.ipynb"


def _reproduce(out, *params, paper="flaky"):
    args = ["reproduce", paper, "--notebooks-dir", str(FIXTURES), "--out", str(out), "--device", "cpu",
            "--no-progress"]
    for p in params:
        args += ["-p", p]
    return main(args)


def _listing(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- 1. results never mix
def test_failed_rerun_leaves_the_previous_result_untouched_and_keeps_the_attempt_apart(tmp_path, capsys):
    assert _reproduce(tmp_path, "tag=good") == 0
    result = tmp_path / "smoke" / "flaky"
    before = _listing(result)
    assert json.loads(before["run.json"])["status"] == "ok" and b"good" in before["table.csv"]

    assert _reproduce(tmp_path, "tag=bad", "fail=true") == 1
    assert _listing(result) == before  # the good run's files, byte for byte: no table of the failed run mixed in
    failed = tmp_path / "smoke" / "flaky.failed"
    rec = json.loads((failed / "run.json").read_text())
    assert rec["status"] == "failed" and rec["error"]["cell_index"] == 3 and "bad" in rec["error"]["evalue"]
    assert b"bad" in (failed / "table.csv").read_bytes() and (failed / "flaky.ipynb").is_file()
    out = capsys.readouterr().out
    assert "flaky.failed/ (run.json names the cell)" in out and f"previous result {result}/ is untouched" in out
    assert sorted(p.name for p in result.parent.iterdir()) == ["flaky", "flaky.failed"]  # no staging folder left


def test_run_json_lists_every_file_with_its_checksum_and_verify_checks_them(tmp_path, capsys):
    assert _reproduce(tmp_path, "tag=x") == 0
    result = tmp_path / "smoke" / "flaky"
    files = json.loads((result / "run.json").read_text())["files"]
    assert sorted(files) == ["flaky.ipynb", "record.json", "started", "table.csv"]
    assert files["table.csv"]["bytes"] == len(b"tag\nx\n") and len(files["table.csv"]["sha256"]) == 64
    assert rep.verify_result(result) == [] and main(["verify", str(result)]) == 0

    (result / "table.csv").write_text("tag\nedited\n")
    (result / "started").unlink()
    (result / "stray.csv").write_text("")
    problems = rep.verify_result(result)
    assert any("table.csv: changed" in p for p in problems)
    assert any("started: listed in run.json but missing" in p for p in problems)
    assert any("stray.csv: not part of the run" in p for p in problems)
    capsys.readouterr()
    assert main(["verify", str(result)]) == 1 and "NOT WHOLE" in capsys.readouterr().out
    assert "run.json: missing" in rep.verify_result(tmp_path)[0]


@pytest.mark.slow
def test_kill_9_mid_run_keeps_the_previous_result_and_the_next_run_cleans_up(tmp_path):
    assert _reproduce(tmp_path, "tag=good") == 0
    result = tmp_path / "smoke" / "flaky"
    before = _listing(result)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kitlib", "reproduce", "flaky", "--notebooks-dir", str(FIXTURES), "--out",
         str(tmp_path), "--device", "cpu", "--no-progress", "-p", "tag=killed", "-p", "seconds=60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    staging = result.parent / f".flaky.staging-{proc.pid}"
    deadline = time.time() + 120
    while not (staging / "started").exists():
        assert time.time() < deadline and proc.poll() is None, "the run never started its first cell"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert b"killed" in (staging / "table.csv").read_bytes()  # the dead run's half-written table ...
    assert _listing(result) == before  # ... never reached the result folder

    notices = rep.clean_leftovers(result.parent, "flaky")
    assert notices == [f"flaky: removed {staging.name}, left by a run that died (never a result)"]
    assert sorted(p.name for p in result.parent.iterdir()) == ["flaky"]


def test_a_result_moved_aside_by_a_killed_swap_is_restored(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)  # a pid that has exited
    parent = tmp_path / "smoke"
    old, staging = parent / f".p.old-{dead}", parent / f".p.staging-{dead}"
    old.mkdir(parents=True)
    (old / "run.json").write_text('{"status": "ok"}')
    staging.mkdir()
    notices = rep.clean_leftovers(parent, "p")
    assert (parent / "p" / "run.json").is_file() and not old.exists() and not staging.exists()
    assert any("restored the previous result" in n for n in notices)
    alive = parent / f".p.staging-{os.getppid()}"  # a live process's staging folder is left alone
    alive.mkdir()
    assert rep.clean_leftovers(parent, "p") == [] and alive.exists()


def test_interrupted_run_is_recorded_apart_and_reraised(tmp_path, monkeypatch):
    import papermill

    assert _reproduce(tmp_path, "tag=good") == 0
    before = _listing(tmp_path / "smoke" / "flaky")

    def interrupted(*args, **kwargs):
        Path(kwargs.get("parameters", {})["out_dir"], "half.csv").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _reproduce(tmp_path, "tag=x")
    assert _listing(tmp_path / "smoke" / "flaky") == before
    rec = json.loads((tmp_path / "smoke" / "flaky.failed" / "run.json").read_text())
    assert rec["status"] == "interrupted" and "half.csv" in rec["files"]


def test_unwritable_out_is_one_line_exit_2_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert _reproduce(blocker) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"cannot write results to {blocker / 'smoke'}" in err and "--out" in err
    assert blocker.read_text() == ""
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert _reproduce(ro) == 2 and f"cannot write results to {ro / 'smoke'}" in capsys.readouterr().err


def test_notebooks_run_by_hand_or_by_nbval_never_write_into_results(tmp_path, monkeypatch):
    monkeypatch.setenv(rep.RESULTS_ENV, str(tmp_path))
    assert rep.output_dir(None, "perturbed_input", "smoke") == tmp_path / "smoke" / "perturbed_input"
    monkeypatch.delenv(rep.RESULTS_ENV)
    assert rep.output_dir(None, "perturbed_input", "smoke") == ROOT / "results" / "interactive" / "smoke" / "perturbed_input"
    assert rep.output_dir(str(tmp_path / "x"), "p", "smoke") == tmp_path / "x"
    makefile = (ROOT / "Makefile").read_text()
    assert "KITLIB_RESULTS=$$out $(PY) -m pytest --nbval-lax notebooks/" in makefile
    assert "out_dir = None" in NB01.read_text()


def test_the_kernels_reproduce_runs_show_no_progress_bars(tmp_path, monkeypatch):
    from kitlib import progress

    monkeypatch.setenv(progress.ENV, "0")
    assert progress.bar(range(3)).disable and not progress.enabled()
    monkeypatch.setenv(progress.ENV, "1")
    assert not progress.bar(range(3)).disable and progress.bar(range(3), progress=False).disable


# ----------------------------------------------------------------------------- 3. parameters checked first
def _defaults():
    return rep.notebook_defaults(NB01)


@pytest.mark.parametrize("override, culprit", [
    ("lr=abc", "parameter 'lr': got 'abc' (str); expected a number > 0, or a mapping {backbone: a number > 0}"),
    ("lr={tiny_cnn: -1}", "parameter 'lr', entry 'tiny_cnn': got -1.0 (float); expected a number > 0"),
    ("batch_size=0", "parameter 'batch_size': got 0 (int); expected an integer >= 1"),
    ("backbones=[resnet1]", "parameter 'backbones', item 0: got 'resnet1' (str); expected one of 'resnet18'"),
    ("eps_grid=abc", "parameter 'eps_grid', item 0: got 'abc' (str); expected a number >= 0"),
    ("timing_images=0", "parameter 'timing_images': got 0 (int); expected an integer >= 1"),
    ("epochs=0", "parameter 'epochs': got 0 (int); expected an integer >= 1"),
    ("methods=[ce, nope]", "parameter 'methods', item 1: got 'nope' (str); expected one of 'ce'"),
    ("protocol={synthetic: kfld}", "parameter 'protocol', entry 'synthetic': got 'kfld'"),
    ("pretrained=yes please", "parameter 'pretrained': got 'yes please' (str); expected true or false"),
    ("eps=big", "parameter 'eps': got 'big' (str); expected one of 'val' or a number >= 0"),
    ("folds=1", "parameter 'folds': got 1 (int); expected an integer >= 2"),
    ("val_frac=1.5", "parameter 'val_frac': got 1.5 (float); expected a number > 0 and < 1"),
])
def test_reproduce_refuses_a_bad_parameter_naming_it_before_anything_runs(tmp_path, capsys, override, culprit):
    code = main(["reproduce", "perturbed_input", "--out", str(tmp_path), "--device", "cpu", "--no-progress",
                 "-p", override])
    err = capsys.readouterr().err
    assert code == 2 and culprit in err and err.startswith("reproduce: perturbed_input: ")
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_a_scalar_applies_to_every_key_and_a_new_backbone_gets_the_default_lr():
    got = rep.check_parameters("perturbed_input", NB01, {"lr": 1e-3, "batch_size": 16, "profile": "smoke"})
    assert got["lr"] == {"tiny_cnn": 1e-3} and got["batch_size"] == {"synthetic": 16}
    got = rep.check_parameters("perturbed_input", NB01, {"backbones": ["resnet18"], "datasets": ["a", "/d/b"]})
    assert got["lr"] == {"tiny_cnn": 0.1, "resnet18": 0.01}  # eps_backbones keeps tiny_cnn
    assert got["batch_size"] == {"synthetic": 32, "a": 32, "/d/b": 32}
    assert got["protocol"]["/d/b"] == "kfold" and got["image_size"]["a"] is None
    got = rep.check_parameters("perturbed_input", NB01, {"methods": "ce", "eps_grid": [0, 1]})
    assert got["methods"] == ["ce"] and got["eps_grid"] == [0.0, 1.0]  # one value = a one-item list


def test_every_profile_passes_its_declared_parameters():
    for profile in profiles.PROFILE_NAMES:
        got = pi.PARAMETERS.check({**_defaults(), **profiles.get("perturbed_input", profile)})
        assert got["profile"] == profile and set(got["lr"]) >= set(got["backbones"])


def test_the_notebook_checks_its_own_parameters_for_jupyterlab_users():
    with pytest.raises(ParameterError, match=r"parameter 'epochs': got -3 \(int\)"):
        pi.PARAMETERS.check({**_defaults(), "epochs": -3})
    with pytest.raises(ParameterError, match="parameter\\(s\\) seed not set"):
        pi.PARAMETERS.check({k: v for k, v in _defaults().items() if k != "seed"})
    source = NB01.read_text()
    assert "pi.PARAMETERS.check(globals())" in source and "_before = set(globals())" not in source


def test_every_declared_parameter_is_in_the_notebook_and_back():
    assert set(_defaults()) == set(pi.PARAMETERS)


@pytest.mark.slow
def test_a_dataset_that_cannot_be_loaded_is_explained_in_the_console_summary(tmp_path, capsys):
    code = main(["reproduce", "perturbed_input", "--out", str(tmp_path), "--device", "cpu", "--no-progress",
                 "-p", "datasets=[no_such_set]"])
    out = capsys.readouterr().out
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("perturbed_input") and "FAILED" in line)
    assert "no dataset could be loaded: no_such_set: unknown dataset 'no_such_set'" in row
    assert not (tmp_path / "smoke" / "perturbed_input").exists()


def test_datasets_a_notebook_skipped_are_listed_under_the_summary(tmp_path, capsys):
    assert _reproduce(tmp_path) == 0
    out = capsys.readouterr().out
    assert "flaky: dataset ghost not run - ghost: not on this machine" in out and "more detail" not in out
    assert json.loads((tmp_path / "smoke" / "flaky" / "run.json").read_text())["skipped"]["ghost"].startswith("ghost")


def test_a_new_result_replaces_the_old_one_in_one_exchange(tmp_path, monkeypatch):
    a, b = tmp_path / "staging", tmp_path / "final"
    for folder, text in ((a, "new"), (b, "old")):
        folder.mkdir()
        (folder / "f").write_text(text)
    rep._swap_in(a, b, tmp_path / "old")
    assert (b / "f").read_text() == "new" and not a.exists() and not (tmp_path / "old").exists()
    if sys.platform.startswith("linux"):  # the exchange, not the two-rename fallback, did it
        a.mkdir()
        (a / "f").write_text("newer")
        monkeypatch.setattr(rep.os, "replace", lambda *args: pytest.fail("fell back to two renames"))
        rep._swap_in(a, b, tmp_path / "old")
        assert (b / "f").read_text() == "newer"
