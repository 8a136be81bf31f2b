"""Command line of the theory package: ``python -m theory solve ...``.

Subcommands live in :data:`SUBCOMMANDS` (name -> (add_arguments, run)); ``claims`` is
registered when :mod:`theory.claims` provides ``add_arguments`` and ``run``. Exit
status (:mod:`theory.commandline`): 0 success, 2 bad input (one line on stderr), 3
tolerance missed (the result is still printed), 1 solver failure, 130 interrupted.
"""

from __future__ import annotations

import argparse

from theory.commandline import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_CONVERGED,
    EXIT_OK,
    ArgumentParser,
    add_out_argument,
    check_number,
    check_output_path,
    load_array,
    parse_vector,
    print_json,
    run_main,
    save_array,
)
from theory.errors import InputError, SolverFailedError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_NOT_CONVERGED", "EXIT_OK", "SUBCOMMANDS", "build_parser", "main"]

PROG = "python -m theory"


def add_solve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domains", required=True, help="D.npy: (p x n) domain distributions")
    parser.add_argument("--experts", required=True, help="P.npy: (p x n) expert distributions")
    parser.add_argument("--solver", default="dual", choices=("dual", "cvxpy", "fixed-point"),
                        help="dual: certified dual ascent; cvxpy: Clarabel on the epigraph program; "
                             "fixed-point: the paper's Algorithm 1 (full family only)")
    parser.add_argument("--family", default="full", choices=("full", "constant"),
                        help="gate family: full (any gate in G1) or constant (input-independent weights)")
    parser.add_argument("--partition", help="cells.npy: integer cell of each outcome (gate constant on cells)")
    parser.add_argument("--mixture", help="w1,...,wp: solve the fixed-mixture problem for these weights")
    parser.add_argument("--lambda-lower", help="l1,...,lp: lower bounds of the prior set Lambda")
    parser.add_argument("--lambda-upper", help="u1,...,up: upper bounds of the prior set Lambda")
    parser.add_argument("--tol", type=float, default=1e-9, help="certified gap (nats) to reach")
    add_out_argument(parser, "the gated model q (n,) as an .npy array")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (NaN and infinities as null, listed under 'nonfinite')")


def _solved(solve, solver: str):
    """Run ``solve()``; a numerical failure inside a solver (not bad input) becomes one line, exit 1.

    Input problems are :class:`InputError` and pass through (exit 2); what else a solver
    raises on a validated instance (a root finder meeting NaN, an overflow) is a failure
    of that solver on that instance, reported as such rather than as a traceback.
    """
    try:
        return solve()
    except InputError:
        raise
    except (ArithmeticError, ValueError) as exc:
        raise SolverFailedError(f"solver {solver} failed on this instance ({type(exc).__name__}: {exc}); "
                                "another --solver may succeed") from exc


def run_solve(args: argparse.Namespace) -> int:
    check_number(args.tol, "--tol", positive=True)
    if args.out is not None:
        check_output_path(args.out)
    if args.partition is not None and args.family != "full":
        raise InputError("--partition sets the gate family; it cannot be combined with --family constant")
    family = args.family if args.partition is None else "partition"
    # The dual solver on the full family reads the arrays block by block (validation
    # included): they stay memory-mapped, never copied whole into memory.
    chunked = args.solver == "dual" and family == "full" and args.mixture is None
    mmap_mode = "r" if chunked else None
    domains = load_array(args.domains, "domains", mmap_mode=mmap_mode)
    experts = load_array(args.experts, "experts", mmap_mode=mmap_mode)
    cells = None if args.partition is None else load_array(args.partition, "partition")

    from theory.prior import PriorSet
    from theory.result import OPTIMAL
    from theory.solve import solve_fixed_mixture, solve_robust
    from theory.validation import as_instance

    if not chunked or domains.ndim != 2 or experts.shape != domains.shape:
        # Dense inputs for the other solvers; wrong shapes get the whole-array messages.
        domains, experts = as_instance(domains, experts)
    D, P = domains, experts
    p = D.shape[0]

    if args.mixture is not None:
        if args.lambda_lower is not None or args.lambda_upper is not None:
            raise InputError("--mixture fixes lambda; --lambda-lower/--lambda-upper apply to the robust problem only")
        fixed_solver = {"dual": "water-fill", "cvxpy": "cvxpy"}.get(args.solver)
        if fixed_solver is None:
            raise InputError(f"--mixture is solved by --solver dual (water-fill) or cvxpy, not {args.solver}")
        weights = parse_vector(args.mixture, "--mixture")
        result = _solved(lambda: solve_fixed_mixture(D, P, weights, solver=fixed_solver, family=family, cells=cells,
                                                       tol=args.tol),
                         fixed_solver)
    else:
        prior = None
        if args.lambda_lower is not None or args.lambda_upper is not None:
            lower = None if args.lambda_lower is None else parse_vector(args.lambda_lower, "--lambda-lower", allow_inf=True)
            upper = None if args.lambda_upper is None else parse_vector(args.lambda_upper, "--lambda-upper", allow_inf=True)
            prior = PriorSet(p, lower=lower, upper=upper)
        result = _solved(lambda: solve_robust(D, P, solver=args.solver, family=family, cells=cells, prior=prior,
                                              tol=args.tol), args.solver)

    if args.out is not None:
        save_array(args.out, result.q)
    summary = result.summary()
    if args.json:
        print_json(summary)
    else:
        lam = ", ".join(f"{v:.6f}" for v in result.lam)
        print(f"{summary.get('problem', 'robust')} problem, gate family {family}, solver {result.solver}: "
              f"n={summary['n']}, p={summary['p']}")
        print(f"value  {result.value:.12g} nats")
        print(f"gap    {result.gap:.3g} nats (certified: {result.lower:.12g} <= optimum <= {result.upper:.12g})")
        print(f"lambda [{lam}]")
        print(f"status {result.status} after {result.iterations} iterations, {result.seconds:.3g} s")
    return EXIT_OK if result.status == OPTIMAL else EXIT_NOT_CONVERGED


#: Subcommand name -> (add_arguments(parser), run(args) -> exit status).
SUBCOMMANDS = {"solve": (add_solve_arguments, run_solve)}

try:
    from theory import claims as _claims

    SUBCOMMANDS["claims"] = (_claims.add_arguments, _claims.run)
except (ImportError, AttributeError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Exact solvers for robust modular generative models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name))
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the subcommand under the exit-status contract."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        return SUBCOMMANDS[args.command][1](args)

    return run_main(PROG, body)
