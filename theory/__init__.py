"""Exact mathematics of robust modular generative models on finite outcome spaces.

numpy, scipy and cvxpy only (no torch). Domains ``D`` and experts ``P`` are
(p x n) arrays of probability distributions over n outcomes; all divergences in nats.
"""

from theory.best_response import GateWeightsFit, best_response, fit_gate_weights, water_fill
from theory.capacity import CapacityResult, blahut_arimoto
from theory.certificate import dual_function
from theory.cvx import solve_cvxpy
from theory.divergences import cross_entropy, entropy, jsd, kl, mixture
from theory.errors import (
    EmptyGateSpaceError,
    InfeasibleLambdaError,
    InputError,
    InvalidDistributionError,
    InvalidOptionError,
    ShapeMismatchError,
    SolverFailedError,
    UncoveredOutcomeError,
)
from theory.dual import solve_dual
from theory.fixed_point import solve_fixed_point
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
from theory.options import FAMILIES
from theory.prior import PriorSet
from theory.projection import PriorProjector, nearest_in_prior, project_capped_simplex
from theory.result import INACCURATE, NOT_CONVERGED, OPTIMAL, SolverResult, ToleranceWarning
from theory.solve import solve_fixed_mixture, solve_robust
from theory.validation import as_distributions, as_instance, as_weights
