"""kitlib.samplers: class frequencies, determinism per (seed, epoch), DRS switch, balanced batches, shards."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from kitlib.samplers import (
    ClassAwareBatchSampler,
    ClassBalancedSampler,
    DeferredSampler,
    InstanceSampler,
    PowerSampler,
    SquareRootSampler,
    build_sampler,
    shard,
)

COUNTS = np.array([600, 150, 50])                       # N = 800, imbalance 12
N = int(COUNTS.sum())
DRAWS = 120_000


def _labels(seed=0):
    """Labels with COUNTS per class, shuffled so class positions are interleaved."""
    lab = np.repeat(np.arange(3), COUNTS)
    return np.random.default_rng(seed).permutation(lab)


LABELS = _labels()


def _class_freq(sampler):
    idx = np.fromiter(iter(sampler), dtype=np.int64)
    return np.bincount(LABELS[idx], minlength=3) / len(idx), idx


def test_instance_is_a_permutation_with_frequencies_n_over_N():
    s = InstanceSampler(LABELS, seed=3)
    freq, idx = _class_freq(s)
    assert len(s) == N and sorted(idx.tolist()) == list(range(N))
    assert freq == pytest.approx(COUNTS / N, abs=1e-12)
    # more samples than N: whole permutations appended, then cut
    s = InstanceSampler(LABELS, seed=3, num_samples=2 * N + 10)
    idx = np.fromiter(iter(s), dtype=np.int64)
    assert len(idx) == len(s) == 2 * N + 10
    assert sorted(idx[:N].tolist()) == list(range(N)) and sorted(idx[N:2 * N].tolist()) == list(range(N))


def test_class_balanced_frequencies_and_uniform_within_class():
    freq, idx = _class_freq(ClassBalancedSampler(LABELS, seed=1, num_samples=DRAWS))
    assert freq == pytest.approx([1 / 3] * 3, abs=0.01)
    # every item of the smallest class drawn about DRAWS/3/50 = 800 times
    small = np.flatnonzero(LABELS == 2)
    hits = np.bincount(idx, minlength=N)[small]
    assert hits.min() > 0.75 * 800 and hits.max() < 1.25 * 800


def test_sqrt_and_power_frequencies_follow_eq2():
    freq, _ = _class_freq(SquareRootSampler(LABELS, seed=2, num_samples=DRAWS))
    expect = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()          # [0.5657, 0.2828, 0.1633]
    assert freq == pytest.approx(expect, abs=0.01)
    for q in (1.0, 0.25, -0.5):
        s = PowerSampler(LABELS, q=q, seed=2, num_samples=DRAWS)
        expect = COUNTS ** q / (COUNTS ** q).sum()
        assert s.class_probabilities == pytest.approx(expect, rel=1e-12)
        freq, _ = _class_freq(s)
        assert freq == pytest.approx(expect, abs=0.01), q
    assert PowerSampler(LABELS, q=1.0).class_probabilities == pytest.approx(COUNTS / N)


def test_absent_class_gets_no_probability():
    lab = np.array([0, 0, 0, 2, 2])                             # class 1 absent
    s = PowerSampler(lab, q=0.0, num_samples=2000)
    assert s.class_probabilities == pytest.approx([0.5, 0.0, 0.5])
    assert set(lab[list(s)].tolist()) == {0, 2}


@pytest.mark.parametrize("name, kw", [("instance", {}), ("class", {}), ("sqrt", {}),
                                      ("power", {"q": 0.3}), ("drs", {"defer_epoch": 1})])
def test_deterministic_per_seed_and_epoch(name, kw):
    a = build_sampler(name, LABELS, seed=7, **kw)
    b = build_sampler(name, LABELS, seed=7, **kw)
    e0 = list(a)
    assert e0 == list(a) == list(b)                             # re-iterating: same epoch, same indices
    a.set_epoch(1)
    e1 = list(a)
    assert e1 != e0
    b.set_epoch(1)
    assert list(b) == e1                                        # resume at epoch 1 reproduces it
    c = build_sampler(name, LABELS, seed=8, **kw)
    assert list(c) != e0
    assert all(0 <= i < N for i in e0 + e1)


def test_drs_switches_at_defer_epoch():
    s = DeferredSampler(LABELS, defer_epoch=2, seed=0, num_samples=DRAWS)
    for epoch in (0, 1):
        s.set_epoch(epoch)
        assert not s.balanced
        freq, idx = _class_freq(s)
        assert freq == pytest.approx(COUNTS / N, abs=1e-12)     # whole permutations
        assert np.bincount(idx, minlength=N).max() - np.bincount(idx, minlength=N).min() <= 1
    for epoch in (2, 5):
        s.set_epoch(epoch)
        assert s.balanced
        freq, _ = _class_freq(s)
        assert freq == pytest.approx([1 / 3] * 3, abs=0.01)


def test_class_aware_batches_have_equal_counts_per_class():
    s = ClassAwareBatchSampler(LABELS, batch_size=32)          # 3 classes -> 10 per class, batch 30
    assert (s.samples_per_class, s.batch_size, len(s)) == (10, 30, N // 30)
    batches = list(s)
    assert len(batches) == len(s)
    for batch in batches:
        assert np.bincount(LABELS[batch], minlength=3).tolist() == [10, 10, 10]
    # the 50 items of the smallest class are all used before any repeats (walks a permutation)
    small = [i for b in batches[:5] for i in b if LABELS[i] == 2]
    assert sorted(small) == sorted(np.flatnonzero(LABELS == 2).tolist())
    # two of three classes per batch, 4 each; a class smaller than samples_per_class repeats items
    lab = np.array([0] * 20 + [1] * 20 + [2] * 3)
    s = ClassAwareBatchSampler(lab, samples_per_class=4, classes_per_batch=2, num_batches=60, seed=1)
    seen = set()
    for batch in s:
        cls, cnt = np.unique(lab[batch], return_counts=True)
        assert len(batch) == 8 and len(cls) == 2 and cnt.tolist() == [4, 4]
        seen.update(cls.tolist())
    assert seen == {0, 1, 2}
    # deterministic per (seed, epoch)
    assert list(s) == list(s)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first


def test_class_aware_batches_in_a_dataloader():
    ds = TensorDataset(torch.arange(N), torch.from_numpy(LABELS))
    loader = DataLoader(ds, batch_sampler=ClassAwareBatchSampler(LABELS, samples_per_class=2, num_batches=3))
    for idx, y in loader:
        assert torch.bincount(y, minlength=3).tolist() == [2, 2, 2]
        assert torch.equal(y, torch.from_numpy(LABELS)[idx])
    loader = DataLoader(ds, batch_size=100, sampler=build_sampler("class", LABELS, seed=0))
    assert sum(len(y) for _, y in loader) == N


def test_shard_covers_all_indices_with_equal_counts():
    idx = list(InstanceSampler(LABELS[:10], seed=0))
    parts = [shard(idx, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]                 # 10 padded to 12
    assert sorted(set(sum(parts, []))) == sorted(idx)
    assert sorted(sum(parts, [])) == sorted(idx + idx[:2])      # padding repeats the first indices
    assert shard(np.arange(6), 1, 2) == [1, 3, 5]
    assert shard(idx, 0, 1) == idx
    with pytest.raises(ValueError, match="rank"):
        shard(idx, 3, 3)


def test_build_sampler_and_bad_input_errors():
    assert isinstance(build_sampler("class", LABELS), ClassBalancedSampler)
    assert build_sampler("power", LABELS, q=0.5).class_probabilities == pytest.approx(
        SquareRootSampler(LABELS).class_probabilities)
    assert len(build_sampler("sqrt", LABELS, num_samples=17)) == 17
    with pytest.raises(ValueError, match=r"unknown sampler 'balanced'.*'drs'"):
        build_sampler("balanced", LABELS)
    with pytest.raises(ValueError, match="defer_epoch"):
        build_sampler("drs", LABELS)
    with pytest.raises(ValueError, match="give q"):
        build_sampler("power", LABELS)
    with pytest.raises(TypeError, match="build_sampler\\('class'\\)"):
        build_sampler("class", LABELS, q=0.5)
    with pytest.raises(ValueError, match="labels must be integers"):
        InstanceSampler([0.5, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        InstanceSampler([0, -1])
    with pytest.raises(ValueError, match="exactly one"):
        ClassAwareBatchSampler(LABELS)
    with pytest.raises(ValueError, match="classes_per_batch"):
        ClassAwareBatchSampler(LABELS, samples_per_class=2, classes_per_batch=4)
