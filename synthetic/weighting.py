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


class DoReMi(GroupDRO):
    """Exponentiated gradient on the clipped excess loss over a reference model.

    ``reference_nll[k]`` holds, for every training sequence of domain ``k``, the
    reference model's mean NLL per token; the excess on a minibatch is
    ``max(L_k - mean(reference_nll[k][batch]), 0)``. The weights used for training are
    ``(1 - smoothing) w + smoothing / p``; :attr:`average` is their running mean.
    """

    def __init__(self, reference_nll, eta: float = 1.0, smoothing: float = 1e-3):
        super().__init__(eta)
        self.reference = [np.asarray(r, dtype=np.float64) for r in reference_nll]
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
