"""The lower side of the certificate ``phi(lam) <= robust value <= max_{lam in Lambda} lam . KL(D || q)``."""

from __future__ import annotations

import numpy as np

from theory.divergences import kl


def dual_function(D, P, lam, *, family: str = "full", cells=None) -> tuple[float, np.ndarray]:
    """The dual function ``phi(lam) = min_q sum_k lam_k KL(D_k || q)`` over the gate family.

    The minimiser is the best response to ``lam``
    (:func:`theory.best_response.best_response`); domains with ``lam_k = 0`` do not
    count, even where their KL is infinite. For any ``lam`` in Lambda, ``phi(lam)`` is a
    lower bound on the robust value.

    Returns
    -------
    value : float
    q : ndarray (n,)
        The best response.
    """
    from theory.best_response import best_response

    lam = np.asarray(lam, dtype=np.float64)
    q = best_response(D, P, lam, family=family, cells=cells)
    active = lam > 0
    return float(lam[active] @ kl(np.asarray(D)[active], q)), q

