"""Epoch index samplers over a labelled training set, deterministic per (seed, epoch).

Every sampler is a ``torch.utils.data.Sampler`` built from the training labels (int, (N,)) and
yielding dataset positions in ``range(N)``. Each epoch draws from a ``torch.Generator`` seeded from
``(seed, epoch)`` only, so the same (seed, epoch) always gives the same indices, different epochs give
different ones, and resuming at an epoch reproduces it. Call ``.set_epoch(e)`` before each epoch.
``num_samples`` (indices per epoch) defaults to N.

Per-class sampling (Balanced-MixUp Eq. 2): class j is drawn with probability ``p_j = n_j^q / Σ_k n_k^q``,
then a sample of class j uniformly (with replacement):

- :class:`InstanceSampler`: a random permutation (each sample once per epoch; the q = 1 case without
  replacement),
- :class:`PowerSampler` (q), :class:`ClassBalancedSampler` (q = 0, "RS"), :class:`SquareRootSampler`
  (q = 1/2),
- :class:`DeferredSampler`: DRS, instance sampling before ``defer_epoch``, class-balanced from then on.

:class:`ClassAwareBatchSampler` is a batch sampler (yields lists of indices) with the same number of
items from each of the chosen classes in every batch (contrastive "balance" batches, triplet mining).

:func:`build_sampler` builds the epoch samplers by name; :func:`shard` splits one epoch's indices
across DDP ranks.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "InstanceSampler",
    "PowerSampler",
    "ClassBalancedSampler",
    "SquareRootSampler",
    "DeferredSampler",
    "ClassAwareBatchSampler",
    "OversampleSampler",
    "build_sampler",
    "shard",
    "SAMPLERS",
]


def _labels_array(labels, where: str) -> np.ndarray:
    arr = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{where}: labels must be a non-empty 1-D sequence of class indices, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels must be integers, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0, got minimum {arr.min()}")
    return arr.astype(np.int64)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, epoch)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, 0x5A11]).generate_state(2)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


class _EpochSampler(Sampler[int]):
    """Labels, seed, epoch and sample count shared by all epoch samplers."""

    def __init__(self, labels, seed: int = 0, num_samples: int | None = None):
        name = type(self).__name__
        self.labels = _labels_array(labels, name)
        self.seed = int(seed)
        self.epoch = 0
        n = len(self.labels) if num_samples is None else int(num_samples)
        if n < 1:
            raise ValueError(f"{name}: num_samples must be >= 1, got {num_samples}")
        self.num_samples = n
        self.class_counts = np.bincount(self.labels)
        # positions of each class, grouped: class c occupies _by_class[_starts[c]:_starts[c]+counts[c]]
        self._by_class = torch.from_numpy(np.argsort(self.labels, kind="stable"))
        self._starts = torch.from_numpy(np.concatenate([[0], np.cumsum(self.class_counts)[:-1]]))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose indices the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def _generator(self) -> torch.Generator:
        return _epoch_generator(self.seed, self.epoch)

    def _permutation(self, g: torch.Generator) -> torch.Tensor:
        n = len(self.labels)
        reps = -(-self.num_samples // n)
        return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[: self.num_samples]

    def _by_class_probs(self, probs: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Draw num_samples classes ~ probs, then one sample uniformly within each drawn class."""
        cls = torch.multinomial(probs, self.num_samples, replacement=True, generator=g)
        counts = torch.from_numpy(self.class_counts)[cls]
        offset = (torch.rand(self.num_samples, generator=g, dtype=torch.float64) * counts).long()
        offset = torch.minimum(offset, counts - 1)
        return self._by_class[self._starts[cls] + offset]


def _power_probs(class_counts: np.ndarray, q: float) -> np.ndarray:
    """Eq. 2 of Balanced-MixUp: p_j ∝ n_j^q over the classes present (absent classes get 0)."""
    present = class_counts > 0
    p = np.zeros(len(class_counts), dtype=np.float64)
    p[present] = class_counts[present].astype(np.float64) ** q
    return p / p.sum()


class InstanceSampler(_EpochSampler):
    """Instance-based sampling: a random permutation of range(N) per epoch.

    With num_samples > N, further permutations are appended; with fewer, the permutation is cut.
    """

    def __iter__(self) -> Iterator[int]:
        return iter(self._permutation(self._generator()).tolist())


class PowerSampler(_EpochSampler):
    """Class j with probability ``n_j^q / Σ_k n_k^q`` (Balanced-MixUp Eq. 2), then a uniform sample of it.

    q = 1 instance-like (with replacement), q = 0 class-balanced, q = 1/2 square-root sampling.
    ``class_probabilities`` (numpy (C,)) holds p_j (C = max label + 1; absent classes get 0).
    """

    def __init__(self, labels, q: float = 0.5, seed: int = 0, num_samples: int | None = None):
        super().__init__(labels, seed=seed, num_samples=num_samples)
        if not np.isfinite(q):
            raise ValueError(f"{type(self).__name__}: q must be a finite number, got {q}")
        self.q = float(q)
        self.class_probabilities = _power_probs(self.class_counts, self.q)
        self._probs = torch.from_numpy(self.class_probabilities)

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_class_probs(self._probs, self._generator()).tolist())


class ClassBalancedSampler(PowerSampler):
    """Class-balanced re-sampling (RS): a class uniformly at random, then a sample of it (q = 0)."""

    def __init__(self, labels, seed: int = 0, num_samples: int | None = None):
        super().__init__(labels, q=0.0, seed=seed, num_samples=num_samples)


class SquareRootSampler(PowerSampler):
    """Square-root sampling: P(class j) ∝ sqrt(n_j) (q = 1/2)."""

    def __init__(self, labels, seed: int = 0, num_samples: int | None = None):
        super().__init__(labels, q=0.5, seed=seed, num_samples=num_samples)


class DeferredSampler(_EpochSampler):
    """Deferred re-sampling (DRS, Cao et al. 2019): instance sampling for epochs < defer_epoch,
    class-balanced sampling (q = 0) from epoch ``defer_epoch`` on (epochs count from 0)."""

    def __init__(self, labels, defer_epoch: int, seed: int = 0, num_samples: int | None = None):
        super().__init__(labels, seed=seed, num_samples=num_samples)
        if defer_epoch is None or int(defer_epoch) < 0:
            raise ValueError(f"DeferredSampler: defer_epoch must be an integer >= 0, got {defer_epoch}")
        self.defer_epoch = int(defer_epoch)
        self._balanced = torch.from_numpy(_power_probs(self.class_counts, 0.0))

    @property
    def balanced(self) -> bool:
        """True when the current epoch samples class-balanced."""
        return self.epoch >= self.defer_epoch

    def __iter__(self) -> Iterator[int]:
        g = self._generator()
        idx = self._by_class_probs(self._balanced, g) if self.balanced else self._permutation(g)
        return iter(idx.tolist())


class ClassAwareBatchSampler(Sampler[list]):
    """Batches holding the same number of items from each of their classes.

    Each batch picks ``classes_per_batch`` distinct classes uniformly at random (default: all
    classes, every batch) and ``samples_per_class`` items of each; items of a class are drawn by
    walking through a fresh random permutation of that class, re-shuffled when used up (so a
    class smaller than ``samples_per_class`` repeats items). Give ``samples_per_class`` or
    ``batch_size`` (then ``samples_per_class = batch_size // classes_per_batch``, the contrastive
    "balance" batches with bs//C items per class). Batch size = classes_per_batch · samples_per_class.

    num_batches: batches per epoch (default ``N // batch size``, at least 1). Deterministic per
    (seed, epoch); ``set_epoch`` as for the epoch samplers. Use as ``DataLoader(batch_sampler=...)``.
    """

    def __init__(self, labels, samples_per_class: int | None = None, classes_per_batch: int | None = None,
                 batch_size: int | None = None, num_batches: int | None = None, seed: int = 0):
        name = type(self).__name__
        self.labels = _labels_array(labels, name)
        counts = np.bincount(self.labels)
        self.classes = np.flatnonzero(counts > 0)
        n_cls = len(self.classes)
        k = n_cls if classes_per_batch is None else int(classes_per_batch)
        if not 1 <= k <= n_cls:
            raise ValueError(f"{name}: classes_per_batch must be in [1, {n_cls}] (classes present), got {k}")
        if (samples_per_class is None) == (batch_size is None):
            raise ValueError(f"{name}: give exactly one of samples_per_class or batch_size")
        m = int(samples_per_class) if samples_per_class is not None else int(batch_size) // k
        if m < 1:
            raise ValueError(f"{name}: samples_per_class must be >= 1, got {m} (batch_size {batch_size} "
                             f"is smaller than classes_per_batch {k})")
        self.classes_per_batch, self.samples_per_class = k, m
        self.batch_size = k * m
        nb = max(1, len(self.labels) // self.batch_size) if num_batches is None else int(num_batches)
        if nb < 1:
            raise ValueError(f"{name}: num_batches must be >= 1, got {num_batches}")
        self.num_batches = nb
        self.seed, self.epoch = int(seed), 0
        self._members = [torch.from_numpy(np.flatnonzero(self.labels == c)) for c in self.classes]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list]:
        g = _epoch_generator(self.seed, self.epoch)
        n_cls, k, m = len(self.classes), self.classes_per_batch, self.samples_per_class
        queues = [members[torch.randperm(len(members), generator=g)] for members in self._members]
        pos = [0] * n_cls
        for _ in range(self.num_batches):
            chosen = torch.arange(n_cls) if k == n_cls else torch.randperm(n_cls, generator=g)[:k]
            batch: list[int] = []
            for c in chosen.tolist():
                members = self._members[c]
                take: list[int] = []
                while len(take) < m:
                    if pos[c] == len(members):
                        queues[c] = members[torch.randperm(len(members), generator=g)]
                        pos[c] = 0
                    step = min(m - len(take), len(members) - pos[c])
                    take += queues[c][pos[c]:pos[c] + step].tolist()
                    pos[c] += step
                batch += take
            yield batch


class OversampleSampler(_EpochSampler):
    """Oversampling by copies (paper 002, Section 3 "resample"): the training set is extended with copies of
    minority samples until every class has M items, M = the largest class count.

    Class c (n_c items) contributes floor(M / n_c) copies of each of its items plus M mod n_c further items,
    drawn once without replacement (fixed by the seed, not the epoch: the extended set is one fixed set), so
    an epoch yields C·M indices, exactly M per class, in a fresh random order per (seed, epoch).
    Unlike ClassBalancedSampler (a class uniformly at random, then an item, N draws per epoch) the class
    counts per epoch are exact and every item of a class appears equally often (within one).
    num_samples is not accepted: the epoch length is C·M by construction.
    """

    def __init__(self, labels, seed: int = 0):
        super().__init__(labels, seed=seed)
        present = np.flatnonzero(self.class_counts > 0)
        m = int(self.class_counts.max())
        g = _epoch_generator(self.seed, -1)  # the fixed extension, independent of the epoch
        parts = []
        for c in present:
            members = torch.from_numpy(np.flatnonzero(self.labels == c))
            n = len(members)
            extra = members[torch.randperm(n, generator=g)[: m % n]]
            parts += [members.repeat(m // n), extra]
        self.extended = torch.cat(parts)
        self.num_samples = len(self.extended)

    def __iter__(self) -> Iterator[int]:
        g = self._generator()
        return iter(self.extended[torch.randperm(self.num_samples, generator=g)].tolist())


def _oversample(labels, seed=0, num_samples=None):
    if num_samples is not None:
        raise ValueError("build_sampler('oversample'): num_samples cannot be set (an epoch is C x largest count)")
    return OversampleSampler(labels, seed=seed)


def _instance(labels, seed=0, num_samples=None):
    return InstanceSampler(labels, seed=seed, num_samples=num_samples)


def _class(labels, seed=0, num_samples=None):
    return ClassBalancedSampler(labels, seed=seed, num_samples=num_samples)


def _sqrt(labels, seed=0, num_samples=None):
    return SquareRootSampler(labels, seed=seed, num_samples=num_samples)


def _power(labels, seed=0, num_samples=None, q=None):
    if q is None:
        raise ValueError("build_sampler('power'): give q (P(class j) ∝ n_j^q; 1 instance, 0 class, 0.5 sqrt)")
    return PowerSampler(labels, q=q, seed=seed, num_samples=num_samples)


def _drs(labels, seed=0, num_samples=None, defer_epoch=None):
    if defer_epoch is None:
        raise ValueError("build_sampler('drs'): give defer_epoch (first class-balanced epoch, from 0)")
    return DeferredSampler(labels, defer_epoch=defer_epoch, seed=seed, num_samples=num_samples)


SAMPLERS = {"instance": _instance, "class": _class, "sqrt": _sqrt, "power": _power, "drs": _drs}
SAMPLERS["oversample"] = _oversample


# --------------------------------------------------------------------------- paper 004: BBN and metric learning
class ReversedSampler(PowerSampler):
    """BBN's reversed sampler (Zhou et al. 2020): class i with probability ``w_i / Σ_j w_j``, ``w_i = N_max / N_i``,
    then a uniform sample of it; i.e. P(class i) ∝ 1/N_i (``PowerSampler`` with q = -1)."""

    def __init__(self, labels, seed: int = 0, num_samples: int | None = None):
        super().__init__(labels, q=-1.0, seed=seed, num_samples=num_samples)


class PKSampler(Sampler[int]):
    """P x K batches as one flat index stream, for a DataLoader with a plain ``batch_size``.

    Consecutive blocks of ``P * K`` indices hold ``K`` items of each of ``P`` classes (P = every class by
    default), drawn as :class:`ClassAwareBatchSampler` does. With P = all C classes every block has the same
    class pattern, so any ``batch_size >= C * K`` consecutive indices hold at least K items of every class:
    online triplet mining always finds positives and negatives. Length: about N (``num_samples`` to change).
    """

    def __init__(self, labels, samples_per_class: int = 4, classes_per_batch: int | None = None, seed: int = 0,
                 num_samples: int | None = None):
        labels = _labels_array(labels, "PKSampler")
        if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, (int, np.integer)) \
                or samples_per_class < 1:
            raise ValueError(f"PKSampler: samples_per_class must be an integer >= 1, got {samples_per_class!r}")
        n = len(labels) if num_samples is None else int(num_samples)
        k = len(np.unique(labels)) if classes_per_batch is None else int(classes_per_batch)
        block = k * int(samples_per_class)
        self.inner = ClassAwareBatchSampler(labels, samples_per_class=int(samples_per_class),
                                            classes_per_batch=classes_per_batch,
                                            num_batches=max(1, -(-n // block)), seed=seed)
        self.block = block

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner) * self.block

    def __iter__(self) -> Iterator[int]:
        for batch in self.inner:
            yield from batch


def _reversed(labels, seed=0, num_samples=None):
    return ReversedSampler(labels, seed=seed, num_samples=num_samples)


def _pk(labels, seed=0, num_samples=None, samples_per_class=4, classes_per_batch=None):
    return PKSampler(labels, samples_per_class=samples_per_class, classes_per_batch=classes_per_batch, seed=seed,
                     num_samples=num_samples)


SAMPLERS["reversed"] = _reversed
SAMPLERS["pk"] = _pk


def build_sampler(name: str, labels, seed: int = 0, num_samples: int | None = None, **kw) -> Sampler:
    """Epoch sampler by name: ``instance``, ``class`` (class-balanced, RS), ``sqrt``,
    ``power`` (kw q), ``drs`` (kw defer_epoch). labels: (N,) training labels."""
    if name not in SAMPLERS:
        raise ValueError(f"build_sampler: unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
    try:
        return SAMPLERS[name](labels, seed=seed, num_samples=num_samples, **kw)
    except TypeError as e:
        raise TypeError(f"build_sampler({name!r}): bad keyword argument(s) {sorted(kw)}: {e}") from None


def shard(indices: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This rank's share of one epoch's indices under DDP.

    Pads by repeating indices from the start until the length divides by ``world_size``, then takes
    every ``world_size``-th index from position ``rank`` (as ``DistributedSampler`` does), so every
    rank gets ``ceil(len / world_size)`` indices and the shards together cover all indices.
    """
    world_size, rank = int(world_size), int(rank)
    if world_size < 1:
        raise ValueError(f"shard: world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"shard: rank must be in [0, {world_size - 1}], got {rank}")
    idx = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
    if not idx:
        return []
    total = -(-len(idx) // world_size) * world_size
    while len(idx) < total:
        idx += idx[: total - len(idx)]
    return idx[rank::world_size]
