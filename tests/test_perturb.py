"""kitlib.perturb: paper 000's perturbed input at inference (Eqs. 1-3)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from kitlib.models import create_model
from kitlib.perturb import (choose_eps, difference, perturb_inputs, predict_perturbed, signed_gradient,
                            target_distribution)

COUNTS = [300, 30, 6]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The models here are tiny: one intra-op thread avoids thread contention on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_target_distribution_by_hand():
    p = target_distribution([100, 10, 1])
    g = np.array([0.0, math.log(10), math.log(100)])  # log(M / n_c), M = 100
    np.testing.assert_allclose(p.numpy(), g / g.sum(), rtol=1e-12)
    np.testing.assert_allclose(p.numpy(), [0.0, 1 / 3, 2 / 3], rtol=1e-12)
    assert p.dtype == torch.float64 and float(p.sum()) == pytest.approx(1.0)


def test_target_distribution_errors():
    with pytest.raises(ValueError, match="class 2"):
        target_distribution([5, 3, 0, 1])
    with pytest.raises(ValueError, match="all equal"):
        target_distribution([7, 7, 7])
    with pytest.raises(ValueError, match="non-negative"):
        target_distribution([5, -1])


def _toy_data(n_per_class, seed):
    """Gaussian blobs shaped like (3, 4, 4) images, class means fixed by seed 0."""
    means = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.6
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([means[c] + torch.randn(n, 3, 4, 4, generator=g) for c, n in enumerate(n_per_class)])
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    return x, y


@pytest.fixture(scope="module")
def biased_mlp():
    """A small MLP trained on an imbalanced toy set (300 / 30 / 6): biased toward class 0."""
    torch.manual_seed(0)
    x, y = _toy_data(COUNTS, seed=1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model


def test_eps_zero_is_identity_without_backward():
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    calls = []
    model.register_full_backward_hook(lambda *a: calls.append(1))
    x = torch.randn(4, 3, 4, 4)
    out = perturb_inputs(model, x, COUNTS, eps=0.0)
    assert torch.equal(out, x) and not calls
    perturb_inputs(model, x, COUNTS, eps=0.1)  # the hook does fire when there is a backward pass
    assert calls


def test_sign_matches_central_finite_difference():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, width=4).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    target = target_distribution(COUNTS)
    eps = 1e-3
    x_tilde = perturb_inputs(model, x, COUNTS, eps=eps, T=1000.0)
    step_sign = ((x - x_tilde) / eps).round()  # = sign(grad), Eq. 3
    assert set(step_sign.unique().tolist()) <= {-1.0, 0.0, 1.0}

    def loss(z):
        with torch.no_grad():
            return difference(model(z), target, "ce", T=1000.0).item()

    h, checked = 1e-5, 0
    gen = torch.Generator().manual_seed(3)
    for flat in torch.randperm(x.numel(), generator=gen)[:12].tolist():
        idx = np.unravel_index(flat, x.shape)
        xp, xm = x.clone(), x.clone()
        xp[idx] += h
        xm[idx] -= h
        fd = (loss(xp) - loss(xm)) / (2 * h)
        if abs(fd) > 1e-9:
            assert step_sign[idx].item() == np.sign(fd), (idx, fd)
            checked += 1
    assert checked >= 8


def test_bias_moves_toward_minority_classes(biased_mlp):
    x, y = _toy_data([200, 200, 200], seed=2)
    plain = predict_perturbed(biased_mlp, x, COUNTS, eps=0.0, progress=False)
    pert = predict_perturbed(biased_mlp, x, COUNTS, eps=0.1, progress=False)
    assert plain.shape == pert.shape == (600, 3) and pert.dtype == np.float32
    np.testing.assert_allclose(pert.sum(1), 1.0, rtol=1e-5)
    # mean predicted mass leaves the majority class and goes to the rarest
    assert pert[:, 0].mean() < plain[:, 0].mean() - 0.01
    assert pert[:, 2].mean() > plain[:, 2].mean() + 0.01
    minority = lambda p: int((p.argmax(1) > 0).sum())  # noqa: E731
    assert minority(pert) > minority(plain)
    # and on this balanced test set the mean class recall improves (the paper's claim)
    recall = lambda p: np.mean([(p.argmax(1)[y == c] == c).mean() for c in range(3)])  # noqa: E731
    assert recall(pert) > recall(plain)


def test_linear_biased_head_rarest_class_gains_over_majority():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([3.0, 0.0, 0.0]))
    x = torch.randn(256, 3, 4, 4)
    eps = 0.2
    with torch.no_grad():
        z0 = model(x)
        z1 = model(perturb_inputs(model, x, [100, 10, 1], eps=eps))
    # linear model: z_0 - z_2 drops by exactly eps * ||w_0 - w_2||_1 (p* = [0, 1/3, 2/3], p_hat ~ 1/3)
    w = model[1].weight
    drop = eps * (w[0] - w[2]).abs().sum()
    torch.testing.assert_close((z0[:, 0] - z0[:, 2]) - (z1[:, 0] - z1[:, 2]), drop.expand(256), rtol=1e-4, atol=1e-4)
    assert int((z1.argmax(1) == 2).sum()) > int((z0.argmax(1) == 2).sum())


@pytest.mark.parametrize("measure", ["ce", "mse", "focal"])
def test_every_measure_decreases_its_difference(biased_mlp, measure):
    x, _ = _toy_data([20, 20, 20], seed=4)
    target = target_distribution(COUNTS)
    x_tilde = perturb_inputs(biased_mlp, x, COUNTS, eps=1e-3, measure=measure)
    with torch.no_grad():
        before = difference(biased_mlp(x), target, measure).item()
        after = difference(biased_mlp(x_tilde), target, measure).item()
    assert after < before
    assert not torch.equal(x_tilde, x)


def test_focal_with_gamma_zero_equals_ce():
    z, t = torch.randn(5, 3, dtype=torch.float64), target_distribution(COUNTS)
    torch.testing.assert_close(difference(z, t, "focal", gamma=0.0), difference(z, t, "ce"))
    p = torch.softmax(z / 1000.0, 1)
    torch.testing.assert_close(difference(z, t, "mse"), ((p - t) ** 2).sum())


def test_pixel_space_clamps_in_pixel_units(biased_mlp):
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    pixels = torch.rand(6, 3, 4, 4)
    pixels[0] = 0.0
    pixels[1] = 1.0
    x = (pixels - m) / s
    eps = 0.05
    x_tilde = perturb_inputs(biased_mlp, x, COUNTS, eps=eps, space="pixel", mean=mean, std=std)
    px_tilde = x_tilde * s + m
    assert px_tilde.min() >= -1e-6 and px_tilde.max() <= 1 + 1e-6
    direction = signed_gradient(biased_mlp, x, target_distribution(COUNTS))
    expected = (pixels - eps * direction).clamp(0, 1)
    torch.testing.assert_close(px_tilde, expected, rtol=0, atol=1e-6)
    # interior pixels moved by exactly eps pixel units; saturated ones did not leave [0, 1]
    inner = (pixels > eps) & (pixels < 1 - eps) & (direction != 0)
    torch.testing.assert_close((px_tilde - pixels)[inner].abs(), torch.full_like(pixels[inner], eps), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="mean"):
        perturb_inputs(biased_mlp, x, COUNTS, eps=eps, space="pixel")


def test_no_param_grad_and_modes_restored_and_no_grad_context():
    model = create_model("tiny_cnn", 3, width=4)
    model.train()
    model.backbone[1].eval()  # a frozen BatchNorm inside a training model must stay as it was
    modes = [m.training for m in model.modules()]
    bn = model.backbone[1]
    stats = bn.running_mean.clone()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        out = perturb_inputs(model, x, COUNTS, eps=0.01)
    with torch.inference_mode():
        out_inf = perturb_inputs(model, x, COUNTS, eps=0.01)
    assert not torch.equal(out, x)
    torch.testing.assert_close(out, out_inf)
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(bn.running_mean, stats)  # eval mode during the perturbation: no BN statistics update
    assert all(p.requires_grad for p in model.parameters())


def test_predict_accepts_loaders_of_dicts_tuples_and_tensors(biased_mlp):
    x, y = _toy_data([10, 10, 10], seed=5)
    ref = predict_perturbed(biased_mlp, x, COUNTS, eps=0.05, batch_size=7, progress=False)
    dicts = [{"image": x[i:i + 8], "label": y[i:i + 8]} for i in range(0, 30, 8)]
    tuples = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    for data in (dicts, tuples, torch.utils.data.TensorDataset(x, y)):
        np.testing.assert_allclose(predict_perturbed(biased_mlp, data, COUNTS, eps=0.05, progress=False),
                                   ref, atol=1e-6)
    with pytest.raises(ValueError, match="has 4 classes"):
        predict_perturbed(biased_mlp, x, [5, 4, 3, 2], eps=0.05, progress=False)
    with pytest.raises(ValueError, match="eps"):
        predict_perturbed(biased_mlp, x, COUNTS, eps=-0.1, progress=False)


def test_choose_eps_picks_best_and_breaks_ties_toward_smaller(biased_mlp):
    x, y = _toy_data([100, 100, 100], seed=6)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    best, table = choose_eps(biased_mlp, loader, COUNTS, [0.1, 0.0, 0.03], progress=False)
    assert list(table["eps"]) == [0.0, 0.03, 0.1]
    assert best == float(table["eps"][table["mcr"].idxmax()]) and best > 0
    assert table["mcr"].iloc[0] < table["mcr"].max()
    # the plain row equals sklearn's balanced accuracy of plain predictions
    from sklearn.metrics import balanced_accuracy_score
    plain = predict_perturbed(biased_mlp, x, COUNTS, eps=0.0, progress=False)
    assert table["mcr"].iloc[0] == pytest.approx(balanced_accuracy_score(y.numpy(), plain.argmax(1)))
    # a model whose output ignores the input: zero gradient, every eps ties, the smallest wins
    flat = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    nn.init.zeros_(flat[1].weight)
    best_tie, tie_table = choose_eps(flat, loader, COUNTS, [0.2, 0.05, 0.1], progress=False)
    assert best_tie == 0.05 and tie_table["mcr"].nunique() == 1
    with pytest.raises(ValueError, match="labels"):
        choose_eps(biased_mlp, x, COUNTS, [0.0, 0.1], progress=False)
