"""Exact entropies, KLs and cross-entropies of the conflict task for any V, without enumeration.

Problem: for the domains of the conflict task (shift chains ``A: x_t = x_{t-1} + 1``,
``B: x_t = x_{t-1} - 1`` mod V with uniform noise and a uniform ``x_0``), their
contaminated variants and every mixture ``D_lam`` of them, compute ``H(D_lam)``,
``KL(D_lam || D_mu)`` and ``CE(D_lam || D_mu)`` exactly although ``V^T`` is far too
large to enumerate (``100^16``).

A shift chain's law of a step ``s = x_t - x_{t-1} mod V`` does not depend on ``x_{t-1}``:
it gives ``s = +1`` probability ``p_+``, ``s = -1`` probability ``p_-`` and each other
step ``p_0``. So ``log D(x) = -log V + n_+ log p_+ + n_- log p_- + n_0 log p_0`` depends
on x only through the counts ``(n_+, n_-)`` of +1 and -1 steps (``n_0 = T - 1 - n_+ - n_-``),
and so does every sequence-level mixture of such chains. The ``O(T^2)`` count classes
``c = (n_+, n_-)`` hold ``N_c = V (T-1)! / (n_+! n_-! n_0!) (V-2)^{n_0}`` sequences each
(V >= 3, so that +1, -1 and the other steps are distinct), all of equal probability
under every such domain. Hence, with ``d_c = N_c D(x in c)`` the class masses,

- ``KL(D || D') = KL(d || d')`` (within a class both laws are uniform);
- ``H(D) = H(d) + sum_c d_c log N_c``;
- ``CE(D || D') = CE(d || d') + sum_c d_c log N_c``.

For a model that is not a function of the counts, :func:`ngram_cross_entropy` gives
``CE(D || q)`` exactly by the chain rule when q is an n-gram model: the law of every
``(r+1)``-token window of a first-order chain is its start marginal times the
transitions, so the cost is ``O(T V^{r+1})``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, product

import numpy as np
from scipy.special import gammaln, logsumexp

from synthetic.markov import MarkovChain
from synthetic.sequences import MixtureDomain, all_sequences, check_sequences
from theory import cross_entropy, entropy, kl, mixture
from theory.errors import InputError, ShapeMismatchError


@dataclass(frozen=True)
class StepLaw:
    """A shift-type chain: probabilities of a +1 step, a -1 step, and of each other step."""

    plus: float
    minus: float
    other: float


def step_laws(V: int, noise: float) -> tuple[StepLaw, StepLaw]:
    """Step laws of the conflict task's A (+1) and B (-1), as built by :func:`synthetic.markov.conflict_task`."""
    if V < 3:
        raise InputError(f"the count classes need V >= 3 (for V = 2 the steps +1 and -1 coincide), got V={V}")
    hit, miss = 1 - noise + noise / V, noise / V
    return StepLaw(hit, miss, miss), StepLaw(miss, hit, miss)


class ConflictCounts:
    """The count classes of the conflict task (optionally contaminated) and its domains on them.

    Parameters
    ----------
    V, T : int
        Vocabulary (>= 3) and sequence length.
    noise : float
        Uniform-noise rate of both chains (:func:`synthetic.markov.shift_chain`).
    contamination : float
        Domain A is the sequence-level mixture ``(1 - rate) A + rate B``
        (:func:`synthetic.markov.contaminated`, ``kind="sequence"``), or, with
        ``kind="transition"``, the chain with mixed step laws.
    """

    def __init__(self, V: int, T: int, noise: float = 0.05, contamination: float = 0.0, kind: str = "sequence"):
        if T < 1:
            raise InputError(f"sequence length must be >= 1, got T={T}")
        if not 0 <= contamination <= 1:
            raise InputError(f"contamination rate must lie in [0, 1], got {contamination}")
        if kind not in ("sequence", "transition"):
            raise InputError(f"unknown contamination kind {kind!r}; use 'sequence' or 'transition'")
        self.V, self.T, self.noise, self.contamination = V, T, noise, contamination
        law_a, law_b = step_laws(V, noise)
        n = T - 1
        plus, minus = np.array([(i, j) for i in range(n + 1) for j in range(n + 1 - i)], dtype=np.int64).T.reshape(2, -1)
        zero = n - plus - minus
        self.n_plus, self.n_minus = plus, minus
        self.log_mult = (np.log(V) + gammaln(n + 1) - gammaln(plus + 1) - gammaln(minus + 1) - gammaln(zero + 1)
                         + zero * np.log(V - 2.0))
        log_b = self._log_seq(law_b)
        if kind == "transition":
            r = contamination
            mixed = StepLaw((1 - r) * law_a.plus + r * law_b.plus, (1 - r) * law_a.minus + r * law_b.minus,
                            (1 - r) * law_a.other + r * law_b.other)
            log_a = self._log_seq(mixed)
            comps_a = [(1.0, mixed)]
        else:
            with np.errstate(divide="ignore"):
                log_a = np.logaddexp(np.log1p(-contamination) + self._log_seq(law_a), np.log(contamination) + log_b)
            comps_a = [(w, law) for w, law in ((1 - contamination, law_a), (contamination, law_b)) if w > 0]
        #: Each domain as a sequence-level mixture of shift chains: (weight, step law) pairs.
        self.components = (comps_a, [(1.0, law_b)])
        #: ``log D_k(x)`` of one sequence of each class, (2 x classes): rows A (contaminated), B.
        self.log_seq = np.vstack([log_a, log_b])
        #: Class masses ``d_c = N_c D_k(x in c)``, (2 x classes); each row sums to one.
        self.D = np.exp(self.log_seq + self.log_mult)

    def _log_seq(self, law: StepLaw) -> np.ndarray:
        zero = self.T - 1 - self.n_plus - self.n_minus
        return (-np.log(self.V) + self.n_plus * np.log(law.plus) + self.n_minus * np.log(law.minus)
                + zero * np.log(law.other))

    @property
    def n_classes(self) -> int:
        return int(self.n_plus.size)

    def class_mixture(self, lam) -> np.ndarray:
        """Class masses of ``D_lam = lam_0 A + lam_1 B``."""
        return mixture(_weights(lam), self.D)

    def entropy(self, lam) -> float:
        """``H(D_lam)`` in nats."""
        d = self.class_mixture(lam)
        return float(entropy(d) + d @ self.log_mult)

    def kl(self, lam, mu) -> float:
        """``KL(D_lam || D_mu)`` in nats."""
        return float(kl(self.class_mixture(lam), self.class_mixture(mu)))

    def cross_entropy(self, lam, mu) -> float:
        """``CE(D_lam || D_mu) = -E_{D_lam} log D_mu(x)`` in nats (per sequence; divide by T per step)."""
        d = self.class_mixture(lam)
        return float(cross_entropy(d, self.class_mixture(mu)) + d @ self.log_mult)

    def jsd(self, lam) -> float:
        """``JSD_lam = H(D_lam) - sum_k lam_k H(D_k)``: what ``KL(D_lam || q)`` falls short of ``sum_k lam_k KL(D_k || q)``."""
        lam = _weights(lam)
        return float(self.entropy(lam) - lam @ np.array([self.entropy(e) for e in np.eye(2)]))

    def counts(self, seqs) -> tuple[np.ndarray, np.ndarray]:
        """``(n_+, n_-)`` of each row of an (m x T) sequence array."""
        x = check_sequences(seqs, self.V, self.T)
        steps = np.diff(x, axis=1) % self.V
        return (steps == 1).sum(axis=1), (steps == self.V - 1).sum(axis=1)

    def next_log_probs(self, seqs) -> np.ndarray:
        """``log D_k(x_t = v | x_<t)`` for every row, position and token v, (2 x m x T x V).

        Domain k is a sequence-level mixture ``sum_j w_j C_j`` of shift chains, so its
        next-token law is the posterior-weighted ``sum_j w_j(x_<t) C_j(. | x_{t-1})`` with
        ``w_j(x_<t)`` proportional to ``w_j C_j(x_<t)`` (a function of the prefix's counts).
        """
        x = check_sequences(seqs, self.V, self.T)
        m, T, V = x.shape[0], x.shape[1], self.V
        out = np.empty((2, m, T, V))
        out[:, :, 0, :] = -np.log(V)
        if T == 1:
            return out
        steps = np.diff(x, axis=1) % V
        plus, minus = steps == 1, steps == V - 1
        rows = np.arange(m)[:, None]
        up, down = (x[:, :-1] + 1) % V, (x[:, :-1] - 1) % V
        for k, comps in enumerate(self.components):
            terms = []
            for w, law in comps:
                lp = np.log([law.plus, law.minus, law.other])
                step_lp = np.where(plus, lp[0], np.where(minus, lp[1], lp[2]))
                # log w_j C_j(x_<t) for t = 1..T-1 (the prefix x_0..x_{t-1}; x_0 is uniform in every chain).
                prefix = np.log(w) + np.concatenate([np.zeros((m, 1)), np.cumsum(step_lp[:, :-1], axis=1)], axis=1)
                nxt = np.full((m, T - 1, V), lp[2])
                nxt[rows, np.arange(T - 1), up] = lp[0]
                nxt[rows, np.arange(T - 1), down] = lp[1]
                terms.append(prefix[:, :, None] + nxt)
            joint = logsumexp(np.stack(terms), axis=0)  # log sum_j w_j C_j(x_<t, v)
            out[k, :, 1:, :] = joint - logsumexp(joint, axis=2, keepdims=True)
        return out

    def step_probs(self, seqs) -> np.ndarray:
        """``D_k(x_t = x_{t-1} + 1 | x_<t)``, ``D_k(x_t = x_{t-1} - 1 | x_<t)`` and that of each other token.

        For t = 1..T-1 of every row: (2 x m x T-1 x 3). The compact form of
        :meth:`next_log_probs` (the law of a shift-chain mixture at t puts one value on the
        token one up, one on the token one down, and one on each of the V - 2 others).
        """
        x = check_sequences(seqs, self.V, self.T)
        m, n = x.shape[0], self.T - 1
        steps = np.diff(x, axis=1) % self.V
        plus, minus = steps == 1, steps == self.V - 1
        out = np.empty((2, m, n, 3))
        for k, comps in enumerate(self.components):
            laws = np.array([[law.plus, law.minus, law.other] for _, law in comps])  # (J, 3)
            lw = np.log([w for w, _ in comps])[:, None, None]
            lp = np.log(laws)[:, :, None, None]
            step_lp = np.where(plus, lp[:, 0], np.where(minus, lp[:, 1], lp[:, 2]))  # (J, m, n)
            # log w_j C_j(x_<t) up to a term common to all j (x_0 is uniform in every chain), t = 1..T-1.
            prefix = lw + np.concatenate([np.zeros((len(comps), m, 1)), np.cumsum(step_lp[:, :, :-1], axis=2)], axis=2)
            post = np.exp(prefix - logsumexp(prefix, axis=0, keepdims=True))
            out[k] = np.einsum("jmt,jc->mtc", post, laws)
        return out

    def model_kl(self, seqs, log_q_next, probs=None) -> np.ndarray:
        """``b_k(x) = sum_t KL(D_k(. | x_<t) || q(. | x_<t))`` for both domains, (2 x m).

        ``log_q_next`` (m x T x V): a model's next-token log-probabilities at each row's
        prefixes; ``probs``: :meth:`step_probs` of the rows (computed when omitted). Uses
        the form of D's laws: ``sum_v D(v) log q(v) = p_o S + (p_+ - p_o) log q(up) +
        (p_- - p_o) log q(down)`` with ``S = sum_v log q(v)``, so the cost is one pass over q.
        """
        x = check_sequences(seqs, self.V, self.T)
        lq = np.asarray(log_q_next, dtype=np.float64)
        if lq.shape != x.shape + (self.V,):
            raise ShapeMismatchError(f"need (m x T x V) = {x.shape + (self.V,)} log-probabilities, got {lq.shape}")
        probs = self.step_probs(x) if probs is None else probs
        V = self.V
        total = lq.sum(axis=2)  # (m, T)
        first = -np.log(V) - total[:, 0] / V
        rows, cols = np.arange(x.shape[0])[:, None], np.arange(1, self.T)[None, :]
        up, down = lq[rows, cols, (x[:, :-1] + 1) % V], lq[rows, cols, (x[:, :-1] - 1) % V]
        pu, pd, po = probs[..., 0], probs[..., 1], probs[..., 2]
        neg_h = pu * np.log(pu) + pd * np.log(pd) + (V - 2) * po * np.log(po)
        cross = po * total[None, :, 1:] + (pu - po) * up[None] + (pd - po) * down[None]
        return first[None] + (neg_h - cross).sum(axis=2)

    def class_members(self, c: int) -> np.ndarray:
        """Every sequence of class ``c``, (N_c x T); lexicographic in (steps, x_0)."""
        n, V = self.T - 1, self.V
        i, j = int(self.n_plus[c]), int(self.n_minus[c])
        combos = list(product(_OTHER_STEPS(V), repeat=n - i - j))
        others = np.array(combos, dtype=np.int64).reshape(len(combos), n - i - j)
        patterns = []
        for plus in combinations(range(n), i):
            rest = [p for p in range(n) if p not in plus]
            for minus in combinations(rest, j):
                free = [p for p in rest if p not in minus]
                steps = np.zeros((len(others), n), dtype=np.int64)
                steps[:, list(plus)] = 1
                steps[:, list(minus)] = V - 1
                steps[:, free] = others
                patterns.append(steps)
        steps = np.repeat(np.vstack(patterns), V, axis=0)
        x0 = np.tile(np.arange(V), len(steps) // V)[:, None]
        return (x0 + np.hstack([np.zeros((len(steps), 1), np.int64), np.cumsum(steps, axis=1)])) % V

    def sample_classes(self, total: int, seed: int, *, enumerate_up_to: int = 5000,
                       minimum: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Strata for ``E_{D_k}[f] = sum_c d_{k,c} E[f | c]``, shared by every domain and model.

        Within a class every domain (and every mixture of them) is uniform, so draws from
        the class are draws from ``D_k(. | x in c)`` for every k at once. A class of at
        most ``enumerate_up_to`` sequences is enumerated (its mean is exact; e.g. every
        class without "other" steps, which holds ``(1 - noise)^(T-1)`` of a clean domain);
        the other classes share about ``total`` uniform draws in proportion to the mean
        class mass of the two domains, at least ``minimum`` each so that their variance is
        estimable. A draw of class ``(n_+, n_-)``: a uniform ``x_0``, the +1 and -1 steps at
        uniformly random positions, every other step uniform over the ``V - 2`` steps that
        are neither.

        Returns the sequences (rows grouped by class), each row's class index and a
        boolean per class: enumerated (True) or sampled.
        """
        rng = np.random.default_rng(seed)
        n, V = self.T - 1, self.V
        size = np.exp(self.log_mult)
        complete = size <= enumerate_up_to + 0.5
        weight = np.where(complete, 0.0, self.D.mean(axis=0))
        alloc = np.maximum(minimum, np.round(total * weight / max(weight.sum(), 1e-300))).astype(np.int64)
        blocks, labels = [], []
        for c in range(self.n_classes):
            if complete[c]:
                x = self.class_members(c)
            else:
                m, i, j = int(alloc[c]), int(self.n_plus[c]), int(self.n_minus[c])
                other = _OTHER_STEPS(V)[rng.integers(0, V - 2, size=(m, n - i - j))]
                steps = rng.permuted(np.hstack([np.ones((m, i), np.int64), np.full((m, j), V - 1), other]), axis=1)
                x0 = rng.integers(0, V, size=(m, 1))
                x = (x0 + np.hstack([np.zeros((m, 1), np.int64), np.cumsum(steps, axis=1)])) % V
            blocks.append(x)
            labels.append(np.full(len(x), c))
        return np.vstack(blocks), np.concatenate(labels), complete

    def log_prob(self, seqs) -> np.ndarray:
        """``log D_k(x)`` of each row from its counts, (2 x m)."""
        plus, minus = self.counts(seqs)
        n = self.T - 1
        # Index of class (i, j) in the (i outer, j inner, i + j <= n) order of the constructor.
        index = plus * (n + 1) - plus * (plus - 1) // 2 + minus
        return self.log_seq[:, index]


def _OTHER_STEPS(V: int) -> np.ndarray:
    """The ``V - 2`` steps that are neither +1 nor -1: 0, 2, ..., V - 2."""
    return np.concatenate([[0], np.arange(2, V - 1)]).astype(np.int64)


def _weights(lam) -> np.ndarray:
    lam = np.asarray(lam, dtype=np.float64)
    if lam.shape != (2,):
        raise ShapeMismatchError(f"a mixture of the conflict task's two domains needs 2 weights, got shape {lam.shape}")
    return lam


def _first_order_components(domain) -> list[tuple[float, MarkovChain]]:
    if isinstance(domain, MarkovChain) and domain.order == 1:
        return [(1.0, domain)]
    if isinstance(domain, MixtureDomain):
        return [(w * v, c) for w, comp in zip(domain.weights, domain.components)
                for v, c in _first_order_components(comp)]
    raise InputError(f"{getattr(domain, 'name', domain)!r} is neither a first-order Markov chain nor a mixture of them")


def window_marginals(domain, t: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Law of the tokens ``x_{s..t}``, ``s = max(t - r, 0)``, of a first-order chain (or a mixture).

    Returns the ``V^L`` windows (``L = t - s + 1``, lexicographic) and their probabilities.
    """
    comps = _first_order_components(domain)
    V = comps[0][1].V
    L = min(t, r) + 1
    windows = all_sequences(V, L, limit=max(V**L, 1))
    probs = np.zeros(len(windows))
    for w, chain in comps:
        start = chain.initial.copy()
        step = chain.trans[:V]
        for _ in range(t - L + 1):
            start = start @ step
        p = start[windows[:, 0]]
        for i in range(1, L):
            p = p * step[windows[:, i - 1], windows[:, i]]
        probs += w * p
    return windows, probs


def ngram_cross_entropy(domain, model) -> float:
    """``CE(D || q) = sum_t E_D[-log q(x_t | x_<t)]`` for an n-gram model q, exactly (nats per sequence).

    ``D`` is a first-order Markov chain or a sequence-level mixture of them; q reads at
    most ``r = order - 1`` previous tokens, so position t needs only the law of the
    window ``x_{t-r..t}`` (:func:`window_marginals`).
    """
    r = model.order - 1
    if (model.V, model.T) != (domain.V, domain.T):
        raise ShapeMismatchError(f"model (V, T) = ({model.V}, {model.T}) differs from the domain's ({domain.V}, {domain.T})")
    total = 0.0
    for t in range(domain.T):
        windows, probs = window_marginals(domain, t, r)
        # Tokens before the window are never read by q; zeros fill the prefix.
        prefix = np.zeros((len(windows), t + 1), dtype=np.int64)
        prefix[:, t + 1 - windows.shape[1]:] = windows
        total -= float(probs @ model.token_log_probs(prefix)[:, t])
    return total
