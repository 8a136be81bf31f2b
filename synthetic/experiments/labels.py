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


def oracle(width: int) -> str:
    """The Oracle of width ``width``: one monolithic model retrained on each test mixture."""
    return f"{ORACLE} w{width}"


def group_dro(width: int) -> str:
    """Group DRO with a monolithic model of width ``width``."""
    return f"{GROUP_DRO} w{width}"


def doremi(width: int) -> str:
    """DoReMi-weighted monolithic model of width ``width``."""
    return f"{DOREMI} w{width}"


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
