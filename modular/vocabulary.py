"""The names the fit's options take, and its default tolerances (no torch here).

One home for the option vocabularies of :func:`modular.fit_robust_gate`, the gates and
the Z estimators, so that the command line builds its parser (and ``--help``) without
importing torch: ``python -m modular fit --help`` then starts in a fraction of the time
torch takes to import.
"""

#: What lambda maximises: the domains' NLL, their excess over each domain's own expert, or KL.
ADVERSARIES = ("nll", "excess", "kl")
#: Which iterate the fit returns (of lambda and of the gate's parameters).
ITERATES = ("last", "average", "poly")
LR_SCHEDULES = ("inv-sqrt", "constant", "cosine")
CONVERGED, NOT_CONVERGED = "converged", "not_converged"
#: Default tolerances of the certificate: the adversary's gap (nats) and |Z - 1|.
TOL_GAP, TOL_Z = 0.01, 0.01
GATE_KINDS = ("tabular", "linear", "mlp", "sequence", "transformer")
Z_ESTIMATORS = ("expert-samples", "importance", "data-shortcut")
#: Estimators whose expectation is the true Z whatever the experts and domains.
UNBIASED = frozenset({"expert-samples", "importance"})
