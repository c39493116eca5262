"""Training for the active-learning loop (PyTorch): a linear probe on fixed embeddings (the
BASE paper's ImageNet linear-evaluation regime) and end-to-end fine-tuning of a small CNN or any
user ``nn.Module`` (the CIFAR regime), with light augmentation.

Every round starts from the same initial weights (:meth:`TorchTrainer.fit` resets them) and
stops early on a validation split of the labeled rows. Same seed, same labeled set → same
model, on CPU (and on GPU as far as cuDNN is deterministic).
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Optional, Union

import numpy as np

__all__ = ["TorchTrainer", "cnn_trainer", "light_augment", "linear_probe", "SmallCNN"]

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def max_threads() -> int:
    """The most torch CPU threads a trainer accepts: 4 x the cores (at least 16). Far larger
    counts make torch/OpenMP abort or crash while spawning threads."""
    return max(16, 4 * (os.cpu_count() or 1))


def check_num_threads(num_threads: Any, name: str = "num_threads") -> Optional[int]:
    """None or 0 (keep torch's setting), or 1 .. :func:`max_threads`."""
    if num_threads is None:
        return None
    from .._backend.arrays import as_int

    n = as_int(num_threads, name)
    if n > max_threads():
        raise ValueError(f"{name} must be at most {max_threads()} (4 x the {os.cpu_count()} cores), got {n}")
    return n


def check_device(device: Any) -> Optional[str]:
    """None (cuda when available, else cpu) or a torch device this machine has; anything else
    is a ValueError naming it."""
    if device is None:
        return None
    torch = _torch()
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device (use cpu, cuda, cuda:N, ...): {err}") from None
    if dev.type == "meta":
        raise ValueError(f"device {device!r} holds no data: use cpu or cuda")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: no CUDA GPU is available (torch.cuda.is_available() is False)")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except Exception as err:  # noqa: BLE001 - any backend's "not available" error
            raise ValueError(f"device {device!r} is not available: {err}") from None
    return device


def _torch():
    import torch

    return torch


def image_input(batch: np.ndarray):
    """uint8 images (B, H, W) -> normalized float32 tensor (B, 1, H, W)."""
    torch = _torch()
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(torch.float32).div_(255.0)
    return x.sub_(FASHION_MEAN).div_(FASHION_STD).unsqueeze(1)


def flat_input(batch: np.ndarray):
    """Images (B, H, W) flattened and normalized, or features (B, D) as float32."""
    torch = _torch()
    if batch.ndim == 3:
        x = torch.from_numpy(np.ascontiguousarray(batch.reshape(batch.shape[0], -1))).to(torch.float32)
        return x.div_(255.0).sub_(FASHION_MEAN).div_(FASHION_STD)
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))


def light_augment(x, generator):
    """Random horizontal flip and a random shift of up to 2 pixels (zero padding), per image.

    ``x``: (B, C, H, W) float tensor; ``generator``: a torch.Generator (deterministic).
    """
    torch = _torch()
    b, c, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2))
    dy = torch.randint(0, 5, (b,), generator=generator)
    dx = torch.randint(0, 5, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return pad[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def SmallCNN(num_classes: int = 10, channels: int = 1, width: int = 16, embedding: int = 64):
    """A small CNN for 28x28 images: two conv blocks, a ``embedding``-wide penultimate layer and
    a linear head (``model[-1]``)."""
    nn = _torch().nn
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, embedding), nn.ReLU(),
        nn.Linear(embedding, num_classes),
    )


class TorchTrainer:
    """Trains a torch model on the labeled rows of a :class:`~alscale.al.datasets.Dataset`.

    Parameters
    ----------
    model : nn.Module or callable (num_classes, input_dim) -> nn.Module
        A module is used as given (its current weights are the initial weights); a factory is
        called in :meth:`setup` under ``torch.manual_seed(seed)``.
    head : nn.Module, optional
        The final ``nn.Linear`` whose input is the embedding and whose weight BASE/MASE read;
        default: the model's last ``nn.Linear``.
    preprocess : callable numpy batch -> float tensor, optional
        Default: :func:`image_input` for images, :func:`flat_input` for features.
    augment : callable (tensor, torch.Generator) -> tensor, optional
        Training-time augmentation (e.g. :func:`light_augment`).
    loader : callable (indices, batch_size, shuffle, generator) -> iterable of index tensors, optional
        Builds the DataLoader over labeled row indices; default a ``torch.utils.data.DataLoader``.
    epochs, batch_size, lr, weight_decay : training settings (Adam).
    val_fraction : float
        Share of the labeled rows held out for early stopping (none below 10 labeled rows).
    patience : int
        Epochs without a better validation accuracy (or, at equal accuracy, a lower loss)
        before stopping.
    refit : bool
        True (default): once early stopping has chosen the epoch count, train again from the
        initial weights on all labeled rows (validation split included) for that many epochs
        — small labeled sets cannot spare 10% of their rows. False: keep the best epoch's
        weights of the run on the training split.
    device : str, optional
        "cpu", "cuda", ...; default cuda when available.
    num_threads : int, optional
        torch CPU threads while training and predicting (restored afterwards), at most
        :func:`max_threads`; None (or 0) keeps torch's setting. Small models are fastest on 1 (and do not collapse when other
        processes share the cores).

    Examples
    --------
    >>> from alscale.al.datasets import make_synthetic
    >>> from alscale.al.train import linear_probe
    >>> data = make_synthetic(300, 4, 3, imbalance=1, seed=0)
    >>> t = linear_probe(epochs=20)
    >>> t.setup(data, seed=0)
    >>> info = t.fit(np.arange(60), seed=0)
    >>> logits, emb = t.predict("test", embeddings=True)
    >>> logits.shape, emb.shape, t.head_weight().shape
    ((60, 3), (60, 4), (3, 4))
    """

    def __init__(
        self,
        model: Union[Any, Callable[..., Any]],
        *,
        head: Any = None,
        preprocess: Optional[Callable] = None,
        augment: Optional[Callable] = None,
        loader: Optional[Callable] = None,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        val_fraction: float = 0.1,
        patience: int = 5,
        refit: bool = True,
        num_threads: Optional[int] = None,
        device: Optional[str] = None,
        eval_batch_size: int = 2048,
    ) -> None:
        self._model_arg = model
        self._head_arg = head
        self.preprocess = preprocess
        self.augment = augment
        self.loader = loader
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.refit = refit
        self.num_threads = check_num_threads(num_threads)
        self.device = check_device(device)
        self.eval_batch_size = eval_batch_size
        self.model = None

    # ------------------------------------------------------------------ set-up
    def setup(self, dataset, seed: int) -> None:
        """Builds the model (factories seeded with ``seed``) and records its initial weights."""
        torch = _torch()
        self.dataset = dataset
        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if isinstance(self._model_arg, torch.nn.Module):
            model = self._model_arg
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                dim = int(np.prod(dataset.x.shape[1:]))
                model = self._model_arg(dataset.num_classes, dim)
        self.model = model.to(self.device)
        self.head = self._head_arg or [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        if self.preprocess is None:
            self.preprocess = image_input if (dataset.is_image and not _is_flat(self.model)) else flat_input
        self.initial_state = copy.deepcopy(self.model.state_dict())

    def describe(self) -> dict:
        """The settings that shape training (recorded in loop checkpoints, checked on resume)."""
        m = self._model_arg
        return {
            "model": type(m).__name__ if hasattr(m, "state_dict") else getattr(m, "__qualname__", type(m).__name__),
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "weight_decay": self.weight_decay, "val_fraction": self.val_fraction, "patience": self.patience,
            "refit": self.refit, "augment": getattr(self.augment, "__name__", None) if self.augment else None,
        }

    def reset(self) -> None:
        """Back to the initial weights."""
        self.model.load_state_dict(self.initial_state)

    # ------------------------------------------------------------------ training
    def _loader(self, rows: np.ndarray, shuffle: bool, generator):
        torch = _torch()
        if self.loader is not None:
            return self.loader(rows, self.batch_size, shuffle, generator)
        ds = torch.utils.data.TensorDataset(torch.from_numpy(np.asarray(rows, dtype=np.int64)))
        return (b[0] for b in torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle,
                                                          generator=generator))

    def _threads(self):
        return _Threads(self.num_threads)

    def fit(self, rows: np.ndarray, seed: int) -> dict:
        with self._threads():
            return self._fit(rows, seed)

    def _fit(self, rows: np.ndarray, seed: int) -> dict:
        """Trains from the initial weights on pool rows ``rows`` (labels from the dataset).

        Early stopping watches the validation accuracy (ties: the lower cross-entropy); then,
        with ``refit``, the model is retrained on all rows for the best epoch count. Returns a
        dict: ``epochs`` run, ``best_epoch``, ``val_accuracy`` and ``val_loss`` at the best epoch
        (NaN without a validation split).
        """
        torch = _torch()
        self.reset()
        rows = np.asarray(rows, dtype=np.int64)
        rng = np.random.default_rng(seed)
        n_val = int(round(self.val_fraction * rows.size)) if rows.size >= 10 else 0
        order = rng.permutation(rows.size)
        val, train = rows[np.sort(order[:n_val])], rows[np.sort(order[n_val:])]
        train_seed = int(rng.integers(2**62))
        best, best_epoch, epoch, state = self._train(train, val, train_seed, self.epochs)
        if n_val and self.refit:
            # The validation split chose the epoch count; now train on every labeled row for it.
            self.reset()
            self._train(rows, val[:0], train_seed, max(1, best_epoch))
        elif state is not None:
            self.model.load_state_dict(state)
        return {"epochs": epoch, "best_epoch": best_epoch if n_val else epoch,
                "val_accuracy": best[0] if n_val else float("nan"), "val_loss": -best[1] if n_val else float("nan")}

    def _train(self, train: np.ndarray, val: np.ndarray, seed: int, epochs: int):
        """Up to ``epochs`` epochs on ``train``, early stopping on ``val`` (if any): returns
        ((val accuracy, -val loss) at the best epoch, best epoch, epochs run, its weights)."""
        torch = _torch()
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        y_all = self.dataset.y
        best, best_epoch, best_state, epoch = (-1.0, -float("inf")), 0, None, 0
        for epoch in range(1, epochs + 1):
            self.model.train()
            for idx in self._loader(train, True, g):
                idx = idx.numpy()
                x = self.preprocess(self.dataset.x[idx])
                if self.augment is not None:
                    x = self.augment(x, g)
                y = torch.from_numpy(y_all[idx]).to(self.device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.model(x.to(self.device)), y)
                loss.backward()
                opt.step()
            if val.size == 0:
                continue
            logits, _ = self._outputs(self.dataset.x, val, embeddings=False)
            loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(y_all[val])))
            acc = float(np.mean(logits.argmax(1) == y_all[val]))
            if (acc, -loss) > best:  # higher accuracy; at equal accuracy, lower loss
                best, best_epoch, best_state = (acc, -loss), epoch, copy.deepcopy(self.model.state_dict())
            elif epoch - best_epoch >= self.patience:
                break
        return best, best_epoch, epoch, best_state

    # ------------------------------------------------------------------ inference
    def _outputs(self, source: np.ndarray, rows: Optional[np.ndarray], embeddings: bool):
        torch = _torch()
        n = source.shape[0] if rows is None else rows.size
        logits = np.empty((n, self.dataset.num_classes), dtype=np.float32)
        emb = None
        captured = {}
        hook = None
        if embeddings:
            hook = self.head.register_forward_hook(lambda m, inp, out: captured.__setitem__("z", inp[0]))
        self.model.eval()
        try:
            with torch.no_grad():
                for s in range(0, n, self.eval_batch_size):
                    sel = slice(s, min(n, s + self.eval_batch_size))
                    batch = source[sel] if rows is None else source[rows[sel]]
                    out = self.model(self.preprocess(batch).to(self.device))
                    logits[sel] = out.float().cpu().numpy()
                    if embeddings:
                        z = captured["z"].float().cpu().numpy()
                        if emb is None:
                            emb = np.empty((n, z.shape[1]), dtype=np.float32)
                        emb[sel] = z
        finally:
            if hook is not None:
                hook.remove()
        return logits, emb

    def predict(self, split: str = "pool", *, embeddings: bool = False, rows: Optional[np.ndarray] = None):
        """(logits (N, C) float32, embeddings (N, D) float32 or None) on ``"pool"`` or ``"test"``,
        computed in batches of ``eval_batch_size``."""
        source = {"pool": self.dataset.x, "test": self.dataset.x_test}[split]
        with self._threads():
            return self._outputs(source, rows, embeddings)

    def state_dict(self) -> dict:
        """The trained model's parameters (what sharded runs send from rank 0 to the others)."""
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def head_weight(self) -> np.ndarray:
        """The head's weight (C, D) as float64 numpy."""
        return self.head.weight.detach().cpu().double().numpy()


class _Threads:
    """Sets torch's CPU thread count for a block and restores it."""

    def __init__(self, n: Optional[int]) -> None:
        self.n, self.saved = n, None

    def __enter__(self):
        if self.n:
            torch = _torch()
            self.saved = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            _torch().set_num_threads(self.saved)
        return False


def _is_flat(model) -> bool:
    torch = _torch()
    first = next((m for m in model.modules() if not isinstance(m, torch.nn.Sequential)), None)
    return isinstance(first, torch.nn.Linear)


def linear_probe(**options: Any) -> TorchTrainer:
    """A linear head on fixed embeddings (flattened, normalized pixels for image data): Adam,
    lr 3e-3, weight decay 1e-4, batch 256, up to 100 epochs with early stopping (patience 20)
    and a refit on all labeled rows; one torch thread (tiny matrix products)."""
    torch = _torch()
    settings = dict(epochs=100, batch_size=256, lr=3e-3, weight_decay=1e-4, patience=20, num_threads=1)
    settings.update(options)
    return TorchTrainer(lambda classes, dim: torch.nn.Linear(dim, classes), **settings)


def cnn_trainer(**options: Any) -> TorchTrainer:
    """:func:`SmallCNN` fine-tuned end to end with :func:`light_augment`: Adam lr 1e-3, batch 64,
    up to 30 epochs with early stopping."""
    settings = dict(epochs=30, batch_size=64, lr=1e-3, weight_decay=5e-4, patience=5, augment=light_augment)
    settings.update(options)
    return TorchTrainer(lambda classes, dim: SmallCNN(classes), **settings)
