"""The robust modular method at scale (torch), independent of any particular domain.

Users bring frozen experts, or only their cached log-probabilities on samples of each
domain (and of each expert), and get a robust gate ``g_theta`` and the least-favourable
mixture ``lam`` by a stochastic primal-dual fit (:func:`fit_robust_gate`); they can
then sample from the gated model (:mod:`modular.sampling`) and distil the gate into a
causal router (:mod:`modular.distill`).

Names are imported on first use (PEP 562), so that ``python -m modular fit --help``
and the torch-free modules (:mod:`modular.vocabulary`) do not pay for importing torch.
"""

from theory.lazy import lazy_exports

_EXPORTS = {
    "modular.data": (
        "SampleSet", "load_npz", "sample_set",
    ),
    "modular.device": (
        "resolve_device",
    ),
    "modular.gate_io": (
        "LoadedGate", "gate_config", "load_gate", "save_gate",
    ),
    "modular.gates": (
        "GATE_KINDS", "CausalSequenceGate", "LinearGate", "MLPGate", "TabularGate", "TransformerSequenceGate",
        "gated_log_prob", "make_gate",
    ),
    "modular.primal_dual": (
        "ADVERSARIES", "FitInterrupted", "Residuals", "RobustGateResult", "data_fingerprint", "evaluate_nll",
        "evaluate_z", "fit_robust_gate", "kl_project_capped_simplex", "residuals", "split_holdout",
        "status_of",
    ),
    "modular.tabular_exact": (
        "empirical_instance", "solve_tabular_exact",
    ),
    "modular.distill": (
        "RouterFit", "bayes_router", "kl_to_routed", "optimal_router", "routed_log_prob", "router_divergence",
        "router_probs", "train_router",
    ),
    "modular.sampling": (
        "pooled_sampler", "rejection_sample", "sir_sample",
    ),
    "modular.z_estimators": (
        "Z_ESTIMATORS", "BiasedEstimatorWarning",
    ),
}
__all__, __getattr__, __dir__ = lazy_exports("modular", _EXPORTS, globals())
