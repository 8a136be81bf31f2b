"""Domain-weight rules for multi-domain training: ``min_theta sum_k w_k L_k(theta)``.

A rule supplies the weights ``w`` (in the simplex) before each step and observes the
per-domain minibatch losses ``L_k`` (mean NLL per token, nats) after it:

- :class:`FixedWeights`: constant ``w = lam``;
- :class:`GroupDRO`: online exponentiated gradient ``w_k <- w_k exp(eta L_k)`` on raw
  losses (Sagawa et al. 2020): the adversary of ``max_w sum_k w_k L_k``, which chases
  high-entropy domains;
- :class:`DoReMi`: the same on the clipped excess loss over a reference model
  (Xie et al. 2023), smoothed towards uniform, with time-averaged weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from theory.errors import InputError, ShapeMismatchError
from theory.validation import as_weights


class WeightRule(ABC):
    """Domain weights of the training loss, updated after each step from per-domain losses."""

    def start(self, p: int) -> None:
        self.p = p

    @abstractmethod
    def weights(self) -> np.ndarray:
        """The current domain weights (p,), in the simplex."""

    def update(self, losses: np.ndarray, batches: list[np.ndarray]) -> None:
        """Observe the per-domain mean losses (nats/token) and the minibatch row indices."""

    def describe(self) -> str:
        return type(self).__name__


class FixedWeights(WeightRule):
    """Fixed weights ``lam`` (in the simplex)."""

    def __init__(self, lam):
        self.lam = np.asarray(lam, dtype=np.float64)

    def start(self, p: int) -> None:
        super().start(p)
        self.lam = as_weights(self.lam, p, "training weights")

    def weights(self) -> np.ndarray:
        return self.lam

    def describe(self) -> str:
        return f"fixed{np.round(self.lam, 4).tolist()}"


class GroupDRO(WeightRule):
    """Online exponentiated-gradient adversary on the per-domain losses, step size ``eta``."""

    def __init__(self, eta: float = 0.05):
        if not eta > 0:
            raise InputError(f"Group DRO step size must be positive, got eta={eta}")
        self.eta = eta

    def start(self, p: int) -> None:
        super().start(p)
        self.log_w = np.full(p, -np.log(p))

    def weights(self) -> np.ndarray:
        w = np.exp(self.log_w - self.log_w.max())
        return w / w.sum()

    def _signal(self, losses, batches) -> np.ndarray:
        return losses

    def update(self, losses, batches) -> None:
        self.log_w = self.log_w + self.eta * self._signal(np.asarray(losses), batches)
        self.log_w -= self.log_w.max()

    def describe(self) -> str:
        return f"group-dro(eta={self.eta:g})"


class LazyReference:
    """Per-sequence reference losses computed on first use: ``values(indices) -> (len(indices),)``.

    DoReMi reads the reference loss only of the sequences its minibatches draw (300 steps
    of 16 out of 40,000 windows per domain in the real-world full profile), so computing
    it for every training sequence up front cost 4x as many expert passes as needed.
    Indexing with an integer array returns the losses of those sequences, each computed
    once by ``values`` and then kept.
    """

    def __init__(self, values, n: int):
        self._values, self._cache = values, np.full(int(n), np.nan)

    def __len__(self) -> int:
        return self._cache.size

    def __getitem__(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        missing = np.unique(index[np.isnan(self._cache[index])])
        if missing.size:
            self._cache[missing] = np.asarray(self._values(missing), dtype=np.float64)
        return self._cache[index]


class DoReMi(GroupDRO):
    """Exponentiated gradient on the clipped excess loss over a reference model.

    ``reference_nll[k]`` holds, for every training sequence of domain ``k``, the
    reference model's mean NLL per token (an array, or a :class:`LazyReference` that
    computes them as minibatches draw them); the excess on a minibatch is
    ``max(L_k - mean(reference_nll[k][batch]), 0)``. The weights used for training are
    ``(1 - smoothing) w + smoothing / p``; :attr:`average` is their running mean.
    """

    def __init__(self, reference_nll, eta: float = 1.0, smoothing: float = 1e-3):
        super().__init__(eta)
        self.reference = [r if isinstance(r, LazyReference) else np.asarray(r, dtype=np.float64)
                          for r in reference_nll]
        self.smoothing = smoothing

    def start(self, p: int) -> None:
        if len(self.reference) != p:
            raise ShapeMismatchError(f"DoReMi needs reference losses for {p} domains, got {len(self.reference)}")
        super().start(p)
        self._sum, self._count = np.zeros(p), 0

    def weights(self) -> np.ndarray:
        return (1 - self.smoothing) * super().weights() + self.smoothing / self.p

    def _signal(self, losses, batches) -> np.ndarray:
        ref = np.array([r[b].mean() for r, b in zip(self.reference, batches)])
        return np.maximum(losses - ref, 0.0)

    def update(self, losses, batches) -> None:
        self._sum += self.weights()
        self._count += 1
        super().update(losses, batches)

    @property
    def average(self) -> np.ndarray:
        """Time-averaged training weights: the DoReMi domain mixture."""
        if self._count == 0:
            raise InputError("DoReMi has not run: no averaged weights yet")
        return self._sum / self._count

    def describe(self) -> str:
        return f"doremi(eta={self.eta:g}, smoothing={self.smoothing:g})"
