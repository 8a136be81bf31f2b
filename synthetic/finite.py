"""From enumerable sequence domains and experts to the (D, P) arrays of :mod:`theory`."""

from __future__ import annotations

import numpy as np

from synthetic.sequences import MAX_ENUMERATION, SequenceDomain, SequenceModel
from theory.divergences import kl_log
from theory.errors import InputError, ShapeMismatchError
from theory.validation import as_instance


def finite_instance(
    domains, experts, *, limit: int = MAX_ENUMERATION
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact finite instance ``D[k, x] = D_k(x)``, ``P[k, x] = pi_k(x)`` over ``X = {0..V-1}^T``.

    Every domain is enumerated on the same ``V^T`` outcomes (rows of ``outcomes``, in
    lexicographic order); experts are evaluated there with their exact
    log-probabilities. Both arrays are validated by :func:`theory.as_instance`
    (rows sum to one, every outcome with domain mass is covered).

    Returns
    -------
    D, P : ndarray (p, V^T)
    outcomes : ndarray (V^T, T) int64
    """
    domains, experts = list(domains), list(experts)
    if not domains or len(domains) != len(experts):
        raise ShapeMismatchError(
            f"need one expert per domain and at least one domain; got {len(domains)} domains, {len(experts)} experts"
        )
    V, T = domains[0].V, domains[0].T
    for model in domains + experts:
        if (model.V, model.T) != (V, T):
            raise ShapeMismatchError(f"{model.name!r} has (V, T) = ({model.V}, {model.T}), expected ({V}, {T})")
    for d in domains:
        if not isinstance(d, SequenceDomain):
            raise InputError(f"{d.name!r} is not an enumerable domain")
    outcomes, first = domains[0].enumerate(limit)
    D = np.vstack([first] + [np.exp(d.log_prob(outcomes)) for d in domains[1:]])
    P = np.vstack([np.exp(e.log_prob(outcomes)) for e in experts])
    D, P = as_instance(D, P)
    return D, P, outcomes


def exact_kl(domain: SequenceDomain, model: SequenceModel, *, limit: int = MAX_ENUMERATION) -> float:
    """``KL(D || pi) = sum_x D(x) log(D(x) / pi(x))`` by enumeration of ``{0..V-1}^T`` (nats).

    The probabilities are the ones :func:`finite_instance` puts in ``(D, P)``; the model
    enters by its log-probabilities (:func:`theory.divergences.kl_log`), so a probability
    below the float64 range still counts, and ``exact_kl(d, e)`` equals
    ``kl(D[k], P[k])`` up to rounding wherever ``P[k]`` does not underflow.
    """
    outcomes, d = domain.enumerate(limit)
    with np.errstate(divide="ignore"):
        return kl_log(np.log(d), model.log_prob(outcomes))
