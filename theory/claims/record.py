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


@dataclass
class Check:
    """One side-by-side evaluation of a claim on one instance.

    ``slack`` is the margin by which the claim holds: ``bound - truth`` for an upper
    bound, ``truth - bound`` for a lower bound, ``-|bound - truth|`` for an identity
    (so a negative slack is always against the claim). ``tol`` is the tolerance the
    verdict allows (``ABS_TOL`` plus any certified solver gap that enters the sides).
    ``meets_assumption`` says whether the instance satisfies the extra assumption
    under which a claim that needs one is expected to hold (None: not applicable).
    """

    part: str
    kind: str
    bound: float
    truth: float
    tol: float = ABS_TOL
    quantities: dict[str, Any] = field(default_factory=dict)
    meets_assumption: bool | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown check kind {self.kind!r}; expected one of {KINDS}")
        self.bound = float(self.bound)
        self.truth = float(self.truth)
        self.tol = float(self.tol)

    @property
    def slack(self) -> float:
        if self.kind == UPPER or self.kind == OBSERVATION:
            return self.bound - self.truth
        if self.kind == LOWER:
            return self.truth - self.bound
        return -abs(self.bound - self.truth)

    @property
    def violated(self) -> bool:
        return self.kind != OBSERVATION and not (self.slack >= -self.tol)

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "kind": self.kind,
            "bound": self.bound,
            "truth": self.truth,
            "slack": self.slack,
            "tol": self.tol,
            "meets_assumption": self.meets_assumption,
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
