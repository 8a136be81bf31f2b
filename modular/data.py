"""Cached samples for the stochastic fit: expert log-probabilities, gate features, weights.

A :class:`SampleSet` holds m samples x of one distribution (a domain ``D_k`` or an
expert ``pi_k``): the (m x p) matrix ``log pi_j(x)`` of every expert's log-probability,
the gate features of each sample, and optional non-negative weights. With weights
``w`` the set stands for the distribution ``sum_i w_i delta_{x_i} / sum_i w_i``: an
enumerated finite instance with ``w_i = D_k(x_i)`` then gives the exact population
objective.

What a DATA.npz may hold is checked on loading, each refusal one :class:`InputError`
naming the array, sample and value: log-probabilities above 0 (a probability above one;
values within :data:`LOGP_ROUNDING` of 0 are rounding of ``log 1`` and read as 0), NaN
or ``+inf``, samples impossible under every expert, negative integer ids, ids whose
table would exceed :data:`MAX_ID_TABLE` entries (refused before anything is allocated),
and members that are not plain numeric arrays. One more case depends on the objective
(:func:`check_excess_defined`): under the ``excess`` adversary a sample of domain k to
which its own expert k gives probability 0 makes the excess loss of domain k minus
infinity whatever the gate, so lambda_k would be 0 silently; the fit refuses it instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from theory.commandline import load_archive
from theory.errors import InputError, InvalidDistributionError, ShapeMismatchError

#: Log-probabilities in (0, LOGP_ROUNDING] are rounding error of log 1 (float32
#: log-softmax returns values up to a few 1e-7 above 0) and are read as 0; larger
#: positive values are probabilities above one and are refused.
LOGP_ROUNDING = 1e-6

#: Largest (number of ids) x p table an integer-id gate may allocate: 2**26 entries
#: (256 MiB of float32 logits, about 1 GiB with the optimiser's state). A larger id
#: usually means ids that were not remapped to 0..K-1.
MAX_ID_TABLE = 2**26


@dataclass
class SampleSet:
    """Samples of one distribution: ``logp`` (m x p), ``features`` (m x ...), ``weight`` (m,) or None."""

    logp: torch.Tensor
    features: torch.Tensor
    weight: torch.Tensor | None = None

    @property
    def m(self) -> int:
        return int(self.logp.shape[0])

    @property
    def p(self) -> int:
        return int(self.logp.shape[1])

    def probabilities(self) -> torch.Tensor:
        """Per-sample weights normalised to sum one (uniform without weights), float64."""
        if self.weight is None:
            return torch.full((self.m,), 1.0 / self.m, dtype=torch.float64)
        w = self.weight.to(torch.float64)
        return w / w.sum()


def sample_set(logp, features=None, weight=None, *, name: str = "samples") -> SampleSet:
    """Validate and wrap cached expert log-probabilities as a :class:`SampleSet`.

    ``logp`` must be a finite-or-minus-infinity (m x p) array of log-probabilities:
    NaN, ``+inf`` and values above 0 (beyond :data:`LOGP_ROUNDING`) are rejected, and so
    is a sample to which every expert gives probability zero (its gated log-likelihood
    is ``-inf`` whatever the gate). ``features`` default to
    ``logp`` itself, with ``-inf`` replaced by the smallest finite log-probability of
    the set so that a feature-reading gate sees finite inputs. Integer features are
    kept as int64 (outcome ids or tokens for tabular and sequence gates) and must be
    non-negative.
    """
    for label, arr in (("log-probabilities", logp), ("features", features), ("weights", weight)):
        if arr is not None and np.asarray(arr).dtype.kind not in "biuf":
            raise InputError(f"{name}: {label} have dtype {np.asarray(arr).dtype}; expected a plain numeric array")
    lp = np.asarray(logp, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[0] == 0 or lp.shape[1] == 0:
        raise ShapeMismatchError(f"{name}: log-probabilities must be a non-empty (m x p) array, got shape {lp.shape}")
    bad = np.isnan(lp) | (lp == np.inf)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise InvalidDistributionError(f"{name}: sample {i}, expert {k} has log-probability {lp[i, k]} (NaN or +inf)")
    above = lp > LOGP_ROUNDING
    if above.any():
        i, k = np.argwhere(above)[0]
        raise InvalidDistributionError(
            f"{name}: sample {i}, expert {k} has log-probability {lp[i, k]:.6g} > 0 (a probability above one)"
        )
    lp = np.minimum(lp, 0.0)
    dead = np.isneginf(lp).all(axis=1)
    if dead.any():
        raise InvalidDistributionError(
            f"{name}: sample {int(np.flatnonzero(dead)[0])} has log-probability -inf under every expert"
        )
    if features is None:
        finite = lp[np.isfinite(lp)]
        feats = np.where(np.isfinite(lp), lp, finite.min() if finite.size else 0.0)
    else:
        feats = np.asarray(features)
        if feats.ndim == 0 or feats.shape[0] != lp.shape[0]:
            raise ShapeMismatchError(
                f"{name}: features have {feats.shape[0] if feats.ndim else 'no'} rows but the log-probabilities have {lp.shape[0]}"
            )
        if np.issubdtype(feats.dtype, np.floating) and not np.isfinite(feats).all():
            i = int(np.flatnonzero(~np.isfinite(feats.reshape(len(feats), -1)).all(axis=1))[0])
            raise InvalidDistributionError(f"{name}: features of sample {i} are NaN or infinite")
        if feats.dtype.kind in "iu" and feats.size and feats.min() < 0:
            i = int(np.flatnonzero((feats.reshape(len(feats), -1) < 0).any(axis=1))[0])
            raise InputError(f"{name}: sample {i} has a negative integer feature {int(feats.min())}: integer "
                             "features are outcome ids or tokens (0, 1, ...); give float features for a linear gate")
    feat_t = torch.as_tensor(np.ascontiguousarray(feats))
    feat_t = feat_t.long() if not torch.is_floating_point(feat_t) else feat_t.double()
    w_t = None
    if weight is not None:
        w = np.asarray(weight, dtype=np.float64)
        if w.shape != (lp.shape[0],):
            raise ShapeMismatchError(f"{name}: weights must have shape ({lp.shape[0]},), got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise InvalidDistributionError(f"{name}: weights must be finite, non-negative and not all zero")
        w_t = torch.as_tensor(w)
    return SampleSet(torch.as_tensor(lp), feat_t, w_t)


def check_sets(sets: list[SampleSet], name: str, p: int | None = None) -> int:
    """Check that ``sets`` holds one set per expert with a common p and feature shape; return p."""
    if not sets:
        raise InputError(f"no {name} given")
    p = sets[0].p if p is None else p
    for k, s in enumerate(sets):
        if s.p != p:
            raise ShapeMismatchError(f"{name} {k}: log-probabilities have {s.p} expert columns, expected p={p}")
        if s.features.shape[1:] != sets[0].features.shape[1:] or s.features.dtype != sets[0].features.dtype:
            raise ShapeMismatchError(
                f"{name} {k}: features of shape {tuple(s.features.shape[1:])} ({s.features.dtype}) differ from "
                f"those of {name} 0 ({tuple(sets[0].features.shape[1:])}, {sets[0].features.dtype})"
            )
    if len(sets) != p:
        raise ShapeMismatchError(f"{len(sets)} {name} given for p={p} experts: expected one per expert")
    return p


def check_ids(sets: list[SampleSet], p: int, n_ids: int | None = None) -> int:
    """The number of integer ids ``max id + 1`` of ``sets``, checked before a table is allocated.

    Ids must lie in ``0..n_ids-1`` when ``n_ids`` is given (e.g. by a saved gate), and
    the (ids x p) table must have at most :data:`MAX_ID_TABLE` entries.
    """
    top = max((int(s.features.max()) for s in sets if s.features.numel()), default=-1)
    if n_ids is not None and top >= n_ids:
        raise InputError(f"integer feature id {top} is out of range: the gate knows ids 0..{n_ids - 1}")
    if (top + 1) * max(p, 1) > MAX_ID_TABLE:
        raise InputError(f"integer feature id {top} would need a table of {top + 1} x {p} entries (limit "
                         f"{MAX_ID_TABLE}); remap the ids to 0..K-1 with K the number of distinct outcomes")
    return top + 1


def check_excess_defined(domains: list[SampleSet]) -> None:
    """Refuse samples of domain k that its own expert k gives probability 0 (for the excess adversary).

    The excess loss ``NLL_k(g) - E_{D_k}[-log pi_k]`` is then ``-inf`` for every gate:
    domain k could never be the worst and its weight would be 0 without a word.
    """
    for k, s in enumerate(domains):
        if k >= s.p:
            break
        dead = torch.isneginf(s.logp[:, k])
        if s.weight is not None:
            dead &= s.weight > 0
        if bool(dead.any()):
            i = int(torch.nonzero(dead)[0, 0])
            raise InputError(
                f"domain {k}: sample {i} has log-probability -inf under its own expert {k}, so the excess loss of "
                f"domain {k} is -inf for every gate (its lambda would be 0); use --adversary kl or nll, or smooth "
                f"expert {k}")


def load_npz(path) -> tuple[list[SampleSet], list[SampleSet] | None]:
    """Read cached log-probabilities from ``path`` (the CLI's DATA.npz format).

    For each domain k = 0..p-1: ``logp_k`` (m_k x p) and optional ``feat_k`` (m_k x d)
    and ``weight_k`` (m_k,); for the unbiased Z estimators, optionally for every expert
    k: ``expert_logp_k``, ``expert_feat_k``, ``expert_weight_k``. Returns the domain
    sets and the expert sets (None when the file holds no expert samples).
    """
    # Names and checksums written by ``python -m modular cache`` travel as string members.
    data = load_archive(path, "data", text_members=("expert_names", "domain_names", "expert_sha256", "split"))
    keys = set(data)

    def domains_of(prefix: str) -> list[int]:
        ids = []
        for key in keys:
            head, _, tail = key.rpartition("_")
            if head == prefix and tail.isdigit():
                ids.append(int(tail))
        return sorted(ids)

    ids = domains_of("logp")
    if not ids:
        raise InputError(f"{path}: no arrays named logp_0, logp_1, ... (one per domain)")
    missing = sorted(set(range(max(ids) + 1)) - set(ids))
    if missing:
        raise InputError(f"{path}: domain {missing[0]} is missing (no logp_{missing[0]})")

    def read(prefix: str, k: int, label: str) -> SampleSet:
        return sample_set(
            data[f"{prefix}logp_{k}"],
            data[f"{prefix}feat_{k}"] if f"{prefix}feat_{k}" in keys else None,
            data[f"{prefix}weight_{k}"] if f"{prefix}weight_{k}" in keys else None,
            name=f"{label} {k}",
        )

    domains = [read("", k, "domain") for k in ids]
    p = check_sets(domains, "domains")
    if not torch.is_floating_point(domains[0].features):
        check_ids(domains, p)
    expert_ids = domains_of("expert_logp")
    if not expert_ids:
        return domains, None
    missing = sorted(set(range(p)) - set(expert_ids))
    if missing or len(expert_ids) != p:
        k = missing[0] if missing else max(expert_ids)
        raise InputError(f"{path}: expert samples must be given for every expert 0..{p - 1}; expert_logp_{k} is "
                         f"{'missing' if missing else 'extra'}")
    experts = [read("expert_", k, "expert samples") for k in range(p)]
    check_sets(experts, "expert samples", p)
    if not torch.is_floating_point(experts[0].features):
        check_ids(domains + experts, p)
    if experts[0].features.shape[1:] != domains[0].features.shape[1:]:
        raise ShapeMismatchError("expert-sample features and domain features have different shapes")
    return domains, experts
