"""The two router codes agree: ``theory.claims.distillation`` (per-prefix tables on a
lexicographic enumeration) and ``modular.distill`` (per-sequence arrays), on the same
enumerable bigram instances and gates."""

import numpy as np
import pytest
from scipy.special import logsumexp

import modular.distill as md
import theory.claims.distillation as cd
from theory.divergences import kl
from theory.gates import constant_gate


def _instances():
    out = []
    for seed, (p, V, T) in enumerate([(2, 2, 3), (3, 3, 3), (2, 3, 4)]):
        rng = np.random.default_rng(100 + seed)
        inst = cd.random_bigram_instance(p, V, T, 0.3, rng)
        n = V**T
        gates = [constant_gate(rng.dirichlet(np.ones(p)), n), rng.dirichlet(np.ones(p), size=n)]
        out.append((inst, gates))
    inst = cd.conflict_instance(3, 3, 0.1, 0.2, np.random.default_rng(7))
    out.append((inst, [constant_gate([0.4, 0.6], 27), np.random.default_rng(8).dirichlet(np.ones(2), size=27)]))
    return out


def _per_sequence(inst, router):
    """A per-prefix router (list over t of V^t x p) read along every sequence: (n x T x p)."""
    n = inst.V**inst.T
    return np.stack([router[t][np.arange(n) // inst.V ** (inst.T - t)] for t in range(inst.T)], axis=1)


@pytest.mark.parametrize("case", range(4))
def test_router_codes_agree(case):
    inst, gates = _instances()[case]
    tokens = inst.sequences
    token_logp = np.log(inst.conditionals(inst.expert_init, inst.expert_trans)).transpose(1, 2, 0)
    rng = np.random.default_rng(case)
    for gate in gates:
        log_gate = np.log(gate)
        q = np.einsum("nk,kn->n", gate, inst.P)
        star_c = cd.bayes_router(inst, gate)
        star_m = md.bayes_router(tokens, token_logp, log_gate)
        np.testing.assert_allclose(_per_sequence(inst, star_c), star_m, atol=1e-12)
        other = cd.perturbed_router(star_c, 0.7, rng)
        for router in (star_c, other):
            seq = _per_sequence(inst, router)
            r_c = cd.routed_model(inst, router)
            log_r_m = md.routed_log_prob(seq, token_logp)
            np.testing.assert_allclose(np.log(r_c), log_r_m, atol=1e-12)
            assert md.kl_to_routed(np.log(q), log_r_m) == pytest.approx(kl(q / q.sum(), r_c), abs=1e-12)
            assert md.router_divergence(np.log(q), star_m, seq) == pytest.approx(
                cd.router_kl(inst, q / q.sum(), star_c, router), abs=1e-12)
        best_c, cert = cd.best_router(inst, q / q.sum())
        # modular's EM stops on a change in gamma (or after `iters`), without a certificate;
        # at its default 2000 iterations it can sit 8e-6 nats above the optimum (case 1).
        best_m = md.optimal_router(tokens, token_logp, log_gate, iters=20000)
        kl_c = kl(q / q.sum(), cd.routed_model(inst, best_c))
        kl_m = md.kl_to_routed(np.log(q), md.routed_log_prob(best_m, token_logp))
        assert kl_m == pytest.approx(kl_c, abs=cert + 1e-12)
        np.testing.assert_allclose(_per_sequence(inst, best_c), best_m, atol=1e-3)
