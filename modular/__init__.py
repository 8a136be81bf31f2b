"""The robust modular method at scale (torch), independent of any particular domain.

Users bring frozen experts, or only their cached log-probabilities on samples of each
domain (and of each expert), and get a robust gate ``g_theta`` and the least-favourable
mixture ``lam`` by a stochastic primal-dual fit (:func:`fit_robust_gate`); they can
then sample from the gated model (:mod:`modular.sampling`) and distil the gate into a
causal router (:mod:`modular.distill`).
"""

from modular.data import SampleSet, load_npz, sample_set
from modular.device import resolve_device
from modular.gate_io import LoadedGate, gate_config, load_gate, save_gate
from modular.gates import (
    GATE_KINDS,
    CausalSequenceGate,
    LinearGate,
    MLPGate,
    TabularGate,
    TransformerSequenceGate,
    gated_log_prob,
    make_gate,
)
from modular.primal_dual import (
    ADVERSARIES,
    FitInterrupted,
    Residuals,
    RobustGateResult,
    data_fingerprint,
    evaluate_nll,
    evaluate_z,
    fit_robust_gate,
    kl_project_capped_simplex,
    residuals,
    split_holdout,
    status_of,
)
from modular.tabular_exact import empirical_instance, solve_tabular_exact
from modular.distill import (
    RouterFit,
    bayes_router,
    kl_to_routed,
    optimal_router,
    routed_log_prob,
    router_divergence,
    router_probs,
    train_router,
)
from modular.sampling import pooled_sampler, rejection_sample, sir_sample
from modular.z_estimators import Z_ESTIMATORS, BiasedEstimatorWarning
