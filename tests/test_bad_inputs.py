"""Bad inputs and broken runs (issue "trustworthy runs"): each case names its culprit, and nothing half-written
is ever left looking complete. Data is made on the fly; the real datasets are never used here.

1. a results folder never mixes two runs; 2. training refuses nonsense instead of caching it; 3. notebook
parameters are checked before anything runs; 4. the data cache notices change and survives corruption;
5. your own data in one line.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

import kitlib.train as T
from kitlib import metrics as M
from kitlib import profiles, report
from kitlib import reproduce as rep
from kitlib.cli import main
from kitlib.data import ImageArrays, TorchImageSet, build_transform, catalog, make_synthetic, sources
from kitlib.data.catalog import UnknownDatasetError, dataset_status, format_status_table, get_manifest, load
from kitlib.data.manifest import ManifestError
from kitlib.data.sources import (
    CacheWarning,
    DatasetError,
    DatasetMissingError,
    ImageReadError,
    LabelError,
    load_image_csv,
    load_image_folder,
    load_medmnist_npz,
)
from kitlib.experiment import Experiment
from kitlib.infer import resolve_device
from kitlib.methods import Method
from kitlib.papers import perturbed_input as pi
from kitlib.params import ParameterError
from kitlib.train import ModelSpec, TrainConfig, TrainingDiverged, fit

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
    monkeypatch.setattr(rep, "REPO_ROOT", tmp_path / "repo")
    got = rep.output_dir(None, "perturbed_input", "smoke")
    assert got == tmp_path / "repo" / "results" / "interactive" / "smoke" / "perturbed_input" and got.is_dir()
    assert "/results/interactive/" in (ROOT / ".gitignore").read_text()
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
    out = tmp_path / "out"
    code = main(["reproduce", "perturbed_input", "--out", str(out), "--device", "cpu", "--no-progress",
                 "-p", override])
    err = capsys.readouterr().err
    assert code == 2 and culprit in err and err.startswith("reproduce: perturbed_input: ")
    assert not out.exists()  # nothing ran, nothing written


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
    assert "flaky: ghost not run - ghost: not on this machine" in out and "more detail" not in out
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


# ====================================================================================================
# 2. training refuses nonsense instead of caching it (and notebook 01's tables say what they show)
# ====================================================================================================
SPEC = ModelSpec("tiny_cnn", num_classes=4, width=8)


@pytest.fixture(scope="module")
def sets():
    arr = make_synthetic(n=240, num_classes=4, ratio=8, size=16, seed=3)
    idx = np.random.default_rng(0).permutation(len(arr))
    return (TorchImageSet(arr, build_transform(train=True, size=16), indices=idx[:180]),
            TorchImageSet(arr, build_transform(train=False, size=16), indices=idx[180:]))


def cfg(**kw):
    return TrainConfig(**{**dict(epochs=2, batch_size=32, lr=0.05, schedule="constant", select_metric="mcr"), **kw})


def cache_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.dtype.is_floating_point])


# --------------------------------------------------------------------------- TrainConfig: every field checked

BAD_FIELDS = [
    ("epochs", 0), ("epochs", -1), ("epochs", 2.5), ("epochs", True), ("batch_size", 0), ("batch_size", -4),
    ("lr", 0), ("lr", -0.1), ("lr", float("nan")), ("lr", "1e-3"), ("optimizer", "sgdd"), ("momentum", 1.5),
    ("weight_decay", -1e-4), ("schedule", "linear"), ("step_size", 0), ("gamma", 0.0), ("min_lr", 1.0),
    ("cycle_epochs", 0), ("patience", -1), ("warmup_epochs", -1), ("warmup_epochs", 11), ("select_metric", 3),
    ("eval_every", 0), ("seed", -1), ("seed", 1.5), ("nesterov", "no"), ("freeze_backbone", "yes"),
    ("drop_last", 1), ("device", "gpu"), ("amp", None), ("channels_last", "on"), ("num_workers", -1),
    ("eval_batch_size", 0),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS, ids=[f"{f}={v!r}" for f, v in BAD_FIELDS])
def test_train_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be .*, got {re.escape(repr(value))}"):
        TrainConfig(**{field: value})


def test_nesterov_needs_sgd_momentum():
    with pytest.raises(ValueError, match="TrainConfig.nesterov"):
        TrainConfig(nesterov=True, momentum=0.0)
    TrainConfig(nesterov=True)  # sgd with momentum 0.9: fine


def test_epochs_zero_is_refused_and_nothing_cached(sets, tmp_path):
    train, val = sets
    with pytest.raises(ValueError, match="TrainConfig.epochs must be an integer >= 1, got 0"):
        fit(SPEC, "ce", train, val, {"epochs": 0}, run_root=tmp_path, progress=False)
    c = cfg()
    c.epochs = 0  # edited after construction: fit checks again
    with pytest.raises(ValueError, match="TrainConfig.epochs"):
        fit(SPEC, "ce", train, val, c, run_root=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


def test_unknown_select_metric_is_refused_before_training(sets, tmp_path, monkeypatch):
    train, val = sets
    monkeypatch.setattr(Method, "loss", lambda *a, **k: pytest.fail("trained with an unknown select_metric"))
    with pytest.raises(ValueError, match="TrainConfig.select_metric 'mcrr' is not a kitlib.metrics key"):
        fit(SPEC, "ce", train, val, cfg(select_metric="mcrr"), run_root=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


# --------------------------------------------------------------------------- runs that take no step


def test_drop_last_with_batch_larger_than_data_is_an_error(sets, tmp_path):
    train, val = sets
    with pytest.raises(ValueError, match=r"no optimiser step would be taken: 180 training samples .* "
                                         r"batch_size=256 with drop_last=True"):
        fit(SPEC, "ce", train, val, cfg(batch_size=256, drop_last=True), run_root=tmp_path, progress=False)
    assert cache_files(tmp_path) == []
    run = fit(SPEC, "ce", train, val, cfg(batch_size=256, drop_last=False, epochs=1), run_root=tmp_path,
              progress=False)  # the same batch without drop_last: one step per epoch
    assert run.history["loss"].iloc[0] > 0


def test_batch_smaller_than_world_is_an_error_not_batch_one(sets, tmp_path, monkeypatch):
    train, val = sets
    monkeypatch.setattr(T, "_dist_setup", lambda: (0, 4, 0))  # as if launched by torchrun with 4 processes
    with pytest.raises(ValueError, match="TrainConfig.batch_size=2 is smaller than the 4 processes"):
        fit(SPEC, "ce", train, val, cfg(batch_size=2), run_root=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


# --------------------------------------------------------------------------- diverging losses


class Sabotage(Method):
    """CE whose loss is multiplied by `factor` at one (epoch, batch)."""

    name = "sabotage"

    def __init__(self, epoch=1, batch=2, factor=float("nan")):
        super().__init__(epoch=epoch, batch=batch, factor=factor)

    def on_epoch_start(self, epoch):
        self.i = 0

    def loss(self, model, batch, epoch):
        loss, logs = super().loss(model, batch, epoch)
        if (epoch, self.i) == (self.params["epoch"], self.params["batch"]):
            loss = loss * self.params["factor"]
        self.i += 1
        return loss, logs


@pytest.mark.parametrize("factor,what", [(float("nan"), "is nan"), (float("inf"), "is inf"),
                                         (1e6, "exploded to")])
def test_non_finite_or_exploding_loss_names_epoch_and_batch_and_caches_nothing(sets, tmp_path, factor, what):
    train, val = sets
    with pytest.raises(TrainingDiverged) as err:
        fit(SPEC, Sabotage(epoch=1, batch=2, factor=factor), train, val, cfg(epochs=3), run_root=tmp_path,
            progress=False)
    msg = str(err.value)
    assert isinstance(err.value, FloatingPointError)
    assert f"the training loss {what}" in msg and "at epoch 1, batch 2" in msg and "lower the lr" in msg
    assert cache_files(tmp_path) == []  # not even the epoch-0 checkpoint or config.json


def test_too_high_lr_diverges_with_advice(sets, tmp_path):
    train, val = sets
    with pytest.raises(TrainingDiverged, match=r"at epoch 0, batch \d+ .*lower the lr \(TrainConfig.lr=1000, "
                                               r"e.g. 100\)"):
        fit(SPEC, "ce", train, val, cfg(lr=1e3), run_root=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


# --------------------------------------------------------------------------- devices


def test_cuda_without_gpu_is_one_clear_line(sets, tmp_path, monkeypatch):
    train, val = sets
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError) as err:
        fit(SPEC, "ce", train, val, cfg(device="cuda"), run_root=tmp_path, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "device 'cuda'" in msg and "no CUDA GPU" in msg and "device='cpu'" in msg
    assert cache_files(tmp_path) == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device 'cuda:3' asked for but this machine has 1 CUDA GPU"):
        resolve_device("cuda:3")
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device"):
        resolve_device("gpu")


# --------------------------------------------------------------------------- damaged run cache


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_final_pt_is_named_moved_aside_and_retrained(sets, tmp_path):
    train, val = sets
    first = fit(SPEC, "ce", train, val, cfg(), run_root=tmp_path, progress=False)
    final = first.run_dir / "final.pt"
    _truncate(final)
    with pytest.warns(RuntimeWarning, match=rf"unreadable checkpoint {re.escape(str(final))} .*moved it to "
                                            rf"final\.pt\.corrupt, retraining"):
        again = fit(SPEC, "ce", train, val, cfg(), run_root=tmp_path, progress=False)
    assert (first.run_dir / "final.pt.corrupt").exists() and final.exists()
    assert torch.equal(weights(again.model), weights(first.model))  # retrained, bit-identical on CPU
    assert fit(SPEC, "ce", train, val, cfg(), run_root=tmp_path, progress=False).key == first.key  # readable now


def test_truncated_last_pt_is_named_moved_aside_and_retrained(sets, tmp_path):
    train, val = sets
    c = cfg(epochs=3, select_metric=None)
    straight = fit(SPEC, "rs", train, val, c, run_root=tmp_path / "a", progress=False)

    def stop(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(SPEC, "rs", train, val, c, run_root=tmp_path / "b", progress=False, callbacks=[stop])
    last = tmp_path / "b" / straight.key / "last.pt"
    _truncate(last)
    with pytest.warns(RuntimeWarning, match=rf"unreadable checkpoint {re.escape(str(last))} .*moved it to "
                                            rf"last\.pt\.corrupt, retraining from scratch"):
        resumed = fit(SPEC, "rs", train, val, c, run_root=tmp_path / "b", progress=False)
    assert len(resumed.history) == 3 and (last.parent / "last.pt.corrupt").exists() and not last.exists()
    assert torch.equal(weights(resumed.model), weights(straight.model))


# --------------------------------------------------------------------------- models at chance level


def test_at_chance_rule():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    assert M.at_chance(y, np.eye(5)[np.zeros(400, int)])  # constant prediction: MCR exactly 1/5
    assert M.at_chance(y, rng.dirichlet(np.ones(5), 400))  # guesses
    noisy = np.where(rng.random(400) < 0.5, y, rng.integers(0, 5, 400))
    assert not M.at_chance(y, np.eye(5)[noisy])  # right half of the time: MCR ~0.6, clearly above 0.2


def _rows(spec):
    """run_table2-like rows: spec = {method: (baseline mcr per fold, ours mcr per fold, at_chance)}."""
    rows = []
    for m, (base, ours, chance) in spec.items():
        for f, (b, o) in enumerate(zip(base, ours)):
            for variant, v in (("baseline", b), ("ours", o)):
                rows.append({"backbone": "tiny_cnn", "method": m, "variant": variant, "fold": f, "at_chance": chance,
                             "mcr": v, "scr": v if variant == "baseline" else v + 0.1})
    return pd.DataFrame(rows)


def test_effects_flag_models_at_chance_and_call_up_only_from_paired_folds():
    rows = _rows({"ce": ([0.50, 0.52], [0.55, 0.56], False),    # both folds up
                  "rs": ([0.50, 0.52], [0.60, 0.51], False),    # mean up, 1 of 2 folds up
                  "rw": ([0.25, 0.25], [0.30, 0.31], True)})    # the model is at chance
    table, eff = pi.effects(rows, "synthetic")
    mcr = table[(table["metric"] == "MCR")].set_index("method")
    assert mcr.loc["CE", "verdict"] == "supported" and mcr.loc["CE", "diffs"] == "+5.00 +4.00"
    assert mcr.loc["RS", "verdict"] == "inconclusive" and mcr.loc["RS", "our_effect"] == pytest.approx(4.5)
    assert mcr.loc["RW", "note"] == M.AT_CHANCE == "at chance: not evidence for or against the claim"
    assert mcr.loc["RW", "verdict"] == "inconclusive" and mcr.loc["CE", "note"] == ""
    rows_c = pd.DataFrame(pi.claims({"synthetic": eff}))
    up = rows_c.set_index("claim_id").loc["mcr_up[synthetic]"]
    assert up["verdict"] == "inconclusive" and "RW inconclusive" in up["note"]
    text = pi.verdict_text(rows_c, "laptop")
    assert "**inconclusive** · mcr_up[synthetic]" in text and "Rule." in text


def test_claims_say_which_paper_datasets_were_not_run():
    _, eff = pi.effects(_rows({"ce": ([0.50, 0.52], [0.55, 0.56], False)}), "skin7")
    rows = pd.DataFrame(pi.claims({"skin7": eff}, skipped={"xray6": "X-ray6 is not present: see its manifest"}))
    notrun = rows[rows["verdict"] == "not run"].set_index("claim_id")
    assert "xray6: X-ray6 is not present" in notrun.loc["mcr_up[X-ray6]", "note"]
    assert "not among this profile's datasets" in notrun.loc["mcr_up[OCTMNIST]", "note"]
    assert rows.set_index("claim_id").loc["mcr_up[Skin7]", "verdict"] == "supported"


# --------------------------------------------------------------------------- notebook 01's tables


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    arr = make_synthetic(n=300, num_classes=4, ratio=8, size=16, seed=3)
    return Experiment(arr, protocol="kfold", folds=2, image_size=16, model={"width": 8}, progress=False,
                      run_root=tmp_path_factory.mktemp("runs"),
                      train=dict(epochs=1, batch_size=32, lr=0.05, schedule="constant", select_metric=None))


def test_table1_counts_are_integers(exp):
    t1 = pi.table1({"synthetic": exp}).set_index(["row", "column"])
    assert t1.loc[("synthetic", "classes"), "ours"] == "4" and t1.loc[("synthetic", "classes"), "counted on"] == "whole dataset"
    assert t1.loc[("Skin7", "largest"), "paper"] == "6705" and t1.loc[("Skin7", "imbalance"), "paper"] == "58.3"
    assert re.fullmatch(r"\d+\.\d", t1.loc[("synthetic", "imbalance"), "ours"])
    assert not any(c.endswith(".0") for c in t1.drop(index="imbalance", level="column")["ours"] if c)


def test_eps_validation_curve_is_in_percent(exp):
    best, curve = pi.select_eps(exp, "tiny_cnn", [0, 0.01], T=1000.0, train={"lr": 0.05})
    assert list(curve["eps"]) == [0, 0.01] and "fold" not in curve.columns
    assert curve["mcr"].between(0, 100).all() and curve["mcr"].max() > 1  # fractions would be <= 1
    assert best in (0, 0.01)


def test_inference_time_has_three_significant_digits(exp, tmp_path):
    t, ratios = pi.inference_time(exp, "tiny_cnn", "ce", 0.01, n=16, repeats=2, train={"lr": 0.05})
    assert len(ratios) == 2 and all(r > 0 for r in ratios) and t.loc[0, "precision"] == "fp32"
    csv, _ = report.write_table(t, tmp_path / "inference_time", float_format="%.5f")  # as the notebook calls it
    row = pd.read_csv(csv, dtype=str).iloc[0]
    for col in ("plain_s_per_image", "perturbed_s_per_image", "ratio", "paper_ratio"):
        digits = row[col].split("e")[0].replace(".", "").lstrip("0")
        assert len(digits) == 3, (col, row[col])
    assert row["paper_ratio"] == "2.64"


def test_run_table2_marks_models_at_chance(exp):
    rows = pi.run_table2(exp, ["tiny_cnn"], ["ce"], eps=0.01, train_by_backbone={"tiny_cnn": {"lr": 0.05}})
    assert rows["at_chance"].dtype == bool and len(rows) == 4
    assert (rows.groupby("fold")["at_chance"].nunique() == 1).all()  # a property of the model, both variants
    assert set(pi.effects(rows, "synthetic")[0]["contrast"]) == {"CE+ours - CE"}


def test_zero_recall_bar_is_visible():
    fig = report.plot_per_class_bars(pd.DataFrame({"CE": [0.9, 0.0], "CE+ours": [0.8, 0.3]}), ["big", "small"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts if t.get_text()] == ["0"]  # the zero bar carries a visible "0"
    zero = ax.texts[[t.get_text() for t in ax.texts].index("0")]
    assert math.isclose(zero.xy[1], 0.0) and zero.get_visible()


# ====================================================================================================
# 4. the data cache notices change and survives corruption; 5. your own data in one line
# ====================================================================================================


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Own cache, empty data root, no private manifests."""
    monkeypatch.setenv("KITLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("KITLIB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("KITLIB_MANIFESTS", raising=False)


def _cache_files(tmp_path) -> list[str]:
    """Cache files other than the digest memo (decoded arrays, temporaries)."""
    d = tmp_path / "cache"
    return sorted(p.name for p in d.iterdir() if p.name != "digests.json") if d.exists() else []


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _csv_set(folder: Path):
    """image_csv dataset: a, b (24x12 PNG), masks for both."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for iid, colour in (("a", RED), ("b", GREEN)):
        Image.new("RGB", (24, 12), colour).save(folder / "images" / f"{iid}.png")
        m = np.zeros((12, 24), np.uint8)
        m[2:6, 3:9] = 255
        Image.fromarray(m).save(folder / "masks" / f"{iid}_seg.png")
    (folder / "meta.csv").write_text("image_id,dx\na,nv\nb,mel\n")


CSV_OPTS = dict(name="toy", class_names=["nv", "mel"], csv="meta.csv", id_column="image_id", label_column="dx",
                image_pattern="images/{id}.png", mask_pattern="masks/{id}_seg.png", progress=False)


# ---------------------------------------------------------------------------------------------
# 4. the cache notices change and survives corruption


def test_replaced_image_is_decoded_again_not_served_from_the_cache(tmp_path):
    _csv_set(tmp_path)
    first = load_image_csv(tmp_path, **CSV_OPTS)
    assert first.images[0, 0, 0].tolist() == list(RED)
    Image.new("RGB", (24, 12), BLUE).save(tmp_path / "images" / "a.png")  # same CSV, new pixels
    again = load_image_csv(tmp_path, **CSV_OPTS)
    assert again.images[0, 0, 0].tolist() == list(BLUE)
    assert again.meta["cache"] != first.meta["cache"]


def test_deleted_mask_is_noticed(tmp_path):
    _csv_set(tmp_path)
    assert load_image_csv(tmp_path, **CSV_OPTS).has_lesion.tolist() == [True, True]
    (tmp_path / "masks" / "b_seg.png").unlink()
    again = load_image_csv(tmp_path, **CSV_OPTS)
    assert again.has_lesion.tolist() == [True, False] and again.masks[1].sum() == 0


def test_image_folder_notices_a_same_size_replacement(tmp_path):
    # BMP files of one size always have the same byte count: only the mtime (or content) tells them apart
    (tmp_path / "imgs" / "x").mkdir(parents=True)
    path = tmp_path / "imgs" / "x" / "one.bmp"
    Image.new("RGB", (8, 8), RED).save(path)
    opts = dict(name="f", class_names=None, image_pattern="*/*.bmp", progress=False)
    assert load_image_folder(tmp_path / "imgs", **opts).images[0, 0, 0].tolist() == list(RED)
    st = path.stat()
    Image.new("RGB", (8, 8), GREEN).save(path)
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_image_folder(tmp_path / "imgs", **opts).images[0, 0, 0].tolist() == list(GREEN)
    # same size and the old mtime put back: only verify=True (content hashes) notices
    Image.new("RGB", (8, 8), BLUE).save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_image_folder(tmp_path / "imgs", verify=True, **opts).images[0, 0, 0].tolist() == list(BLUE)


def test_corrupt_cache_file_is_deleted_and_rebuilt_with_a_warning(tmp_path):
    _csv_set(tmp_path)
    first = load_image_csv(tmp_path, **CSV_OPTS)
    cache = Path(first.meta["cache"])
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # truncated: raised BadZipFile before
    with pytest.warns(CacheWarning, match=f"cache file {cache} is corrupt"):
        again = load_image_csv(tmp_path, **CSV_OPTS)
    assert np.array_equal(again.images, first.images) and np.array_equal(again.masks, first.masks)
    assert zipfile.is_zipfile(cache) and _cache_files(tmp_path) == [cache.name]  # rebuilt, no temporaries


def _checksummed_manifest(tmp_path, monkeypatch) -> Path:
    """A manifest dir holding one dataset 'sums' whose one file has a known md5 (not a key file)."""
    import hashlib

    folder = tmp_path / "data" / "sums"
    folder.mkdir()
    f = folder / "blob.bin"
    f.write_bytes(b"A" * 64)
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    shutil.copy(ROOT / "kitlib" / "data" / "manifests" / "synthetic.yaml", mdir / "synthetic.yaml")
    data = yaml.safe_load((ROOT / "kitlib" / "data" / "manifests" / "breastmnist.yaml").read_text())
    data.update(name="sums", folder="sums", copies=[], checksum_list=None,
                files=[{"path": "blob.bin", "md5": hashlib.md5(b"A" * 64).hexdigest()}])
    data["loader"] = {"kind": "image_folder", "image_pattern": "*/*.png"}
    (mdir / "sums.yaml").write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    monkeypatch.setattr(catalog, "MANIFEST_DIR", mdir)
    return f


def test_verify_rehashes_instead_of_trusting_remembered_digests(tmp_path, monkeypatch, capsys):
    f = _checksummed_manifest(tmp_path, monkeypatch)
    assert dataset_status("sums", verify=True)[0] == "present"  # its digest is now remembered
    st = f.stat()
    f.write_bytes(b"B" * 64)  # same size, then the old mtime put back
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dataset_status("sums")[0] == "present"  # non-key file: not hashed without --verify
    status, detail = dataset_status("sums", verify=True)
    assert status == "checksum mismatch" and str(f) in detail
    main(["datasets", "--verify"])
    assert "checksum mismatch" in capsys.readouterr().out


# --- npz: no silent conversions


def _npz_arrays(size=28):
    rng = np.random.default_rng(0)
    out = {}
    for part, n in (("train", 6), ("val", 2), ("test", 3)):
        out[f"{part}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        out[f"{part}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    return out


def _float_inexact(a):
    a["train_images"] = np.full((6, 28, 28, 3), 0.5, np.float32)


def _float_255(a):
    a["train_images"] = a["train_images"].astype(np.float32)
    a["train_images"][0, 0, 0, 0] = 255.0


def _nan(a):
    a["val_images"] = a["val_images"].astype(np.float32) / 255
    a["val_images"][1, 2, 3, 0] = np.nan


def _out_of_range(a):
    a["test_images"] = a["test_images"].astype(np.int16)
    a["test_images"][0, 0, 0, 0] = 300


def _negative(a):
    a["test_images"] = a["test_images"].astype(np.int16)
    a["test_images"][2, 0, 0, 1] = -4


def _float_labels(a):
    a["val_labels"] = np.array([[0.0], [1.5]])


def _split_sizes(a):
    a["val_images"] = np.zeros((2, 32, 32, 3), np.uint8)


def _object_labels(a):
    a["train_labels"] = np.array([0, 1, 2, "x", 1, 2], dtype=object)


def _length(a):
    a["test_labels"] = a["test_labels"][:2]


NPZ_CASES = {
    "float_not_k_over_255": (_float_inexact, ["'train_images'", "not multiples of 1/255"]),
    "float_0_255": (_float_255, ["'train_images'", "values in [0, 255]", "uint8"]),
    "nan": (_nan, ["'val_images'", "NaN", "(1, 2, 3, 0)"]),
    "above_255": (_out_of_range, ["'test_images'", "[0, 300]", "outside 0-255"]),
    "negative": (_negative, ["'test_images'", "[-4,", "outside 0-255"]),
    "float_labels": (_float_labels, ["'val_labels'", "non-integer label 1.5"]),
    "split_sizes": (_split_sizes, ["'val_images'", "'train_images'", "32x32", "28x28"]),
    "object_array": (_object_labels, ["'train_labels'", "dtype=object"]),
    "lengths": (_length, ["test_images holds 3 images but test_labels 2"]),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_npz_refuses_silent_conversions(tmp_path, case):
    mutate, expect = NPZ_CASES[case]
    arrays = _npz_arrays()
    mutate(arrays)
    path = tmp_path / "toy.npz"
    np.savez(path, **arrays, allow_pickle=True) if case == "object_array" else np.savez(path, **arrays)
    for call in (lambda: load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", size=32,
                                           progress=False),
                 lambda: load(str(path), size=32, progress=False)):
        with pytest.raises(DatasetError) as e:
            call()
        msg = str(e.value)
        assert str(path) in msg and all(s in msg for s in expect), msg
        assert _cache_files(tmp_path) == []  # nothing half-written


def test_npz_exact_float_images_are_scaled_from_0_1(tmp_path):
    arrays = _npz_arrays()
    want = arrays["train_images"].copy()
    arrays["train_images"] = (want / 255.0).astype(np.float32)
    np.savez(tmp_path / "toy.npz", **arrays)
    a = load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", progress=False)
    assert a.images.dtype == np.uint8 and np.array_equal(a.images[:6], want)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_npz_archive_names_the_file(tmp_path, how):
    path = tmp_path / "toy.npz"
    np.savez(path, **_npz_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"not a zip at all" * 10)
    with pytest.raises(DatasetError) as e:
        load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", size=32, progress=False)
    assert str(path) in str(e.value) and "re-download or re-save it" in str(e.value)
    assert _cache_files(tmp_path) == []


def test_npz_corrupt_member_names_the_array(tmp_path):
    path = tmp_path / "toy.npz"
    np.savez(path, **_npz_arrays())
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("val_images.npy")
    start = info.header_offset + 30 + len(info.filename) + 200  # inside val_images' data: CRC now fails
    raw[start:start + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"array 'val_images' cannot be read .*the file is corrupt"):
        load_medmnist_npz(tmp_path, name="toy", class_names=list("abc"), flag="toy", progress=False)


# --- one invalid manifest is one error row


def test_one_invalid_manifest_is_an_error_row_and_the_rest_are_listed(tmp_path, monkeypatch, capsys):
    mdir = tmp_path / "manifests"
    shutil.copytree(ROOT / "kitlib" / "data" / "manifests", mdir)
    data = yaml.safe_load((mdir / "skin7.yaml").read_text())
    data["task"] = "detection"
    (mdir / "skin7.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(catalog, "MANIFEST_DIR", mdir)
    table = format_status_table()
    lines = table.splitlines()
    row = next(line for line in lines if line.startswith("skin7 "))
    assert "invalid manifest" in row and f"{mdir / 'skin7.yaml'}: field 'task'" in row
    assert any(line.startswith("retinamnist ") for line in lines) and any(line.startswith("xray6 ") for line in lines)
    assert lines[-1].startswith("1 of 20 datasets present; 1 invalid manifest(s)")
    assert main(["datasets"]) == 1
    out = capsys.readouterr().out
    assert "invalid manifest" in out and "octmnist" in out
    with pytest.raises(ManifestError, match="field 'task'"):
        get_manifest("skin7")


# ---------------------------------------------------------------------------------------------
# 5. your own data in one line


def _user_folder(root: Path) -> Path:
    """my_lesions/{nv,mel}/...: mixed suffixes and case, a nested folder, hidden junk and a text file."""
    top = root / "my_lesions"
    (top / "nv" / "clinic2").mkdir(parents=True)
    (top / "mel").mkdir()
    (top / ".thumbs").mkdir()
    Image.new("RGB", (16, 16), RED).save(top / "nv" / "n1.PNG")
    Image.new("RGB", (16, 16), RED).save(top / "nv" / "n2.jpeg", quality=100)
    Image.new("RGB", (16, 16), RED).save(top / "nv" / "clinic2" / "n3.JPG", quality=100)
    Image.new("L", (16, 16), 0).save(top / "mel" / "m1.bmp")
    Image.new("RGB", (16, 16), BLUE).save(top / "mel" / "m2.TIF")
    (top / "mel" / "._m2.TIF").write_bytes(b"AppleDouble junk")  # hidden: skipped, never decoded
    (top / ".DS_Store").write_bytes(b"junk")
    Image.new("RGB", (16, 16), GREEN).save(top / ".thumbs" / "t.png")  # hidden folder: skipped
    (top / "mel" / "notes.txt").write_text("not an image")
    return top


def test_load_a_folder_of_class_folders(tmp_path, monkeypatch):
    top = _user_folder(tmp_path)
    a = load(str(top), progress=False)
    assert isinstance(a, ImageArrays) and a.name == "my_lesions"
    assert a.class_names == ["mel", "nv"] and a.class_counts().tolist() == [2, 3]
    assert a.images.shape == (5, 16, 16, 3)
    assert sorted(a.meta["ids"].tolist()) == ["m1", "m2", "n1", "n2", "n3"]
    assert a.images[a.meta["ids"].tolist().index("m2"), 0, 0].tolist() == list(BLUE)
    assert Path(a.meta["cache"]).exists() and a.meta["user_data"]
    # the decode cache serves the second call; Path objects and size= work too
    monkeypatch.setattr(sources, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    b = load(top, progress=False)
    assert np.array_equal(a.images, b.images) and b.labels.tolist() == a.labels.tolist()
    monkeypatch.undo()
    monkeypatch.setenv("KITLIB_CACHE", str(tmp_path / "cache"))
    assert load(top, size=8, progress=False).images.shape == (5, 8, 8, 3)
    # as a notebook does it: load(name, **dataset_options.get(name, {}))
    name = str(top)
    assert len(load(name, **{name: {"size": 8}}.get(name, {}))) == 5
    assert load(top, classes=["nv", "mel"], progress=False).class_counts().tolist() == [3, 2]


def test_user_folder_errors_name_the_file(tmp_path):
    top = _user_folder(tmp_path)
    Image.new("RGB", (16, 16), RED).save(top / "loose.png")
    with pytest.raises(DatasetError, match=f"image {top / 'loose.png'} is not inside a class folder"):
        load(top, progress=False)
    (top / "loose.png").unlink()
    (top / "nv" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageReadError, match=str(top / "nv" / "broken.png")):
        load(top, progress=False)
    assert _cache_files(tmp_path) == []
    (top / "nv" / "broken.png").unlink()
    Image.new("RGB", (20, 16), RED).save(top / "nv" / "wide.png")
    with pytest.raises(DatasetError, match="pass size=<pixels>"):
        load(top, progress=False)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match=f"no image with a suffix .* matches {empty}"):
        load(empty)
    assert _cache_files(tmp_path) == []


def test_load_a_csv_of_path_label_rows(tmp_path):
    (tmp_path / "imgs").mkdir()
    for k, colour in enumerate((RED, GREEN, BLUE)):
        Image.new("RGB", (10, 10), colour).save(tmp_path / "imgs" / f"{k}.png")
    absolute = tmp_path / "imgs" / "2.png"
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\nimgs/0.png,10\nimgs/1.png,2\n{absolute},2\n")
    a = load(str(csv), progress=False)
    assert a.name == "labels" and a.class_names == ["2", "10"] and a.labels.tolist() == [1, 0, 0]
    assert a.images[2, 0, 0].tolist() == list(BLUE) and Path(a.meta["cache"]).exists()
    bad = tmp_path / "noheader.csv"
    bad.write_text("imgs/0.png,10\n")
    with pytest.raises(DatasetError, match=f"{bad}: a CSV of your own images needs a header row 'path,label'"):
        load(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nimgs/9.png,a\n")
    with pytest.raises(DatasetMissingError, match="imgs/9.png"):
        load(missing, progress=False)
    with pytest.raises(LabelError, match="'10'"):
        load(csv, classes=["2"], progress=False)
    assert _cache_files(tmp_path) == [Path(a.meta["cache"]).name]


def test_load_a_medmnist_style_npz(tmp_path):
    arrays = {k: v for k, v in _npz_arrays(size=40).items() if not k.startswith("val")}  # no val split
    path = tmp_path / "scans.npz"
    np.savez(path, **arrays)
    a = load(str(path), progress=False)
    assert a.name == "scans" and a.images.shape == (9, 40, 40, 3) and a.class_names == ["0", "1", "2"]
    assert a.split.tolist() == ["train"] * 6 + ["test"] * 3 and a.meta["cache"] is None
    b = load(path, size=20, progress=False)
    assert b.images.shape == (9, 20, 20, 3) and Path(b.meta["cache"]).exists()


def test_a_path_that_does_not_exist_says_so(tmp_path):
    gone = tmp_path / "no" / "such_folder"
    with pytest.raises(DatasetMissingError) as e:
        load(str(gone))
    assert f"{gone}: no such file or folder" in str(e.value) and not isinstance(e.value, UnknownDatasetError)
    with pytest.raises(DatasetMissingError, match="gone.npz: no such file or folder"):
        load("gone.npz")
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'skin8'"):
        load("skin8")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['flag'\]"):
        load(_user_folder(tmp_path), flag="x")


def test_private_manifest_folder_needs_no_provenance(tmp_path, monkeypatch, capsys):
    top = _user_folder(tmp_path)
    mdir = tmp_path / "my_manifests"
    mdir.mkdir()
    (mdir / "lesions.yaml").write_text(yaml.safe_dump({
        "classes": ["nv", "mel"], "folder": str(top),
        "loader": {"kind": "image_folder", "image_pattern": "**/*", "label_from": "top_dir",
                   "extensions": [".png", ".jpg", ".jpeg", ".bmp", ".tif"]},
    }))
    (mdir / "broken.yaml").write_text(yaml.safe_dump({"classes": ["a"], "folder": "x", "loader": {"kind": "csv"}}))
    (mdir / "skin7.yaml").write_text(yaml.safe_dump({"classes": ["a"], "folder": "x", "loader": {"kind": "synthetic"}}))
    monkeypatch.setenv("KITLIB_MANIFESTS", str(mdir))
    m = get_manifest("lesions")
    assert m.title == "lesions (private data)" and m.papers == () and m.licence == "private"
    assert dataset_status("lesions") == ("present", str(top))
    a = load("lesions", progress=False)
    assert a.name == "lesions" and a.class_counts().tolist() == [3, 2]
    table = format_status_table()
    rows = {line.split()[0]: line for line in table.splitlines()[2:-1]}
    assert "present" in rows["lesions"]
    assert "invalid manifest" in rows["broken"] and f"{mdir / 'broken.yaml'}: field 'loader.kind'" in rows["broken"]
    assert "invalid manifest" in rows["skin7"] and "is a built-in dataset" in rows["skin7"]
    assert "present" in rows["synthetic"] and "missing" in rows["retinamnist"]
    assert main(["datasets"]) == 1


def test_the_manifests_are_package_data():
    assert catalog.MANIFEST_DIR == ROOT / "kitlib" / "data" / "manifests"
    assert (ROOT / "data_manifests" / "skin7.yaml").resolve() == (catalog.MANIFEST_DIR / "skin7.yaml").resolve()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"kitlib.data" = ["manifests/*.yaml"]' in pyproject


@pytest.mark.slow
def test_a_built_wheel_holds_the_manifests(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "kitlib", src / "kitlib", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          str(src), "-w", str(tmp_path / "whl")], capture_output=True, text=True)
    if res.returncode != 0 and "No module named" in res.stderr:
        pytest.skip(f"cannot build without isolation here: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "whl").glob("kitlib-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).stem for n in names if n.startswith("kitlib/data/manifests/") and n.endswith(".yaml")}
    assert shipped == {p.stem for p in catalog.MANIFEST_DIR.glob("*.yaml")} and len(shipped) == 20


@pytest.mark.slow
def test_notebook_01_runs_on_a_folder_of_your_own_images(tmp_path):
    arrays = make_synthetic(n=300, num_classes=3, ratio=4, size=16, seed=2)
    folder = tmp_path / "my_lesions"
    for i, (img, y) in enumerate(zip(arrays.images, arrays.labels)):
        cls = folder / arrays.class_names[y]
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(cls / f"img{i}.PNG")
    (folder / ".DS_Store").write_text("hidden files are skipped")
    out = tmp_path / "out"
    rc = main(["reproduce", "perturbed_input", "--profile", "smoke", "--out", str(out), "--device", "cpu",
               "--no-progress", "-p", f"datasets=[{folder}]", "-p", "image_size=16", "-p", "epochs=2",
               "-p", "methods=[ce]", "-p", "ablation_methods=[ce]", "-p", "T_grid=[1000]", "-p", "eps_grid=[0, 0.01]",
               "-p", "timing_images=8", "-p", f"run_root={tmp_path / 'runs'}"])
    result = out / "smoke" / "perturbed_input"
    assert rc == 0, (out / "smoke" / "perturbed_input.failed" / "run.json").read_text()
    t2 = pd.read_csv(result / "table2_ours_my_lesions.csv")  # tables named after the folder
    assert set(t2["row"]) == {"TinyCNN|CE", "TinyCNN|CE+ours", "TinyCNN|CE+LA", "TinyCNN|CE+τ-norm"}
    record = json.loads((result / "record.json").read_text())
    assert record["config"]["datasets"] == [str(folder)] and record["config"]["batch_size"][str(folder)] == 32
    assert rep.verify_result(result) == []
