"""The record one claim check returns: both sides of a claim on one instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A claim counts as violated on an instance only when its slack is below
#: ``-(ABS_TOL + certified solver gap of that instance)``.
ABS_TOL = 1e-7

#: The claim says truth <= bound (an upper bound).
UPPER = "upper"
#: The claim says truth >= bound (a lower bound).
LOWER = "lower"
#: The claim says truth == bound.
EQUAL = "equal"
#: A measured comparison that the paper suggests but does not state as a theorem;
#: reported, never part of the verdict.
OBSERVATION = "observation"

KINDS = (UPPER, LOWER, EQUAL, OBSERVATION)

#: The check tests the claim on an instance where it could have failed.
EVIDENCE = "evidence"
#: The check is true by construction (an algebraic identity, a specialisation, a definition):
#: it tests the code, not the claim, and is never counted as empirical support.
IDENTITY = "identity"
#: The check follows from the solver's own certificate: a consistency check, not evidence.
CONSISTENCY = "consistency"

ROLES = (EVIDENCE, IDENTITY, CONSISTENCY)


def _slack(kind: str, bound: float, truth: float) -> float:
    if kind == UPPER or kind == OBSERVATION:
        return bound - truth
    if kind == LOWER:
        return truth - bound
    return -abs(bound - truth)


@dataclass
class Check:
    """One side-by-side evaluation of a claim on one instance.

    ``slack`` is the margin by which the claim holds: ``bound - truth`` for an upper
    bound, ``truth - bound`` for a lower bound, ``-|bound - truth|`` for an identity
    (so a negative slack is always against the claim). ``tol`` is the tolerance the
    verdict allows (``ABS_TOL`` plus any certified solver gap that enters the sides).
    ``meets_assumption`` says whether the instance satisfies the extra assumption
    under which a claim that needs one is expected to hold (None: not applicable).

    ``role`` says what the check can show (:data:`EVIDENCE`, :data:`IDENTITY`,
    :data:`CONSISTENCY`). ``variant`` describes a deliberately false version of the
    claim, evaluated on the same instance with the same kind and tolerance:
    ``variant_bound`` (and ``variant_truth`` when the false version changes the other
    side too) replace the sides. A check whose variant is never violated could not have
    failed: the power of the check.
    """

    part: str
    kind: str
    bound: float
    truth: float
    tol: float = ABS_TOL
    quantities: dict[str, Any] = field(default_factory=dict)
    meets_assumption: bool | None = None
    role: str = EVIDENCE
    variant: str | None = None
    variant_bound: float | None = None
    variant_truth: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown check kind {self.kind!r}; expected one of {KINDS}")
        if self.role not in ROLES:
            raise ValueError(f"unknown check role {self.role!r}; expected one of {ROLES}")
        if (self.variant is None) != (self.variant_bound is None):
            raise ValueError("a false variant needs both its description and its bound")
        self.bound = float(self.bound)
        self.truth = float(self.truth)
        self.tol = float(self.tol)
        if self.variant_bound is not None:
            self.variant_bound = float(self.variant_bound)
            self.variant_truth = self.truth if self.variant_truth is None else float(self.variant_truth)

    @property
    def slack(self) -> float:
        return _slack(self.kind, self.bound, self.truth)

    @property
    def violated(self) -> bool:
        return self.kind != OBSERVATION and not (self.slack >= -self.tol)

    @property
    def variant_slack(self) -> float | None:
        if self.variant_bound is None:
            return None
        return _slack(self.kind, self.variant_bound, self.variant_truth)

    @property
    def variant_violated(self) -> bool | None:
        """Whether the false variant is rejected on this instance (None: no variant)."""
        if self.variant_bound is None:
            return None
        return not (self.variant_slack >= -self.tol)

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "kind": self.kind,
            "bound": self.bound,
            "truth": self.truth,
            "slack": self.slack,
            "tol": self.tol,
            "meets_assumption": self.meets_assumption,
            "role": self.role,
            "variant": self.variant,
            "variant_bound": self.variant_bound,
            "variant_truth": self.variant_truth,
            "quantities": {k: to_jsonable(v) for k, v in self.quantities.items()},
        }


def to_jsonable(value, digits: int = 12):
    """Arrays and numpy scalars as (rounded) Python lists and floats for JSON."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return value.tolist()
        return to_jsonable(value.astype(np.float64).tolist(), digits)  # non-finite entries as strings
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return round(v, digits) if np.isfinite(v) else str(v)
    return value


#: How much :func:`tightened` moves a bound: the default false variant of a claim.
TIGHTEN = 0.1


def tightened(kind: str, bound: float, fraction: float = TIGHTEN) -> float:
    """The bound made ``fraction`` of its size stronger: a deliberately false claim if the bound is tight.

    An upper bound moves down by ``fraction |bound|``, a lower bound up; the variant is
    false wherever the true bound is attained within that margin.
    """
    if not np.isfinite(bound):
        return bound  # an infinite bound stays vacuous
    if kind == UPPER:
        return bound - fraction * abs(bound)
    if kind == LOWER:
        return bound + fraction * abs(bound)
    raise ValueError(f"tightened() needs an upper or lower bound, got {kind!r}")


def tightened_name(kind: str, fraction: float = TIGHTEN) -> str:
    return f"bound {'lowered' if kind == UPPER else 'raised'} by {fraction:.0%} of its size"
