"""Monolithic baselines: one model trained on the aggregate of the domains.

Weight rules set the domain weights ``w`` of the training loss
``sum_k w_k L_k(theta)`` (:meth:`synthetic.models.TorchSequenceModel.fit`):

- :class:`FixedWeights`: fixed weights (the aggregate at given proportions, the
  Oracle at the test mixture, or the least-favourable ``lam*`` of
  :func:`theory.solve_robust`, computed by the caller);
- :class:`GroupDRO`: online exponentiated gradient ``w_k <- w_k exp(eta L_k)``
  (Sagawa et al. 2020), i.e. the adversary of ``max_w sum_k w_k L_k``;
- :class:`DoReMi`: exponentiated gradient on the clipped excess loss
  ``max(L_k - L_k^ref, 0)`` over a reference model (e.g. the domain's own expert) on
  the same minibatch, with smoothing towards uniform (Xie et al. 2023); its
  time-averaged weights are the DoReMi mixture, used to train a fresh model.

For count-based models, :func:`ngram_on_weights` fits the weighted aggregate.
"""

from __future__ import annotations

import numpy as np

from synthetic.models import TorchSequenceModel
from synthetic.ngram import NGramModel
from theory.errors import InputError, ShapeMismatchError
from theory.validation import as_weights


class WeightRule:
    """Domain weights of the training loss, updated after each step from per-domain losses."""

    def start(self, p: int) -> None:
        self.p = p

    def weights(self) -> np.ndarray:
        raise NotImplementedError

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


def train_on_weights(data, lam, *, V: int, T: int, width: int = 8, arch: str = "transformer", seed: int = 0,
                     **fit_kwargs) -> TorchSequenceModel:
    """A monolithic model trained on the aggregate at fixed domain weights ``lam``.

    With ``lam`` the test mixture this is the Oracle; with ``lam*`` from
    :func:`theory.solve_robust` it is the monolithic model at the least-favourable mixture.
    """
    model = TorchSequenceModel(V, T, width, arch=arch, seed=seed, name=f"{arch}-w{width}@{np.round(lam, 3).tolist()}")
    return model.fit(data, rule=FixedWeights(lam), **fit_kwargs)


def train_oracles(data, test_lams, **kwargs) -> list[TorchSequenceModel]:
    """The Oracle baseline: one monolithic model trained on each test mixture."""
    return [train_on_weights(data, lam, **kwargs) for lam in np.atleast_2d(test_lams)]


def train_group_dro(data, *, V: int, T: int, width: int = 8, eta: float = 0.05, seed: int = 0,
                    arch: str = "transformer", **fit_kwargs) -> TorchSequenceModel:
    """Group DRO: the model minimises the loss reweighted online towards the worst domain."""
    model = TorchSequenceModel(V, T, width, arch=arch, seed=seed, name=f"{arch}-w{width}/group-dro")
    return model.fit(data, rule=GroupDRO(eta), **fit_kwargs)


def train_doremi(data, references, *, V: int, T: int, width: int = 8, eta: float = 1.0, seed: int = 0,
                 arch: str = "transformer", **fit_kwargs) -> tuple[TorchSequenceModel, np.ndarray]:
    """DoReMi: find domain weights with a proxy run on excess loss, then train on their average.

    ``references`` holds one reference model per domain (e.g. the domain's expert, any
    :class:`~synthetic.sequences.SequenceModel`); its NLL per token on each training
    sequence is the reference loss. Returns the final model and the DoReMi weights.
    """
    data = list(data)
    if len(references) != len(data):
        raise ShapeMismatchError(f"need one reference model per domain: {len(data)} domains, {len(references)} references")
    ref_nll = [-r.token_log_probs(d).mean(axis=1) for r, d in zip(references, data)]
    rule = DoReMi(ref_nll, eta=eta)
    TorchSequenceModel(V, T, width, arch=arch, seed=seed, name="doremi-proxy").fit(data, rule=rule, **fit_kwargs)
    lam = rule.average
    model = train_on_weights(data, lam, V=V, T=T, width=width, arch=arch, seed=seed, **fit_kwargs)
    model.name = f"{arch}-w{width}/doremi"
    return model, lam


def ngram_on_weights(data, lam, *, V: int, order: int, T: int | None = None, **ngram_kwargs) -> NGramModel:
    """Count-based monolithic model of the aggregate: domain ``k``'s counts scaled by ``lam_k / m_k``.

    With add-k smoothing and enough data this estimates the order-``n`` projection of
    ``D_lam`` (the best n-gram model of the mixture).
    """
    data = list(data)
    lam = as_weights(lam, len(data), "domain weights")
    seqs = np.vstack(data)
    w = np.concatenate([np.full(len(d), l / len(d)) for d, l in zip(data, lam)]) * seqs.shape[0]
    return NGramModel(V, order, T, **ngram_kwargs).fit(seqs, weights=w)
