"""Exact mathematics of robust modular generative models on finite outcome spaces.

numpy, scipy and cvxpy only (no torch). Domains ``D`` and experts ``P`` are
(p x n) arrays of probability distributions over n outcomes; all divergences in nats.

The public names below are imported on first use (PEP 562), so that ``import theory``
and ``from theory.errors import InputError`` stay cheap: cvxpy, for instance, is only
imported when the cvxpy solver or the polytope projection is used.
"""

from __future__ import annotations

from theory.lazy import lazy_exports

# Eager: the submodule theory.best_response would otherwise shadow the function of that
# name once imported (the import system binds submodules on their package).
from theory.best_response import best_response

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "theory.best_response": ("GateWeightsFit", "fit_gate_weights"),
    "theory.simplex": ("project_capped_simplex", "restore_mass", "water_fill"),
    "theory.capacity": ("CapacityResult", "blahut_arimoto"),
    "theory.certificate": ("dual_function",),
    "theory.cvx": ("solve_cvxpy",),
    "theory.divergences": ("cross_entropy", "entropy", "jsd", "kl", "mixture"),
    "theory.errors": (
        "EmptyGateSpaceError",
        "InfeasibleLambdaError",
        "InputError",
        "InvalidDistributionError",
        "InvalidOptionError",
        "ShapeMismatchError",
        "SolverFailedError",
        "UncoveredOutcomeError",
    ),
    "theory.dual": ("solve_dual",),
    "theory.fixed_point": ("solve_fixed_point",),
    "theory.gates": (
        "CompactGate",
        "compact_gate_from_q",
        "constant_gate",
        "gate_from_q",
        "gate_mass",
        "gated_model",
        "in_G1",
        "partition_gate",
        "pointwise_hull",
        "renormalise_on_support",
        "require_nonempty_G1",
    ),
    "theory.options": ("FAMILIES",),
    "theory.prior": ("PriorProjector", "PriorSet", "nearest_in_prior"),
    "theory.result": ("ConvergenceWarning", "INACCURATE", "NOT_CONVERGED", "OPTIMAL", "SolverResult", "warn_if_missed"),
    "theory.solve": ("solve_fixed_mixture", "solve_robust"),
    "theory.validation": ("as_distributions", "as_instance", "as_weights"),
}
__all__, __getattr__, __dir__ = lazy_exports("theory", _EXPORTS, globals(), extra=("best_response",))
