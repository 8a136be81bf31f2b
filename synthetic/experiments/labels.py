"""The model labels of the experiment tables, the one place that spells them.

Tables carry one row per (model, test mixture); figures and captions select rows by
these names, never by matching parts of a label.
"""

from __future__ import annotations

ROBUST = "robust gate"
STATIC = "best static gate"
UNIFORM_STATIC = "uniform static gate"
ORACLE = "Oracle"
GROUP_DRO = "Group DRO"
DOREMI = "DoReMi"
LAM_STAR_TRAINED = "lam*-trained"

#: The routers of the distillation experiment, in plotting order.
LEARNED_ROUTER, BAYES_ROUTER, OPTIMAL_ROUTER = "learned router", "Bayes router", "optimal router"
ROUTERS = (LEARNED_ROUTER, BAYES_ROUTER, OPTIMAL_ROUTER)


def monolithic(width: int) -> str:
    """A monolithic torch model of embedding width ``width`` trained on the even mixture."""
    return f"monolithic w{width} (even)"


def sized(model: str, width: int) -> str:
    """``model`` (e.g. :data:`ORACLE`, :data:`GROUP_DRO`, :data:`DOREMI`) with a monolithic model of width ``width``.

    For the Oracle: one such model retrained on each test mixture.
    """
    return f"{model} w{width}"


def monolithic_ngram(order: int) -> str:
    """A monolithic order-``order`` n-gram fitted on the pooled domains at even weights."""
    return f"monolithic {order}-gram"


def expert(name: str) -> str:
    """Domain ``name``'s own expert used alone."""
    return f"expert {name}"


def expert_alone(name: str) -> str:
    """Domain ``name``'s expert used alone on every test mixture (the lambda-sweep's spelling)."""
    return f"expert {name} alone"


def routed(router: str) -> str:
    """The experts routed token by token by ``router``."""
    return f"routed ({router})"


def kl_gate_to_routed(router: str) -> str:
    """Summary column: ``KL(pi_g || routed model)`` for ``router``."""
    return f"kl_gate_to_routed ({router})"
