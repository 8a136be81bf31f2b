"""Estimators of the gated model's total mass ``Z_g = sum_x sum_k g(x,k) pi_k(x)``.

Three estimators, named as in the fit's output:

- ``"expert-samples"``: ``Z = sum_k E_{x ~ pi_k}[g(x, k)]``. Unbiased; needs samples of
  every expert.
- ``"importance"``: proposal ``q0 = (1/p) sum_k pi_k`` (the expert samples pooled in
  equal shares), ``Z = E_{x ~ q0}[pi_g(x) / q0(x)]``. Unbiased; needs the same samples.
- ``"data-shortcut"`` (the paper's): the pooled *data* ``(1/p) sum_k D_k`` stands in for
  q0, ``Zhat = (1/p) sum_k E_{x ~ D_k}[pi_g(x) / q0(x)]``. Its mean is
  ``sum_x ((1/p) sum_k D_k(x)) pi_g(x) / q0(x)``, which equals Z only when the pooled
  domains equal the pooled experts (for instance when every expert matches its
  domain); otherwise it is biased.

The per-sample terms are computed in log space: ``pi_g(x) / q0(x) =
exp(log pi_g(x) - logsumexp_k log pi_k(x) + log p)``.
"""

from __future__ import annotations

import math
import warnings

import torch

from modular.gates import mixture_log_prob
from modular.vocabulary import UNBIASED, Z_ESTIMATORS  # noqa: F401 (re-exported)
from theory.errors import InvalidOptionError



class BiasedEstimatorWarning(UserWarning):
    """The data-shortcut Z estimator is in use: Z is biased unless experts match domains."""


def check_estimator(name: str, have_expert_samples: bool) -> str:
    """Validate a Z estimator name against the samples available; warn for the shortcut."""
    if name not in Z_ESTIMATORS:
        raise InvalidOptionError(f"unknown Z estimator {name!r}; choose one of {', '.join(Z_ESTIMATORS)}")
    if name in UNBIASED and not have_expert_samples:
        raise InvalidOptionError(f"Z estimator {name!r} needs samples drawn from every expert")
    if name == "data-shortcut":
        warnings.warn(
            "Z estimator 'data-shortcut': pooled data samples stand in for q0 = (1/p) sum_k pi_k; "
            "the estimate of Z is biased unless the experts match their domains",
            BiasedEstimatorWarning,
            stacklevel=3,
        )
    return name


def z_terms(estimator: str, log_gate: torch.Tensor, expert_logp: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Per-sample terms whose set-weighted means, summed or averaged over sets, give Z.

    Parameters
    ----------
    estimator : str
        One of :data:`Z_ESTIMATORS`.
    log_gate : (B x p) tensor
        ``log g(x, k)``.
    expert_logp : (B x p) tensor
        ``log pi_k(x)``.
    source : (B,) int64 tensor
        The expert k whose samples x comes from (for ``"expert-samples"``; ignored
        otherwise).

    Returns
    -------
    (B,) tensor ``t(x)``; ``Z = sum_k E_{x ~ S_k}[t(x)]`` for ``"expert-samples"`` and
    ``Z = (1/p) sum_k E_{x ~ S_k}[t(x)]`` for the other two (S_k the k-th sample set).
    """
    if estimator == "expert-samples":
        return torch.exp(log_gate.gather(1, source[:, None])[:, 0])
    p = expert_logp.shape[1]
    log_pg = mixture_log_prob(log_gate, expert_logp)
    log_q0 = torch.logsumexp(expert_logp, dim=1) - math.log(p)
    return torch.exp(log_pg - log_q0)


def combine(estimator: str, set_means: torch.Tensor) -> torch.Tensor:
    """Z from the per-set means of :func:`z_terms` (sum for expert-samples, mean otherwise)."""
    return set_means.sum() if estimator == "expert-samples" else set_means.mean()
