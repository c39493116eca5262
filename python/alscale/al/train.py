"""Training for the active-learning loop (PyTorch): a convex linear probe on fixed embeddings
(the BASE paper's ImageNet linear-evaluation regime: multinomial logistic regression fitted by
full-batch L-BFGS, as scikit-learn's LogisticRegression) and end-to-end fine-tuning of a small
CNN or any user ``nn.Module`` (the CIFAR regime), with light augmentation.

Every round starts from the same initial weights (:meth:`TorchTrainer.fit` resets them); the
CNN stops early on a validation split of the labeled rows once that split is large enough to
judge. Same seed, same labeled set → same model, on CPU (and on GPU as far as cuDNN is
deterministic).

The pool's outputs reach the strategies as a chunk source (:meth:`TorchTrainer.logits`): the
model runs batch by batch each time the selection walks the pool, so the N × C logits are never
held at once.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Optional, Union

import numpy as np

__all__ = ["LinearProbe", "MCDropoutTrainer", "MCLogits", "MLPDropout", "ModelLogits", "SigmoidProbe", "TorchTrainer",
           "class_weights", "cnn_trainer", "light_augment", "linear_probe", "mlp_dropout_trainer", "sigmoid_probe", "SmallCNN"]

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
#: Bytes of float32 logits per chunk the loop's selection walks: BASE holds about twice a
#: chunk while it scores one (measured: 256 MiB chunks add 0.5 GiB at 500K x 1000, 64 MiB 0.14).
CHUNK_BYTES = 64 << 20


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
    epochs, batch_size, lr, weight_decay : training settings (Adam). ``epochs`` is the number
        of epochs trained when there is no validation split, and their maximum with one.
    val_fraction : float
        Share of the labeled rows held out for early stopping.
    min_val_rows : int
        The smallest validation split early stopping trusts (default 20): below it (fewer than
        ``min_val_rows / val_fraction`` labeled rows) the model trains exactly ``epochs``
        epochs on all labeled rows — a split of 2 rows would pick the epoch count by chance.
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
    class_weighted : bool
        False (default): the mean cross-entropy over the labeled rows. True: each labeled class
        weighs the same — row i's cross-entropy is weighted by :func:`class_weights` (n / (K · n_c),
        K the classes with a label): the mean over the K classes of each class's mean
        cross-entropy, for class-imbalanced pools (Emam et al. 2021 train with it too).
    eval_batch_size : int
        Rows per forward pass when predicting.
    chunk_rows : int, optional
        Rows per chunk of :meth:`logits` (rounded up to whole eval batches); default: about
        64 MiB of float32 logits (``CHUNK_BYTES``).
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
    >>> pool = t.logits("pool")          # a chunk source: the selection functions take it
    >>> bool((np.concatenate(list(pool)) == t.predict("pool")[0]).all())
    True
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
        min_val_rows: int = 20,
        patience: int = 5,
        refit: bool = True,
        num_threads: Optional[int] = None,
        device: Optional[str] = None,
        eval_batch_size: int = 2048,
        chunk_rows: Optional[int] = None,
        class_weighted: bool = False,
    ) -> None:
        from .._backend.arrays import as_int

        if not isinstance(class_weighted, (bool, np.bool_)):
            raise TypeError(f"class_weighted must be True or False, got {class_weighted!r}")
        self.class_weighted = bool(class_weighted)

        self._model_arg = model
        self._head_arg = head
        self.preprocess = preprocess
        self.augment = augment
        self.loader = loader
        self.epochs = as_int(epochs, "epochs", minimum=1)
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.min_val_rows = as_int(min_val_rows, "min_val_rows", minimum=1)
        self.patience = patience
        self.refit = refit
        self.num_threads = check_num_threads(num_threads)
        self.device = check_device(device)
        self.eval_batch_size = as_int(eval_batch_size, "eval_batch_size", minimum=1)
        self.chunk_rows = None if chunk_rows is None else as_int(chunk_rows, "chunk_rows", minimum=1)
        self.model = None

    #: True for a trainer of one sigmoid per class on (N, C) 0/1 labels (:class:`SigmoidProbe`).
    multilabel = False

    # ------------------------------------------------------------------ set-up
    def setup(self, dataset, seed: int) -> None:
        """Builds the model (factories seeded with ``seed``) and records its initial weights."""
        torch = _torch()
        data_multilabel = bool(getattr(dataset, "multilabel", False))
        if data_multilabel != self.multilabel:
            raise ValueError(
                f"{type(self).__name__} trains on {'multi-label' if self.multilabel else 'single-label'} data, but "
                f"{dataset.name} is {'multi-label: use alscale.al.train.sigmoid_probe' if data_multilabel else 'single-label'}"
            )
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
            "weight_decay": self.weight_decay, "val_fraction": self.val_fraction, "min_val_rows": self.min_val_rows,
            "patience": self.patience, "refit": self.refit, "augment": getattr(self.augment, "__name__", None) if self.augment else None,
            **self._weighting(),
        }

    def _weighting(self) -> dict:
        """``{"class_weighted": True}`` when set; nothing otherwise, so that checkpoints written
        before the option existed still resume."""
        return {"class_weighted": True} if self.class_weighted else {}

    def _class_weight(self, rows: np.ndarray):
        """The cross-entropy's per-class weight tensor for labeled ``rows`` (None unweighted)."""
        if not self.class_weighted:
            return None
        torch = _torch()
        w = class_weights(self.dataset.y[rows], self.dataset.num_classes)
        return torch.from_numpy(w.astype(np.float32)).to(self.device)

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

        With a validation split of at least ``min_val_rows`` rows, early stopping watches the
        validation accuracy (ties: the lower cross-entropy); then, with ``refit``, the model is
        retrained on all rows for the best epoch count. Without one, exactly ``epochs`` epochs
        on all rows. Returns a dict: ``epochs`` the returned model was trained for,
        ``best_epoch``, ``val_accuracy`` and ``val_loss`` at the best epoch (NaN without a
        validation split).
        """
        self.reset()
        rows = np.asarray(rows, dtype=np.int64)
        rng = np.random.default_rng(seed)
        n_val = int(round(self.val_fraction * rows.size))
        if n_val < self.min_val_rows or n_val >= rows.size:
            n_val = 0
        order = rng.permutation(rows.size)
        val, train = rows[np.sort(order[:n_val])], rows[np.sort(order[n_val:])]
        train_seed = int(rng.integers(2**62))
        best, best_epoch, epoch, state = self._train(train, val, train_seed, self.epochs)
        if not n_val:
            return {"epochs": epoch, "best_epoch": epoch, "val_accuracy": float("nan"), "val_loss": float("nan")}
        if self.refit:
            # The validation split chose the epoch count; now train on every labeled row for it.
            self.reset()
            self._train(rows, val[:0], train_seed, max(1, best_epoch))
        elif state is not None:
            self.model.load_state_dict(state)
        return {"epochs": max(1, best_epoch), "best_epoch": best_epoch, "val_accuracy": best[0], "val_loss": -best[1]}

    def _train(self, train: np.ndarray, val: np.ndarray, seed: int, epochs: int):
        """Up to ``epochs`` epochs on ``train``, early stopping on ``val`` (if any): returns
        ((val accuracy, -val loss) at the best epoch, best epoch, epochs run, its weights).
        torch's global generator (dropout's) is seeded from ``seed`` for the call and restored
        after, so a model with dropout trains the same whatever ran before."""
        torch = _torch()
        devices = [torch.device(self.device).index or 0] if str(self.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self._train_seeded(train, val, seed, epochs)

    def _train_seeded(self, train: np.ndarray, val: np.ndarray, seed: int, epochs: int):
        torch = _torch()
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss(weight=self._class_weight(train))
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
            logits, _ = self._outputs(self.dataset.x, val)
            loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(y_all[val])))
            acc = float(np.mean(logits.argmax(1) == y_all[val]))
            if (acc, -loss) > best:  # higher accuracy; at equal accuracy, lower loss
                best, best_epoch, best_state = (acc, -loss), epoch, copy.deepcopy(self.model.state_dict())
            elif epoch - best_epoch >= self.patience:
                break
        return best, best_epoch, epoch, best_state

    # ------------------------------------------------------------------ inference
    def _outputs(self, source: np.ndarray, rows: Any, *, logits: bool = True, embeddings: bool = False,
                 dropout: bool = False):
        """(logits (n, C) float32 or None, embeddings (n, D) float32 or None) of the model on
        ``source[rows]`` (``rows``: an index array, a slice, or None for every row), in forward
        passes of ``eval_batch_size`` rows; with ``dropout``, the dropout layers stay active
        (one MC-dropout sample)."""
        torch = _torch()
        if rows is None:
            rows = slice(0, source.shape[0])
        if isinstance(rows, slice):
            first, stop, _ = rows.indices(source.shape[0])
            n = max(0, stop - first)

            def batch(s: int, e: int) -> np.ndarray:
                return source[first + s : first + e]
        else:
            rows = np.asarray(rows, dtype=np.int64)
            n = rows.size

            def batch(s: int, e: int) -> np.ndarray:
                return source[rows[s:e]]
        out = np.empty((n, self.dataset.num_classes), dtype=np.float32) if logits else None
        emb = None
        captured = {}
        hook = None
        if embeddings:
            hook = self.head.register_forward_hook(lambda m, inp, o: captured.__setitem__("z", inp[0]))
        self.model.eval()
        if dropout:
            for m in _dropout_layers(self.model):
                m.train()
        try:
            with torch.no_grad():
                for s in range(0, n, self.eval_batch_size):
                    e = min(n, s + self.eval_batch_size)
                    y = self.model(self.preprocess(batch(s, e)).to(self.device))
                    if logits:
                        out[s:e] = y.float().cpu().numpy()
                    if embeddings:
                        z = captured["z"].float().cpu().numpy()
                        if emb is None:
                            emb = np.empty((n, z.shape[1]), dtype=np.float32)
                        emb[s:e] = z
        finally:
            if hook is not None:
                hook.remove()
            if dropout:
                self.model.eval()
        return out, emb

    def _source(self, split: str) -> np.ndarray:
        try:
            return {"pool": self.dataset.x, "test": self.dataset.x_test}[split]
        except KeyError:
            raise ValueError(f"split must be 'pool' or 'test', got {split!r}") from None

    def predict(self, split: str = "pool", *, embeddings: bool = False, rows: Optional[np.ndarray] = None,
                logits: bool = True):
        """(logits (N, C) float32 or None, embeddings (N, D) float32 or None) on ``"pool"`` or
        ``"test"`` (only ``rows`` of it when given), computed in batches of ``eval_batch_size``
        and held in memory whole: for the pool's logits prefer :meth:`logits`."""
        source = self._source(split)
        with self._threads():
            return self._outputs(source, rows, logits=logits, embeddings=embeddings)

    def logits(self, split: str = "pool", *, rows: Optional[np.ndarray] = None) -> "ModelLogits":
        """The model's logits on ``split`` (``rows`` of it when given) as a re-iterable chunk
        source (:class:`ModelLogits`): each walk runs the model again, chunk by chunk, so
        memory holds one chunk, never the N × C matrix."""
        return ModelLogits(self, split, rows)

    def mc_logits(self, split: str = "pool", samples: int = 20, *, seed: int = 0,
                  rows: Optional[np.ndarray] = None) -> "MCLogits":
        """``samples`` MC-dropout samples of the model's logits on ``split`` as a re-iterable
        over T of (N, C) float32 arrays (:class:`MCLogits`): what :func:`alscale.bald_scores`
        and the other Bayesian functions take, one sample in memory at a time."""
        return MCLogits(self, split, samples, seed, rows)

    def state_dict(self) -> dict:
        """The trained model's parameters (what sharded runs send from rank 0 to the others)."""
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def head_weight(self) -> np.ndarray:
        """The head's weight (C, D) as float64 numpy."""
        return self.head.weight.detach().cpu().double().numpy()


class ModelLogits:
    """A trained model's logits on the rows of a split, computed chunk by chunk every time it
    is iterated: a re-iterable chunk source that alscale's selection functions accept (memory:
    one chunk of float32 logits, never N × C).

    Each chunk holds whole forward passes of ``eval_batch_size`` rows, so its rows are bit for
    bit those of :meth:`TorchTrainer.predict` over the same rows. A selection may walk the pool
    more than once (BASE does when its bounded per-class candidates run out); a pool whose
    logits fit in ``CHUNK_BYTES`` is kept after the first walk, a larger one is computed again.
    The model's weights of the first walk are used: take a new source after training.
    """

    def __init__(self, trainer: TorchTrainer, split: str, rows: Optional[np.ndarray] = None) -> None:
        self.trainer = trainer
        self.source = trainer._source(split)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.num_classes = int(trainer.dataset.num_classes)
        batch = trainer.eval_batch_size
        wanted = trainer.chunk_rows or max(1, CHUNK_BYTES // (4 * self.num_classes))
        self.chunk_rows = batch * max(1, -(-wanted // batch))  # whole eval batches
        self._kept: Optional[list] = None  # the first walk's chunks, when they fit in CHUNK_BYTES

    def __len__(self) -> int:
        return int(self.source.shape[0] if self.rows is None else self.rows.size)

    def __iter__(self):
        if self._kept is not None:
            yield from self._kept
            return
        n = len(self)
        keep = [] if 4 * n * self.num_classes <= CHUNK_BYTES else None
        for s in range(0, n, self.chunk_rows):
            part = slice(s, min(n, s + self.chunk_rows)) if self.rows is None else self.rows[s : s + self.chunk_rows]
            with self.trainer._threads():
                logits, _ = self.trainer._outputs(self.source, part)
            if keep is not None:
                keep.append(logits)
            yield logits
        self._kept = keep


def _dropout_layers(model) -> list:
    nn = _torch().nn
    kinds = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
    return [m for m in model.modules() if isinstance(m, kinds) and m.p > 0]


class MCLogits:
    """T Monte-Carlo-dropout samples of a trained model's logits on a split: a re-iterable over
    T whose t-th item is the (N, C) float32 logits of one forward pass of every row with the
    dropout layers active, computed chunk by chunk (memory: one sample, never T x N x C).

    Sample t is drawn under ``torch.manual_seed`` of a value derived from (``seed``, t), so every
    walk yields the same samples and a run is reproducible. A model without dropout
    (``stochastic`` False) gives one sample, its deterministic logits.
    """

    def __init__(self, trainer: TorchTrainer, split: str, samples: int, seed: int,
                 rows: Optional[np.ndarray] = None) -> None:
        from .._backend.arrays import as_int

        self.trainer = trainer
        self.source = trainer._source(split)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.stochastic = bool(_dropout_layers(trainer.model))
        self.samples = as_int(samples, "mc_samples", minimum=1) if self.stochastic else 1
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.samples

    def __iter__(self):
        torch = _torch()
        n = int(self.source.shape[0] if self.rows is None else self.rows.size)
        classes, batch = self.trainer.dataset.num_classes, self.trainer.eval_batch_size
        step = batch * max(1, -(-(self.trainer.chunk_rows or max(1, CHUNK_BYTES // (4 * classes))) // batch))
        cuda = str(self.trainer.device).startswith("cuda")
        devices = [torch.device(self.trainer.device).index or 0] if cuda else []
        for t in range(self.samples):
            out = np.empty((n, classes), dtype=np.float32)
            with torch.random.fork_rng(devices=devices), self.trainer._threads():
                torch.manual_seed(int(np.random.SeedSequence([self.seed, t]).generate_state(1)[0]))
                for s in range(0, n, step):
                    part = slice(s, min(n, s + step)) if self.rows is None else self.rows[s : s + step]
                    out[s : s + step] = self.trainer._outputs(self.source, part, dropout=self.stochastic)[0]
            yield out


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


def _linear(classes: int, dim: int):
    return _torch().nn.Linear(dim, classes)


class LinearProbe(TorchTrainer):
    """Multinomial logistic regression on fixed features (a linear head, ``nn.Linear``), fitted
    by full-batch L-BFGS to the minimum of the convex objective

        mean over the n labeled rows of cross-entropy(W z + b, y)  +  (‖W‖² + ‖b‖²) / (2 · C · n)

    — scikit-learn's ``LogisticRegression(C=C)`` objective divided by n, except that the bias is
    penalized too, so that a class with no label yet gets a finite bias. Every fit starts from
    zero weights and runs until the largest gradient entry is below ``tolerance`` (or the loss
    stops changing), at most ``epochs`` L-BFGS iterations (each one or a few passes over the
    labeled rows). Strictly convex: no validation split, no early stopping, and the same labeled
    rows give the same model whatever the seed.

    Parameters
    ----------
    C : float
        Inverse regularization strength, as scikit-learn's (default 1.0).
    epochs : int
        The most L-BFGS iterations per fit (default 200).
    tolerance : float
        Gradient tolerance (default 1e-5).
    **options
        ``device``, ``num_threads`` (default 1), ``preprocess``, ``eval_batch_size``,
        ``chunk_rows``: as :class:`TorchTrainer`.
    """

    def __init__(self, *, C: float = 1.0, epochs: int = 200, tolerance: float = 1e-5, num_threads: Optional[int] = 1,
                 **options: Any) -> None:
        super().__init__(_linear, epochs=epochs, num_threads=num_threads, **options)
        self.C = _positive_float(C, "C")
        self.tolerance = _positive_float(tolerance, "tolerance")

    def describe(self) -> dict:
        return {"model": "LinearProbe", "C": self.C, "epochs": self.epochs, "tolerance": self.tolerance,
                **self._weighting()}

    def _fit(self, rows: np.ndarray, seed: int) -> dict:
        torch = _torch()
        rows = np.asarray(rows, dtype=np.int64)
        x = self.preprocess(self.dataset.x[rows]).to(self.device)
        y = torch.from_numpy(self.dataset.y[rows]).to(self.device)
        weight = self._class_weight(rows)
        return self._minimize(lambda: torch.nn.functional.cross_entropy(self.model(x), y, weight=weight), rows.size)

    def _minimize(self, data_loss: Callable[[], Any], n: int) -> dict:
        """Fits the model from zero weights by L-BFGS on ``data_loss() + ||params||² / (2 C n)``
        (strong Wolfe line search; at most ``epochs`` iterations); the fit's record."""
        torch = _torch()
        params = [p for p in self.model.parameters()]
        with torch.no_grad():
            for p in params:
                p.zero_()
        penalty = 0.5 / (self.C * max(1, n))
        # max_eval: room for the line searches, so that ``epochs`` bounds the iterations
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.epochs, max_eval=3 * self.epochs + 5,
                                tolerance_grad=self.tolerance, history_size=20, line_search_fn="strong_wolfe")

        def objective():
            opt.zero_grad(set_to_none=True)
            loss = data_loss() + penalty * sum(p.square().sum() for p in params)
            loss.backward()
            return loss

        self.model.train()
        opt.step(objective)
        iterations = int(opt.state[params[0]].get("n_iter", 0))
        return {"epochs": iterations, "best_epoch": iterations, "val_accuracy": float("nan"), "val_loss": float("nan")}


class SigmoidProbe(LinearProbe):
    """One logistic regression per class on fixed features — a linear head of C sigmoids for
    multi-label data (labels an (N, C) 0/1 matrix) — fitted, as :class:`LinearProbe`, by
    full-batch L-BFGS from zero weights to the minimum of the convex objective

        (1/n) Σ_rows Σ_classes BCE(w_c · z + b_c, y_c)  +  (‖W‖² + ‖b‖²) / (2 · C · n)

    which is the sum over the classes of C independent objectives, each scikit-learn's
    ``LogisticRegression(C=C)`` for that class (its intercept penalized too) divided by n, so
    the joint minimum is every class's own. ``C`` and ``tolerance`` (on the largest gradient
    entry) as :class:`LinearProbe`; ``epochs``, the most L-BFGS iterations, is 1000 by default:
    on the 784 pixels of Fashion-MNIST mosaics 200 iterations leave the largest gradient entry
    at ~5e-3 (loss 2 % above its minimum at 6,000 rows), while the fit stops by itself, the
    loss no longer changing in float32 (largest gradient entry ~1e-4), after 400–850. Its
    logits are the C per-class log-odds: the multi-label strategies (``multilabel=True``) read
    them as independent sigmoids.

    Examples
    --------
    >>> import numpy as np
    >>> from alscale.al.datasets import Dataset
    >>> from alscale.al.train import sigmoid_probe
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)).astype(np.float32)
    >>> y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.uint8)
    >>> data = Dataset("toy", x, y, x, y, 2)
    >>> t = sigmoid_probe()
    >>> t.setup(data, seed=0)
    >>> info = t.fit(np.arange(200), seed=0)
    >>> bool(((t.predict("test")[0] > 0) == y).mean() > 0.95)
    True
    """

    multilabel = True

    def __init__(self, *, epochs: int = 1000, **options: Any) -> None:
        if options.get("class_weighted"):
            raise ValueError("class_weighted is for single-label data (one softmax); the sigmoid probe of "
                             "multi-label data has no class-weighted loss")
        super().__init__(epochs=epochs, **options)

    def describe(self) -> dict:
        return {**super().describe(), "model": "SigmoidProbe"}

    def _fit(self, rows: np.ndarray, seed: int) -> dict:
        torch = _torch()
        rows = np.asarray(rows, dtype=np.int64)
        x = self.preprocess(self.dataset.x[rows]).to(self.device)
        y = torch.from_numpy(np.asarray(self.dataset.y[rows], dtype=np.float32)).to(self.device)
        n = max(1, rows.size)
        return self._minimize(
            lambda: torch.nn.functional.binary_cross_entropy_with_logits(self.model(x), y, reduction="sum") / n, n)


def sigmoid_probe(**options: Any) -> SigmoidProbe:
    """A :class:`SigmoidProbe`: one logistic regression per class (sigmoid, BCE) on fixed
    features for multi-label data, full-batch L-BFGS to convergence (at most 1000 iterations),
    C = 1, one torch thread."""
    return SigmoidProbe(**options)


def class_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """The weight of each class in the class-weighted cross-entropy (``class_weighted=True``):
    ``n / (K · n_c)`` for a class with n_c of the n labels, K the number of classes with a label,
    0 for a class without one (float64, shape (num_classes,)). With torch's weighted mean (the
    weights of the rows' classes sum to n) the loss is the mean over the K classes of each
    class's mean cross-entropy; on balanced labels every weight is 1.

    >>> class_weights(np.array([0, 0, 0, 1]), 3).tolist()
    [0.6666666666666666, 2.0, 0.0]
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    out = np.zeros(num_classes, dtype=np.float64)
    out[present] = counts.sum() / (present.sum() * counts[present])
    return out


def _positive_float(value: Any, name: str) -> float:
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def linear_probe(**options: Any) -> LinearProbe:
    """A :class:`LinearProbe`: logistic regression on fixed embeddings (flattened, normalized
    pixels for image data), full-batch L-BFGS to convergence, C = 1, one torch thread."""
    return LinearProbe(**options)


def MLPDropout(num_classes: int, dim: int, hidden: int = 128, p: float = 0.5):
    """A two-hidden-layer MLP with dropout (p = 0.5) after each hidden layer, for MC dropout
    (Gal & Ghahramani 2016): Linear(dim, hidden) ReLU Dropout Linear(hidden, hidden) ReLU Dropout
    Linear(hidden, num_classes); the last layer is the head."""
    nn = _torch().nn
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(p),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(p),
        nn.Linear(hidden, num_classes),
    )


class MCDropoutTrainer(TorchTrainer):
    """A :class:`TorchTrainer` whose strategies get ``mc_samples`` MC-dropout samples of the
    pool's logits (:meth:`TorchTrainer.mc_logits`): BALD, BatchBALD, PowerBALD, power margin
    and power entropy. ``mc_samples`` is recorded in the loop's checkpoints."""

    def __init__(self, model: Any, *, mc_samples: int = 20, **options: Any) -> None:
        from .._backend.arrays import as_int

        super().__init__(model, **options)
        self.mc_samples = as_int(mc_samples, "mc_samples", minimum=1)

    def describe(self) -> dict:
        return {**super().describe(), "mc_samples": self.mc_samples}


def mlp_dropout_trainer(**options: Any) -> MCDropoutTrainer:
    """:func:`MLPDropout` on the flattened, normalized pixels (or the features), trained end to end:
    Adam lr 1e-3, weight decay 5e-4, batch 64, up to 50 epochs with early stopping (patience 5)
    and a refit, as :func:`cnn_trainer`; ``mc_samples`` (default 20) MC-dropout samples of the
    pool's logits per selection."""
    settings = dict(epochs=50, batch_size=64, lr=1e-3, weight_decay=5e-4, patience=5)
    settings.update(options)
    return MCDropoutTrainer(MLPDropout, **settings)


def cnn_trainer(**options: Any) -> TorchTrainer:
    """:func:`SmallCNN` fine-tuned end to end with :func:`light_augment`: Adam lr 1e-3, batch 64,
    30 epochs, or up to 30 with early stopping once 10% of the labeled rows make a validation
    split of at least 20 rows (``min_val_rows``)."""
    settings = dict(epochs=30, batch_size=64, lr=1e-3, weight_decay=5e-4, patience=5, augment=light_augment)
    settings.update(options)
    return TorchTrainer(lambda classes, dim: SmallCNN(classes), **settings)
