"""Monolithic baselines: one model trained on the aggregate of the domains.

Weight rules (:mod:`synthetic.weighting`) set the domain weights ``w`` of the
training loss ``sum_k w_k L_k(theta)`` (:meth:`synthetic.models.TorchSequenceModel.fit`):

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
from synthetic.weighting import DoReMi, FixedWeights, GroupDRO, LazyReference, WeightRule
from theory.errors import ShapeMismatchError
from theory.validation import as_weights

__all__ = ["DoReMi", "FixedWeights", "GroupDRO", "WeightRule", "ngram_on_weights", "train_doremi",
           "train_group_dro", "train_on_weights", "train_oracles"]


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
                 arch: str = "transformer", proxy_width: int | None = None,
                 **fit_kwargs) -> tuple[TorchSequenceModel, np.ndarray]:
    """DoReMi: find domain weights with a proxy run on excess loss, then train on their average.

    ``references`` holds one reference model per domain (e.g. the domain's expert, any
    :class:`~synthetic.sequences.SequenceModel`); its NLL per token on each training
    sequence is the reference loss. The proxy has ``proxy_width`` (default ``width``; DoReMi
    itself finds the weights with a proxy much smaller than the final model). Returns the
    final model and the DoReMi weights.
    """
    data = list(data)
    if len(references) != len(data):
        raise ShapeMismatchError(f"need one reference model per domain: {len(data)} domains, {len(references)} references")
    # Reference losses only of the windows the proxy's minibatches draw (computed on first use).
    ref_nll = [LazyReference(lambda idx, r=r, d=np.asarray(d): -r.token_log_probs(d[idx]).mean(axis=1), len(d))
               for r, d in zip(references, data)]
    rule = DoReMi(ref_nll, eta=eta)
    TorchSequenceModel(V, T, width if proxy_width is None else proxy_width, arch=arch, seed=seed,
                       name="doremi-proxy").fit(data, rule=rule, **fit_kwargs)
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
