"""Command line: ``python -m modular fit DATA.npz [options]``, ``python -m modular score GATE DATA.npz``.

``fit`` fits a robust gate to cached expert log-probabilities (format:
:func:`modular.data.load_npz`) and prints the least-favourable mixture, per-domain NLL
(and KL when the domain entropies are given), Z, the estimator used, the optimality
residuals and the status; ``score`` evaluates a saved gate on a data file. Exit status:
0 converged, 3 not converged (the result is still printed), 2 bad input (one line on
stderr), 130 interrupted (after saving the checkpoint).
"""

from __future__ import annotations

import argparse

import numpy as np

from modular.tools_cli import TOOL_COMMANDS, register as register_tools
from modular.vocabulary import ADVERSARIES, ITERATES, LR_SCHEDULES, TOL_GAP, TOL_Z, Z_ESTIMATORS
from theory.commandline import ArgumentParser, add_out_argument, positive as _positive, run_main, vector

PROG = "python -m modular"


def _entropies(text: str) -> np.ndarray:
    return vector("--entropy")(text)


def _add_fit(sub) -> None:
    fit = sub.add_parser("fit", help="fit a robust gate to cached expert log-probabilities",
                         description="Fit a robust gate. Exit 0 converged, 3 not converged (result printed), "
                                     "2 bad input, 130 interrupted (checkpoint saved).")
    fit.add_argument("data", help="DATA.npz with logp_k (and optionally feat_k, expert_logp_k, expert_feat_k)")
    fit.add_argument("--entropy", type=_entropies, help="h1,...,hp: domain entropies in nats (enables KL output)")
    fit.add_argument("--solver", choices=["stochastic", "exact"], default="stochastic",
                     help="exact: theory's certified dual solve on the samples' histograms (tabular gate, KL game "
                          "only); stochastic: the primal-dual fit (any gate)")
    fit.add_argument("--steps", "--max-steps", dest="steps", type=_positive(int), default=2000,
                     help="step budget (with --until-converged: the most steps taken); default 2000")
    fit.add_argument("--until-converged", action="store_true",
                     help="stop once the whole-set residuals are within --tol-gap and --tol-z at 3 consecutive "
                          "checks (every --check-every steps)")
    fit.add_argument("--check-every", type=_positive(int), default=100,
                     help="steps between whole-set residual checks (default 100)")
    fit.add_argument("--tol-gap", type=_positive(float, zero=True), default=TOL_GAP,
                     help=f"tolerance on the adversary's gap max_k a_k - lam.a in nats (default {TOL_GAP})")
    fit.add_argument("--tol-z", type=_positive(float, zero=True), default=TOL_Z,
                     help=f"tolerance on |Z - 1| (default {TOL_Z})")
    fit.add_argument("--holdout", type=_positive(float, below_one=True),
                     help="keep this fraction of every sample set out of training and report NLL, KL or excess, "
                          "and Z on it")
    fit.add_argument("--z-holdout", type=_positive(float, zero=True, below_one=True),
                     help="fraction of every expert-sample set kept out of training to measure Z on samples the "
                          "gate was not fitted on (reported with its standard error; the status needs it within "
                          "--tol-z of one up to 2 standard errors); default 0.2 with the importance estimator and "
                          "unweighted expert sets of >= 100 samples (none for expert-samples), 0 turns it off")
    fit.add_argument("--no-z-debias", dest="z_debias", action="store_false",
                     help="do not move the training constraint's Z target by the measured optimism "
                          "(held-out minus training Z); by default the held-out Z is driven to one")
    fit.add_argument("--validation", metavar="VAL.npz",
                     help="held-out samples of every domain (and expert) in the format of DATA.npz, e.g. the cache's "
                          "VAL.npz: the fit returns the checked iterate with the best robust objective on them "
                          "(renormalised by Z), among those within tolerance, and measures the held-out Z on their "
                          "expert samples (in place of --z-holdout)")
    fit.add_argument("--start", choices=["init", "best-static"], default="init",
                     help="init: the gate's own initialisation; best-static: the best constant gate of the game "
                          "on the training samples, solved exactly (the fit then starts at Z = 1)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    fit.add_argument("--threads", type=_positive(int),
                     help="torch CPU threads (default 1 on CPU: the fit's small steps measured 6-21x slower with "
                          "torch's default of one thread per core on a shared machine, with identical results)")
    fit.add_argument("--json", action="store_true", help="print the result as JSON (non-finite numbers as null)")
    fit.add_argument("--gate", choices=["linear", "mlp", "tabular", "sequence"], default="linear",
                     help="gate network (tabular: feat_k are integer outcome ids; sequence: token ids)")
    fit.add_argument("--lr", type=_positive(float),
                     help="AdamW learning rate of the gate; default 0.05 (tabular, linear) or 0.005 (mlp, sequence: "
                          "at 0.05 the MLP gate diverged and lambda collapsed to a vertex on a 3-domain test set)")
    fit.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="inv-sqrt",
                     help="step-size schedule shared by the gate, lambda and mu: inv-sqrt (default) "
                          "(1 + t/--decay-steps)^-1/2, constant, or cosine (annealed to zero at --steps)")
    fit.add_argument("--decay-steps", type=_positive(float), default=100.0,
                     help="time scale of the inv-sqrt schedule (default 100)")
    fit.add_argument("--lam-lr", type=_positive(float), default=0.1, help="exponentiated-gradient step on lambda")
    fit.add_argument("--mu-lr", type=_positive(float, zero=True), default=0.05,
                     help="dual-ascent step on the multiplier of Z = 1")
    fit.add_argument("--batch-size", type=_positive(int), default=256, help="samples per domain (and expert) per step")
    fit.add_argument("--z-estimator", choices=Z_ESTIMATORS,
                     help="default: importance when expert_logp_k are given, else data-shortcut (biased)")
    fit.add_argument("--adversary", choices=ADVERSARIES,
                     help="what lambda maximises; default: kl with --entropy, else excess")
    fit.add_argument("--lam-iterate", choices=ITERATES, default="poly",
                     help="returned lambda: poly (polynomial-decay average, default), average (uniform over the "
                          "second half), last")
    fit.add_argument("--gate-iterate", choices=ITERATES, default="poly",
                     help="returned gate: poly (polynomial-decay average of the parameters, default), average, last")
    fit.add_argument("--lambda-lower", type=vector("--lambda-lower"),
                     help="l1,...,lp: lower bounds on lambda")
    fit.add_argument("--lambda-upper", type=vector("--lambda-upper"),
                     help="u1,...,up: upper bounds on lambda")
    fit.add_argument("--checkpoint", help="checkpoint path (resumed when it exists; refused if of other data)")
    fit.add_argument("--checkpoint-every", type=_positive(int), default=100)
    fit.add_argument("--save", help="write the fitted gate here (loadable by modular.load_gate, no pickled code)")
    fit.add_argument("--report", help="write training curves (CSV) and one PNG into this directory")
    add_out_argument(fit, "the JSON result (with its training history)")
    fit.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    fit.set_defaults(handler="run_fit")


def _add_score(sub) -> None:
    score = sub.add_parser("score", help="evaluate a saved gate on a data file",
                           description="Per-domain NLL, excess over each domain's own expert, KL (with --entropy), "
                                       "Z and the NLL of given mixtures, for a gate written by fit --save.")
    score.add_argument("gate", help="gate file written by python -m modular fit --save")
    score.add_argument("data", help="DATA.npz (same format as for fit)")
    score.add_argument("--entropy", type=_entropies, help="h1,...,hp: domain entropies in nats")
    score.add_argument("--mixture", action="append", type=vector("--mixture"), default=[],
                       help="l1,...,lp: also report the NLL of this mixture of the domains (repeatable)")
    score.add_argument("--threads", type=_positive(int), help="torch CPU threads (default 1 on CPU)")
    score.add_argument("--json", action="store_true", help="print the result as JSON")
    score.set_defaults(handler="run_score")


def build_parser() -> argparse.ArgumentParser:
    """The parser; a subcommand is one ``_add_NAME(sub)`` that sets ``handler``, the name of its function in
    :mod:`modular.fit_commands` (returns (result, exit code))."""
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit(sub)
    _add_score(sub)
    register_tools(sub)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the subcommand under the exit-status contract of :mod:`theory.commandline`."""
    return run_main(None, lambda: _main(argv))  # messages start "error: " (PROG names the usage)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.command in TOOL_COMMANDS:
        from modular.tools_cli import run_tool

        return run_tool(args)
    from modular.fit_commands import run  # torch: imported only once the arguments are good

    return run(args)
