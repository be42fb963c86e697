"""Training refuses nonsense instead of caching it (issue 2), and notebook 01's tables say what they show.

Every bad input is an error naming its culprit (field, epoch and batch, file), and a failed run leaves nothing
in the run cache. Models at chance level are flagged in the verdict instead of being read as a result.
"""
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import kitlib.train as T
from kitlib import metrics as M
from kitlib import report
from kitlib.data import TorchImageSet, build_transform, make_synthetic
from kitlib.experiment import Experiment
from kitlib.infer import resolve_device
from kitlib.methods import Method
from kitlib.papers import perturbed_input as pi
from kitlib.train import ModelSpec, TrainConfig, TrainingDiverged, fit

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


def test_verdict_flags_models_at_chance_and_calls_up_only_from_paired_folds():
    rows = _rows({"ce": ([0.50, 0.52], [0.55, 0.56], False),    # both folds up
                  "rs": ([0.50, 0.52], [0.60, 0.51], False),    # mean up, 1 of 2 folds up
                  "rw": ([0.25, 0.25], [0.30, 0.31], True)})    # the model is at chance
    v = pi.verdict(rows).set_index("method")
    assert len(set(v.columns)) == len(v.columns) and "dmcr" not in v.columns  # one column per quantity
    assert v.loc["CE", "MCR"] == "up" and v.loc["CE", "MCR up in folds"] == "2/2"
    assert v.loc["RS", "MCR"] == "inconclusive" and v.loc["RS", "dMCR (pp)"] == pytest.approx(4.5)
    assert v.loc["RW", "note"] == M.AT_CHANCE == "at chance: not evidence for or against the claim"
    assert v.loc["RW", "MCR"] == "n/a" and v.loc["CE", "note"] == ""
    text = pi.verdict_text(v.reset_index().assign(dataset="synthetic"), "laptop")
    assert f"have a model {M.AT_CHANCE} (TinyCNN RW)" in text
    assert "Claim 1 (MCR rises for every baseline): **inconclusive" in text


def test_verdict_text_when_every_model_is_at_chance():
    v = pi.verdict(_rows({"ce": ([0.25, 0.25], [0.3, 0.3], True)})).assign(dataset="synthetic")
    assert "**no evidence either way (every model is at chance)**" in pi.verdict_text(v, "laptop")


# --------------------------------------------------------------------------- notebook 01's tables


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    arr = make_synthetic(n=300, num_classes=4, ratio=8, size=16, seed=3)
    return Experiment(arr, protocol="kfold", folds=2, image_size=16, model={"width": 8}, progress=False,
                      run_root=tmp_path_factory.mktemp("runs"),
                      train=dict(epochs=1, batch_size=32, lr=0.05, schedule="constant", select_metric=None))


def test_table1_counts_are_integers(exp):
    t1 = pi.table1({"synthetic": exp}).set_index(["row", "column"])
    assert t1.loc[("synthetic", "classes"), "ours"] == "4"
    assert t1.loc[("Skin7", "largest"), "paper"] == "6705" and t1.loc[("Skin7", "imbalance"), "paper"] == "58.3"
    assert re.fullmatch(r"\d+\.\d", t1.loc[("synthetic", "imbalance"), "ours"])
    assert not any(c.endswith(".0") for c in t1.drop(index="imbalance", level="column")["ours"] if c)


def test_eps_validation_curve_is_in_percent(exp):
    best, curve = pi.select_eps(exp, "tiny_cnn", [0, 0.01], T=1000.0, train={"lr": 0.05})
    assert list(curve["eps"]) == [0, 0.01] and "fold" not in curve.columns
    assert curve["mcr"].between(0, 100).all() and curve["mcr"].max() > 1  # fractions would be <= 1
    assert best in (0, 0.01)


def test_inference_time_has_three_significant_digits(exp, tmp_path):
    t = pi.inference_time(exp, "tiny_cnn", "ce", 0.01, n=16, repeats=1, train={"lr": 0.05})
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
    assert "note" in pi.verdict(rows).columns


def test_zero_recall_bar_is_visible():
    fig = report.plot_per_class_bars(pd.DataFrame({"CE": [0.9, 0.0], "CE+ours": [0.8, 0.3]}), ["big", "small"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts if t.get_text()] == ["0"]  # the zero bar carries a visible "0"
    zero = ax.texts[[t.get_text() for t in ax.texts].index("0")]
    assert math.isclose(zero.xy[1], 0.0) and zero.get_visible()
