"""Paper 002 (contrastive learning against imbalance): Eq. 1, the oversampling by copies, the SupCon method's
two stages, the paper module's pieces and the notebook end to end at the smoke profile."""
import math

import numpy as np
import pytest
import torch

from kitlib.losses import SupConLoss
from kitlib.methods import build_method
from kitlib.samplers import ClassBalancedSampler, OversampleSampler, build_sampler


# ---------------------------------------------------------------- Eq. 1 by hand
def test_eq1_by_hand_on_four_points_with_an_anchor_without_positive():
    """z: three unit vectors in 2-D; labels 0, 0, 1 plus a class-2 point (no positive: skipped, no NaN)."""
    s = math.sqrt(0.5)
    z = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 2])
    tau = 0.5
    e = math.exp
    # anchor 0: positive 1 (z.z = s); all k != 0: s, 0, -1
    l0 = -(s / tau - math.log(e(s / tau) + e(0) + e(-1 / tau)))
    # anchor 1: positive 0 (s); k != 1: s (to 0), s (to 2), -s (to 3)
    l1 = -(s / tau - math.log(2 * e(s / tau) + e(-s / tau)))
    # anchors 2 and 3 have no positive in the batch: skipped; mean over the two anchors that have one
    want = (l0 + l1) / 2
    assert float(SupConLoss(temperature=tau)(z, y)) == pytest.approx(want, rel=1e-12)
    # 1/(N_ci - 1) normalisation: two positives average, not sum
    y2 = torch.tensor([0, 0, 0, 2])
    l0 = -((s / tau + 0.0) - 2 * math.log(e(s / tau) + e(0) + e(-1 / tau))) / 2
    l1 = -((s / tau + s / tau) - 2 * math.log(2 * e(s / tau) + e(-s / tau))) / 2
    l2 = -((0.0 + s / tau) - 2 * math.log(e(0) + e(s / tau) + e(0))) / 2
    assert float(SupConLoss(temperature=tau)(z, y2)) == pytest.approx((l0 + l1 + l2) / 3, rel=1e-12)


# ---------------------------------------------------------------- resample = copies
def test_oversampled_set_has_equal_counts_and_copies_evenly():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 3)
    s = OversampleSampler(labels, seed=0)
    assert len(s) == 3 * 10
    for epoch in (0, 1, 5):
        s.set_epoch(epoch)
        idx = np.array(list(s))
        assert np.bincount(labels[idx]).tolist() == [10, 10, 10]
        per_item = np.bincount(idx, minlength=len(labels))
        assert (per_item[:10] == 1).all()                       # the largest class is not copied
        assert sorted(per_item[10:14].tolist()) == [2, 2, 3, 3]  # 10 = 2 x 4 + 2 extra items, each once
        assert sorted(per_item[14:].tolist()) == [3, 3, 4]       # 10 = 3 x 3 + 1
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert first != list(s) and sorted(first) == sorted(s)      # new order, same extended set
    assert list(OversampleSampler(labels, seed=0)) == first     # deterministic per seed
    # the class-balanced sampler only matches the counts in expectation
    cb = np.bincount(labels[list(ClassBalancedSampler(labels, seed=0))], minlength=3)
    assert cb.sum() == len(labels)
    with pytest.raises(ValueError, match="num_samples"):
        build_sampler("oversample", labels, num_samples=5)


def test_supcon_method_parameters_are_checked_by_name():
    for kw, name in ((dict(temperature=0), "temperature"), (dict(base_temperature=-1.0), "base_temperature"),
                     (dict(proj_dim=0), "proj_dim"), (dict(hidden_dim=2.5), "hidden_dim"),
                     (dict(sampler="balanced"), "sampler")):
        with pytest.raises(ValueError, match=name):
            build_method("supcon", **kw)
