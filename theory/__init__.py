"""Exact mathematics of robust modular generative models on finite outcome spaces.

numpy, scipy and cvxpy only (no torch). Domains ``D`` and experts ``P`` are
(p x n) arrays of probability distributions over n outcomes; all divergences in nats.

Public names are imported on first use (PEP 562 ``__getattr__``): importing a
submodule such as :mod:`theory.commandline` or :mod:`theory.errors` does not load
cvxpy and scipy.optimize, so a command can reject bad input before paying for them.
"""

from __future__ import annotations

import importlib

#: Submodule of every public name.
_HOME = {
    **dict.fromkeys(('GateWeightsFit', 'best_response', 'fit_gate_weights', 'water_fill'), 'theory.best_response'),
    **dict.fromkeys(('CapacityResult', 'blahut_arimoto'), 'theory.capacity'),
    **dict.fromkeys(('dual_function',), 'theory.certificate'),
    **dict.fromkeys(('solve_cvxpy',), 'theory.cvx'),
    **dict.fromkeys(('cross_entropy', 'entropy', 'jsd', 'kl', 'mixture'), 'theory.divergences'),
    **dict.fromkeys(('EmptyGateSpaceError', 'InfeasibleLambdaError', 'InputError', 'InvalidDistributionError', 'InvalidOptionError', 'ShapeMismatchError', 'SolverFailedError', 'UncoveredOutcomeError'), 'theory.errors'),
    **dict.fromkeys(('solve_dual',), 'theory.dual'),
    **dict.fromkeys(('solve_fixed_point',), 'theory.fixed_point'),
    **dict.fromkeys(('constant_gate', 'gate_from_q', 'gate_mass', 'gated_model', 'in_G1', 'partition_gate', 'pointwise_hull', 'renormalise_on_support', 'require_nonempty_G1'), 'theory.gates'),
    **dict.fromkeys(('FAMILIES',), 'theory.options'),
    **dict.fromkeys(('PriorSet',), 'theory.prior'),
    **dict.fromkeys(('PriorProjector', 'nearest_in_prior', 'project_capped_simplex'), 'theory.projection'),
    **dict.fromkeys(('INACCURATE', 'NOT_CONVERGED', 'OPTIMAL', 'SolverResult', 'ToleranceWarning'), 'theory.result'),
    **dict.fromkeys(('solve_fixed_mixture', 'solve_robust'), 'theory.solve'),
    **dict.fromkeys(('as_distributions', 'as_instance', 'as_weights'), 'theory.validation'),
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'theory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME))
