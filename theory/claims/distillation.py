"""Thms 17-18, structural distillation, on an enumerable n-gram (bigram) instance.

Outcomes are all sequences of length T over a vocabulary of size V (n = V^T), in
lexicographic order, so the prefix of length t of sequence number i is ``i // V^(T-t)``.
A gate ``g(x, k)`` on whole sequences gives the joint ``J(x, k) = g(x, k) pi_k(x)``. A
causal router ``gamma_t(k | x_<t)`` gives the routed model
``r_gamma(x) = prod_t sum_k gamma_t(k | x_<t) pi_k(x_t | x_<t)``; the Bayes router is the
posterior ``gamma*_t(k | x_<t) = J(x_<t, k) / pi_g(x_<t)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from theory import routing
from theory.claims import solvers
from theory.claims.record import ABS_TOL, EQUAL, IDENTITY, UPPER, Check
from theory.divergences import kl
from theory.gates import constant_gate, gated_model
from theory.result import ConvergenceWarning


@dataclass(frozen=True)
class BigramInstance:
    """p bigram domains and p bigram experts on sequences of length T over V symbols.

    ``init`` arrays are (p x V), ``trans`` arrays (p x V x V) with rows summing to one.
    """

    V: int
    T: int
    domain_init: np.ndarray
    domain_trans: np.ndarray
    expert_init: np.ndarray
    expert_trans: np.ndarray

    @property
    def sequences(self) -> np.ndarray:
        """All V^T sequences (n x T), lexicographic."""
        return np.indices((self.V,) * self.T).reshape(self.T, -1).T

    def conditionals(self, init, trans) -> np.ndarray:
        """``pi_k(x_t | x_<t)`` for every chain k, sequence x and step t: (p x n x T)."""
        X = self.sequences
        first = init[:, X[:, 0]][:, :, None]
        rest = trans[:, X[:, :-1], X[:, 1:]]
        return np.concatenate([first, rest], axis=2)

    def distributions(self, init, trans) -> np.ndarray:
        """The sequence distributions (p x n), products of conditionals in log space."""
        with np.errstate(divide="ignore"):
            return np.exp(np.log(self.conditionals(init, trans)).sum(axis=2))

    @property
    def D(self) -> np.ndarray:
        return self.distributions(self.domain_init, self.domain_trans)

    @property
    def P(self) -> np.ndarray:
        return self.distributions(self.expert_init, self.expert_trans)


def conflict_instance(V: int, T: int, noise: float, smoothing: float, rng) -> BigramInstance:
    """The paper's conflict task with two domains (``x+1`` and ``x-1`` mod V) plus noise.

    Experts are the domain chains smoothed towards random transition rows by ``smoothing``.
    """
    eye = np.eye(V)
    up = (1 - noise) * np.roll(eye, 1, axis=1) + noise / V
    down = (1 - noise) * np.roll(eye, -1, axis=1) + noise / V
    trans = np.stack([up, down])
    init = np.full((2, V), 1.0 / V)
    noise_rows = rng.dirichlet(np.ones(V), size=(2, V))
    expert_trans = (1 - smoothing) * trans + smoothing * noise_rows
    expert_init = (1 - smoothing) * init + smoothing * rng.dirichlet(np.ones(V), size=2)
    return BigramInstance(V, T, init, trans, expert_init, expert_trans)


def random_bigram_instance(p: int, V: int, T: int, smoothing: float, rng) -> BigramInstance:
    """p random bigram domains (Dirichlet rows) and smoothed experts."""
    trans = rng.dirichlet(np.full(V, 0.5), size=(p, V))
    init = rng.dirichlet(np.ones(V), size=p)
    expert_trans = (1 - smoothing) * trans + smoothing * rng.dirichlet(np.ones(V), size=(p, V))
    expert_init = (1 - smoothing) * init + smoothing * rng.dirichlet(np.ones(V), size=p)
    return BigramInstance(V, T, init, trans, expert_init, expert_trans)


def token_log_probs(inst: BigramInstance) -> np.ndarray:
    """``log pi_k(x_t | x_<t)`` of the experts in the layout of :mod:`theory.routing`: (n x T x p)."""
    with np.errstate(divide="ignore"):
        return np.log(inst.conditionals(inst.expert_init, inst.expert_trans)).transpose(1, 2, 0)


def along_sequences(inst: BigramInstance, router) -> np.ndarray:
    """A router given per prefix (list over t of V^t x p) read along every sequence: (n x T x p)."""
    n = inst.V**inst.T
    return np.stack([router[t][np.arange(n) // inst.V ** (inst.T - t)] for t in range(inst.T)], axis=1)


def per_prefix(inst: BigramInstance, router) -> list[np.ndarray]:
    """The inverse of :func:`along_sequences`: row ``router[s, t]`` of the first sequence of each prefix."""
    return [np.asarray(router)[np.arange(inst.V**t) * inst.V ** (inst.T - t), t] for t in range(inst.T)]


def bayes_router(inst: BigramInstance, gate) -> list[np.ndarray]:
    """``gamma*_t(k | x_<t)`` for t = 0..T-1, each (V^t x p): the posterior over experts
    (:func:`theory.routing.bayes_router`)."""
    with np.errstate(divide="ignore"):
        log_gate = np.log(np.asarray(gate, dtype=np.float64))
    return per_prefix(inst, routing.bayes_router(inst.sequences, token_log_probs(inst), log_gate))


def routed_model(inst: BigramInstance, router) -> np.ndarray:
    """``r_gamma(x) = prod_t sum_k gamma_t(k | x_<t) pi_k(x_t | x_<t)`` for every sequence x."""
    return np.exp(routing.routed_log_prob(along_sequences(inst, router), token_log_probs(inst)))


def router_kl(inst: BigramInstance, q, true_router, router) -> float:
    """``sum_t E_{x_<t ~ q}[KL(gamma*_t(.|x_<t) || gamma_t(.|x_<t))]`` (:func:`theory.routing.router_divergence`)."""
    with np.errstate(divide="ignore"):
        log_q = np.log(np.asarray(q, dtype=np.float64))
    return routing.router_divergence(log_q, along_sequences(inst, true_router), along_sequences(inst, router))


def joint_path_kl(inst: BigramInstance, teacher, router) -> float:
    """KL between the two routed models on the joint space of (sequence, expert path), by enumeration.

    ``P_gamma(x, k_1..k_T) = prod_t gamma_t(k_t | x_<t) pi_{k_t}(x_t | x_<t)``; the
    emissions cancel in the ratio, so the log-ratio is
    ``sum_t log gamma*_t(k_t | x_<t) - log gamma_t(k_t | x_<t)`` under the teacher's
    joint. Every (x, path) pair is enumerated (n p^T terms).
    """
    cond = inst.conditionals(inst.expert_init, inst.expert_trans)
    p, n, T = cond.shape[0], inst.V**inst.T, inst.T
    paths = np.indices((p,) * T).reshape(T, -1).T  # (p^T x T)
    log_joint = np.zeros((n, len(paths)))
    log_ratio = np.zeros((n, len(paths)))
    for t in range(T):
        prefix = np.arange(n) // inst.V ** (T - t)
        k = paths[:, t]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_teacher = np.log(teacher[t][prefix][:, k])
            log_student = np.log(router[t][prefix][:, k])
            log_joint += log_teacher + np.log(cond[k, :, t]).T
            # a path the teacher never takes carries no weight, whatever the student does
            log_ratio += np.where(np.isfinite(log_teacher), log_teacher - log_student, 0.0)
    weight = np.exp(log_joint)
    return float((weight * log_ratio).sum())


def best_router(inst: BigramInstance, q) -> tuple[list[np.ndarray], float]:
    """The causal router minimising ``KL(q || r_gamma)``, with its certificate.

    :func:`theory.routing.optimal_router`: the objective splits over prefixes, at each
    the maximum-likelihood mixture weights of the experts' next-symbol distributions for
    the next-symbol distribution of q. A certificate above its tolerance is no error
    here: the check that uses it widens its tolerance by the certificate.
    """
    with np.errstate(divide="ignore"):
        log_q = np.log(np.asarray(q, dtype=np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = routing.optimal_router(inst.sequences, token_log_probs(inst), log_q)
    return per_prefix(inst, fit.router), fit.gap


def perturbed_router(router, scale: float, rng) -> list[np.ndarray]:
    """A "learned" router: the Bayes router with log-normal noise of size ``scale``."""
    out = []
    for g in router:
        noisy = g * np.exp(scale * rng.standard_normal(g.shape))
        out.append(noisy / noisy.sum(axis=1, keepdims=True))
    return out


def check_thm18(inst: BigramInstance, gate, rng, *, static: bool, noise_scales=(0.0, 0.3, 1.0)) -> list[Check]:
    """Thms 17-18 for one gate: exact KLs between the gated model and routed models.

    Thm 18: is ``KL(pi_g || r_gamma)`` equal to the summed expected router KL
    ``sum_t E KL(gamma*_t || gamma_t)``, or only bounded by it? Checked for the Bayes
    router and perturbed ("learned") routers. Thm 17: the Bayes router is the best causal
    router (compared with the exact per-prefix optimum). The assumption recorded: the
    gate is static (input-independent), for which the gated model is itself routed.

    The other reading of "=": on the joint space of (sequence, expert path), the KL from
    the Bayes-routed model to the learned one is the summed router KL, with prefixes
    drawn from the Bayes-routed model (the chain rule: an identity; for a static gate
    that model is ``pi_g``), checked by enumeration against :func:`router_kl`.
    """
    q = gated_model(gate, inst.P)
    star = bayes_router(inst, gate)
    best, cert = best_router(inst, q)
    r_star = routed_model(inst, star)
    kl_star = kl(q, r_star)
    kl_best = kl(q, routed_model(inst, best))
    out = []
    lhs = kl_star
    for scale in noise_scales:
        router = perturbed_router(star, scale, rng) if scale > 0 else star
        lhs = kl(q, routed_model(inst, router))
        rhs = router_kl(inst, q, star, router)
        joint = joint_path_kl(inst, star, router)
        rhs_joint = router_kl(inst, r_star, star, router)
        quant = {"noise": scale, "kl_gated_routed": lhs, "router_kl": rhs, "kl_joint": joint,
                 "router_kl_bayes_prefixes": rhs_joint, "kl_bayes_router": kl_star, "kl_best_router": kl_best,
                 "static_gate": static, "V": inst.V, "T": inst.T}
        out.append(Check("sequences: KL(pi_g||r_gamma) = summed router KL", EQUAL, rhs, lhs, ABS_TOL, quant, static))
        out.append(Check("sequences: KL(pi_g||r_gamma) <= summed router KL", UPPER, rhs, lhs, ABS_TOL, quant, static,
                         variant="router KL term dropped (bound 0)", variant_bound=0.0))
        out.append(Check("joint space (sequence, expert path): KL = summed router KL", EQUAL, rhs_joint, joint,
                         ABS_TOL * max(1.0, joint), quant, role=IDENTITY, variant="router KL halved",
                         variant_bound=0.5 * rhs_joint))
    out.append(Check("Thm 17: Bayes router is the best causal router", UPPER, kl_best, kl_star, ABS_TOL + cert,
                     {"kl_bayes_router": kl_star, "kl_best_router": kl_best, "kl_perturbed_router": lhs,
                      "static_gate": static}, static,
                     variant=f"the router perturbed by noise {noise_scales[-1]:g} is the best", variant_bound=kl_best,
                     variant_truth=lhs))
    return out


def thm18_gates(inst: BigramInstance, rng) -> list[tuple[np.ndarray, bool]]:
    """The gates to test: a random static gate and the exact robust gate (input-dependent)."""
    p = inst.expert_init.shape[0]
    n = inst.V**inst.T
    res = solvers.robust(inst.D, inst.P)
    return [(constant_gate(rng.dirichlet(np.ones(p)), n), True), (res.gate, False)]
