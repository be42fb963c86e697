"""The training engine: every method trains, runs are cached by config, resume is exact, head retraining."""
import math

import numpy as np
import pytest
import torch

from kitlib.data import TorchImageSet, build_transform, make_synthetic
from kitlib.methods import METHODS, build_method
from kitlib.train import LRSchedule, ModelSpec, TrainConfig, fit, retrain_head

SPEC = ModelSpec("tiny_cnn", num_classes=4, width=8)


@pytest.fixture(scope="module")
def sets():
    arr = make_synthetic(n=240, num_classes=4, ratio=8, size=16, seed=3)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(arr))
    tr, va = idx[:180], idx[180:]
    t_train = build_transform(train=True, size=16, flip=True)
    t_test = build_transform(train=False, size=16)
    return TorchImageSet(arr, t_train, indices=tr), TorchImageSet(arr, t_test, indices=va)


def cfg(**kw):
    base = dict(epochs=2, batch_size=32, lr=0.05, schedule="constant", select_metric="mcr")
    return TrainConfig(**{**base, **kw})


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.dtype.is_floating_point])


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"crw", "crs"}))
def test_every_method_trains(name, sets, tmp_path):
    train, val = sets
    run = fit(SPEC, build_method(name), train, val, cfg(), run_root=tmp_path, progress=False)
    assert len(run.history) == 2
    assert np.isfinite(run.history["loss"]).all()
    assert 0 <= run.best_score <= 1
    assert (run.run_dir / "final.pt").exists() and not (run.run_dir / "last.pt").exists()
    if name.startswith("ldam"):
        assert run.spec.head == "cosine"


def test_cache_returns_without_training(sets, tmp_path, monkeypatch):
    train, val = sets
    first = fit(SPEC, "ce", train, val, cfg(), run_root=tmp_path, progress=False)
    monkeypatch.setattr(METHODS["ce"], "loss", lambda *a, **k: pytest.fail("retrained a cached run"))
    again = fit(SPEC, "ce", train, val, cfg(), run_root=tmp_path, progress=False)
    assert again.key == first.key and torch.equal(weights(again.model), weights(first.model))
    monkeypatch.undo()
    other = fit(SPEC, "ce", train, val, cfg(seed=1), run_root=tmp_path, progress=False)
    assert other.key != first.key and not torch.equal(weights(other.model), weights(first.model))


def test_interrupted_run_resumes_exactly(sets, tmp_path):
    train, val = sets
    c = cfg(epochs=3, select_metric=None, schedule="step", step_size=1, gamma=0.5)
    straight = fit(SPEC, "rs", train, val, c, run_root=tmp_path / "a", progress=False)

    def stop(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(SPEC, "rs", train, val, c, run_root=tmp_path / "b", progress=False, callbacks=[stop])
    run_dir = tmp_path / "b" / straight.key
    assert (run_dir / "last.pt").exists() and not (run_dir / "final.pt").exists()
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 1
    resumed = fit(SPEC, "rs", train, val, c, run_root=tmp_path / "b", progress=False)
    assert len(resumed.history) == 3
    assert torch.equal(weights(resumed.model), weights(straight.model))


def test_best_epoch_selection(sets, tmp_path):
    train, val = sets
    run = fit(SPEC, "ce", train, val, cfg(epochs=3), run_root=tmp_path, progress=False)
    scores = run.history["val_mcr"].to_numpy()
    assert run.best_epoch == int(np.argmax(scores)) and math.isclose(run.best_score, scores.max())


def test_retrain_head_freezes_backbone(sets, tmp_path):
    train, val = sets
    stage1 = fit(SPEC, "ldam", train, val, cfg(), run_root=tmp_path, progress=False)
    for kind in ("crw", "crs"):
        # lr 1e-3: the tiny CNN's LDAM features are large, and at the default 0.1 the head's loss explodes
        stage2 = retrain_head(stage1, train, val, kind=kind, cfg={"epochs": 2, "batch_size": 32, "lr": 1e-3},
                              run_root=tmp_path, progress=False)
        b1, b2 = stage1.model.backbone.state_dict(), stage2.model.backbone.state_dict()
        assert all(torch.equal(b1[k], b2[k]) for k in b1), "frozen backbone (incl. BN statistics) changed"
        assert isinstance(stage2.model.head, torch.nn.Linear)
        assert stage2.config["init"] == stage1.key and stage2.config["train"]["freeze_backbone"]


def test_retrain_head_with_the_last_block_trains_only_that_block_and_the_head(sets, tmp_path):
    from kitlib.train import retrain_head_features

    train, val = sets
    stage1 = fit(SPEC, "ce", train, val, cfg(), run_root=tmp_path, progress=False)
    stage2 = retrain_head(stage1, train, val, cfg={"epochs": 2, "batch_size": 32, "lr": 0.01,
                                                   "unfreeze_last_block": True}, run_root=tmp_path, progress=False)
    b1, b2 = stage1.model.backbone.state_dict(), stage2.model.backbone.state_dict()
    last = {"12.weight", "13.weight", "13.bias", "13.running_mean", "13.running_var", "13.num_batches_tracked"}
    assert {k for k in b1 if not torch.equal(b1[k], b2[k])} == last  # TinyCNN's last conv + BN, statistics included
    assert stage2.config["train"]["unfreeze_last_block"] and stage2.key != retrain_head(
        stage1, train, val, cfg={"epochs": 2, "batch_size": 32, "lr": 0.01}, run_root=tmp_path, progress=False).key
    assert "unfreeze_last_block" not in stage1.config["train"]  # off: the run keys of before are kept
    with pytest.raises(ValueError, match="unfreeze_last_block"):
        TrainConfig(unfreeze_last_block=True)
    with pytest.raises(ValueError, match="unfreeze_last_block=True cannot train on cached features"):
        retrain_head_features(stage1, train, val, cfg={"unfreeze_last_block": True}, run_root=tmp_path)


def test_missing_class_in_train_split_is_named(tmp_path):
    arr = make_synthetic(n=200, num_classes=4, ratio=4, size=16, seed=0)
    keep = np.flatnonzero(arr.labels != 2)
    ds = TorchImageSet(arr, build_transform(train=False, size=16), indices=keep)
    with pytest.raises(ValueError, match=arr.class_names[2].replace("(", r"\(").replace(")", r"\)")):
        fit(SPEC, "ce", ds, None, cfg(), run_root=tmp_path, progress=False)


def test_lr_schedules():
    f = LRSchedule(TrainConfig(epochs=200, lr=1e-3, schedule="step", step_size=50, gamma=0.1, warmup_epochs=1)).factor
    assert f(0.5) == pytest.approx(0.5)  # linear warm-up over the first epoch
    assert f(10) == pytest.approx(1) and f(50) == pytest.approx(0.1) and f(150) == pytest.approx(1e-3)
    c = LRSchedule(TrainConfig(epochs=100, lr=1e-3, schedule="cosine", min_lr=1e-6, warmup_epochs=5)).factor
    assert c(5) == pytest.approx(1) and c(100) == pytest.approx(1e-3) and c(52.5) == pytest.approx(0.5005)
    cyc = LRSchedule(TrainConfig(epochs=30, schedule="cyclic", cycle_epochs=10)).factor
    assert cyc(0) == pytest.approx(1) and cyc(5) == pytest.approx(0.5) and cyc(10) == pytest.approx(1)
    p = LRSchedule(TrainConfig(schedule="plateau", patience=1, gamma=0.1))
    for s in (0.5, 0.4, 0.4):
        p.observe(s)
    assert p.factor(3) == pytest.approx(0.1)


def test_drw_weights_switch_at_defer_epoch():
    m = build_method("ldam_drw", defer_at=0.5)
    m.setup(None, [100, 10], epochs=4)
    m.on_epoch_start(1)
    assert m.criterion.weight is None
    m.on_epoch_start(2)
    w = m.criterion.weight
    assert w is not None and w[1] > w[0]


def test_select_best_or_last_is_explicit(sets, tmp_path):
    train, val = sets
    best = fit(SPEC, "ce", train, val, cfg(epochs=3, select="best"), run_root=tmp_path, progress=False)
    scores = best.history["val_mcr"].to_numpy()
    assert best.best_epoch == int(np.argmax(scores)) and best.best_score == pytest.approx(scores.max())
    last = fit(SPEC, "ce", train, val, cfg(epochs=3, select="last"), run_root=tmp_path, progress=False)
    assert last.key != best.key and last.best_epoch == 2
    assert last.best_score == pytest.approx(last.history["val_mcr"].iloc[-1])  # still scored and logged
    # the implicit default keeps the hash it had before `select` existed
    assert "select" not in cfg().identity() and cfg(select="last").identity()["select"] == "last"
    with pytest.raises(ValueError, match="TrainConfig.select must be"):
        cfg(select="first")
    with pytest.raises(ValueError, match="TrainConfig.select must be"):
        cfg(select="best", select_metric=None)
    with pytest.raises(ValueError, match="select='best' needs a validation set"):
        fit(SPEC, "ce", train, None, cfg(select="best"), run_root=tmp_path, progress=False)


def test_class_aware_batches_reach_fit(sets, tmp_path):
    """Method.sampler = "class_aware": every training batch holds batch_size // C items of each class."""
    from kitlib.methods import Method

    seen = []

    class Balanced(Method):
        name = "test_class_aware"
        sampler = "class_aware"

        def loss(self, model, batch, epoch):
            seen.append(torch.bincount(batch["label"].cpu(), minlength=4).tolist())
            return super().loss(model, batch, epoch)

    train, val = sets
    run = fit(SPEC, Balanced(), train, val, cfg(epochs=1, batch_size=34), run_root=tmp_path, progress=False)
    assert seen and all(c == [8, 8, 8, 8] for c in seen)           # 34 // 4 = 8 per class
    assert len(seen) == len(train) // 34 and len(run.history) == 1
