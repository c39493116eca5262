"""The trainers: the convex linear probe learns from a few labels and is deterministic; the
Adam trainer trains exactly ``epochs`` epochs unless a validation split large enough to judge
stops it early."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alscale.al.datasets import Dataset
from alscale.al.train import LinearProbe, TorchTrainer, linear_probe


def _four_classes(scale: float = 50.0, dim: int = 32, seed: int = 0) -> Dataset:
    """Four well-separated Gaussian classes in raw (unnormalized, large) feature units, as an
    npz of embeddings may hold them."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((4, dim))

    def draw(n):
        y = np.arange(n) % 4
        return ((means[y] + rng.standard_normal((n, dim))) * scale).astype(np.float32), y

    x, y = draw(200)
    xt, yt = draw(400)
    return Dataset("four", x, y, xt, yt, 4)


def _accuracy(trainer, data) -> float:
    return float(np.mean(trainer.predict("test")[0].argmax(1) == data.y_test))


@pytest.mark.parametrize("labels", [20, 30, 40])
def test_probe_learns_from_few_labels(labels):
    data = _four_classes()
    t = linear_probe()
    t.setup(data, seed=0)
    for seed in range(3):
        info = t.fit(np.arange(labels) + 40 * seed, seed=seed)
        # chance is 0.25; the Adam probe with early stopping on 2-4 validation rows got 0.6-0.8 here
        assert _accuracy(t, data) >= 0.9, (labels, seed, info)
        assert 1 <= info["epochs"] <= t.epochs and np.isnan(info["val_accuracy"])


def test_probe_is_deterministic_and_reaches_the_optimum():
    data = _four_classes(scale=1.0)
    rows = np.arange(30)
    a, b = linear_probe(), linear_probe()
    a.setup(data, seed=0)
    b.setup(data, seed=1)  # another seed: the same convex optimum from the same zero start
    a.fit(rows, seed=0)
    b.fit(rows, seed=7)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    a.fit(rows, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    # the gradient of mean cross-entropy + (|W|^2 + |b|^2) / (2 C n) vanishes at the fit (float64 check)
    x = torch.from_numpy(data.x[rows]).double()
    y = torch.from_numpy(data.y[rows])
    w = a.model.weight.detach().double().requires_grad_()
    bias = a.model.bias.detach().double().requires_grad_()
    loss = torch.nn.functional.cross_entropy(x @ w.T + bias, y) + ((w**2).sum() + (bias**2).sum()) / (2 * rows.size)
    loss.backward()
    assert float(torch.cat([w.grad.reshape(-1), bias.grad]).abs().max()) < 1e-4


def test_probe_epochs_bound_the_iterations():
    data = _four_classes(scale=1.0)
    t = linear_probe(epochs=2)
    t.setup(data, seed=0)
    assert t.fit(np.arange(40), seed=0)["epochs"] == 2
    assert t.describe() == {"model": "LinearProbe", "C": 1.0, "epochs": 2, "tolerance": 1e-5}
    strong = linear_probe(C=1e-4)
    strong.setup(data, seed=0)
    strong.fit(np.arange(40), seed=0)
    assert float(strong.model.weight.detach().abs().max()) < 0.05  # C is the inverse regularization strength


@pytest.mark.parametrize("bad,error", [(dict(C=0), ValueError), (dict(C=float("nan")), ValueError),
                                       (dict(C="1"), TypeError), (dict(tolerance=-1.0), ValueError),
                                       (dict(epochs=0), ValueError)])
def test_probe_refuses_bad_settings(bad, error):
    with pytest.raises(error, match=next(iter(bad))):
        LinearProbe(**bad)


class CountingLoader:
    """The training loader, counting the epochs (one call per epoch)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, rows, batch_size, shuffle, generator):
        self.calls += 1
        order = torch.randperm(len(rows), generator=generator) if shuffle else torch.arange(len(rows))
        rows = torch.from_numpy(np.asarray(rows))[order]
        return rows.split(batch_size)


def _adam(loader, **options):
    return TorchTrainer(lambda classes, dim: torch.nn.Linear(dim, classes), loader=loader, lr=1e-2,
                        num_threads=1, **options)


def test_epochs_is_the_number_of_epochs_without_a_usable_validation_split():
    data = _four_classes(scale=1.0)
    loader = CountingLoader()
    t = _adam(loader, epochs=7, patience=1)
    t.setup(data, seed=0)
    # 40 labels: a 10% split is 4 rows, too few to choose the epoch count: exactly 7 epochs on all rows
    info = t.fit(np.arange(40), seed=0)
    assert loader.calls == 7 and info["epochs"] == 7 and np.isnan(info["val_accuracy"])


def test_early_stopping_with_a_large_enough_validation_split():
    data = _four_classes(scale=1.0)
    loader = CountingLoader()
    t = _adam(loader, epochs=12, patience=2, min_val_rows=20)
    t.setup(data, seed=0)
    info = t.fit(np.arange(200), seed=0)  # a 20-row validation split
    assert not np.isnan(info["val_accuracy"])
    # the first run (up to 12 epochs), then the refit for the chosen count, which is what "epochs" reports
    assert info["epochs"] == info["best_epoch"] and loader.calls == info["epochs"] + min(12, loader.calls - info["epochs"])
    assert 1 <= info["epochs"] <= 12
