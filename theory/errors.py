"""Typed exceptions for bad input and infeasible problems.

Every exception is a ``ValueError`` so that generic callers can catch it, and every
message names the offending array, row, outcome or option on one line.
"""


class InputError(ValueError):
    """Base class for all input problems detected by the suite."""


class InvalidDistributionError(InputError):
    """An array meant to hold probability distributions does not (NaN, negative, wrong sum)."""


class ShapeMismatchError(InputError):
    """Arrays that must agree in shape do not."""


class UncoveredOutcomeError(InputError):
    """An outcome carries domain mass that no expert covers: every gate has infinite KL."""


class EmptyGateSpaceError(InputError):
    """No gate of the requested family gives a model of total mass one (G1 is empty)."""


class InfeasibleLambdaError(InputError):
    """The prior set Lambda for the mixture weights is empty."""


class InvalidOptionError(InputError):
    """An option (solver name, gate family, tolerance...) has an unusable value."""


class SolverFailedError(RuntimeError):
    """A third-party solver returned no usable solution (infeasible, unbounded or error status)."""
