"""Exact mathematics of robust modular generative models on finite outcome spaces.

numpy, scipy and cvxpy only (no torch). Domains ``D`` and experts ``P`` are
(p x n) arrays of probability distributions over n outcomes; all divergences in nats.
"""

from theory.divergences import cross_entropy, entropy, jsd, kl, mixture
from theory.errors import (
    EmptyGateSpaceError,
    InfeasibleLambdaError,
    InputError,
    InvalidDistributionError,
    InvalidOptionError,
    ShapeMismatchError,
    UncoveredOutcomeError,
)
from theory.gates import (
    constant_gate,
    gate_from_q,
    gate_mass,
    gated_model,
    in_G1,
    partition_gate,
    pointwise_hull,
    renormalise_on_support,
    require_nonempty_G1,
)
from theory.prior import PriorSet
from theory.result import NOT_CONVERGED, OPTIMAL, SolverResult, ToleranceWarning
from theory.validation import as_distributions, as_instance, as_weights
