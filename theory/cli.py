"""Command line of the theory package: ``python -m theory solve ...``.

Subcommands live in :data:`SUBCOMMANDS` (name -> (add_arguments, run)); ``claims`` is
registered when :mod:`theory.claims` provides ``add_arguments`` and ``run``. Exit
status: 0 success, 2 bad input (one line on stderr), 3 tolerance missed (the result is
still printed), 1 solver failure.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from theory.errors import InputError, SolverFailedError
from theory.prior import PriorSet
from theory.result import OPTIMAL

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_CONVERGED = 0, 1, 2, 3


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit status 2."""

    def error(self, message):
        raise InputError(message)


def _vector(text: str, name: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers, got {text!r}") from None


def _load(path: str, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {name} file {path!r}: {exc}") from None


def add_solve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domains", required=True, help="D.npy: (p x n) domain distributions")
    parser.add_argument("--experts", required=True, help="P.npy: (p x n) expert distributions")
    parser.add_argument("--solver", default="dual", choices=("dual", "cvxpy", "fixed-point"))
    parser.add_argument("--gate", default="full", choices=("full", "constant"), help="gate family")
    parser.add_argument("--partition", help="cells.npy: integer cell of each outcome (gate constant on cells)")
    parser.add_argument("--mixture", help="w1,...,wp: solve the fixed-mixture problem for these weights")
    parser.add_argument("--lambda-lower", help="l1,...,lp: lower bounds of the prior set Lambda")
    parser.add_argument("--lambda-upper", help="u1,...,up: upper bounds of the prior set Lambda")
    parser.add_argument("--tol", type=float, default=1e-9, help="certified gap (nats) to reach")
    parser.add_argument("--out", help="write the gated model q (n,) to this .npy file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_solve(args: argparse.Namespace) -> int:
    from theory.solve import solve_fixed_mixture, solve_robust
    from theory.validation import as_instance

    D, P = as_instance(_load(args.domains, "domains"), _load(args.experts, "experts"))
    p = D.shape[0]
    family, cells = args.gate, None
    if args.partition is not None:
        if args.gate != "full":
            raise InputError("--partition sets the gate family; it cannot be combined with --gate constant")
        family, cells = "partition", _load(args.partition, "partition")
    if args.tol <= 0:
        raise InputError(f"--tol must be positive, got {args.tol:g}")

    if args.mixture is not None:
        if args.lambda_lower is not None or args.lambda_upper is not None:
            raise InputError("--mixture fixes lambda; --lambda-lower/--lambda-upper apply to the robust problem only")
        fixed_solver = {"dual": "water-fill", "cvxpy": "cvxpy"}.get(args.solver)
        if fixed_solver is None:
            raise InputError(f"--mixture is solved by --solver dual (water-fill) or cvxpy, not {args.solver}")
        result = solve_fixed_mixture(D, P, _vector(args.mixture, "--mixture"), solver=fixed_solver, family=family, cells=cells)
    else:
        prior = None
        if args.lambda_lower is not None or args.lambda_upper is not None:
            lower = None if args.lambda_lower is None else _vector(args.lambda_lower, "--lambda-lower")
            upper = None if args.lambda_upper is None else _vector(args.lambda_upper, "--lambda-upper")
            prior = PriorSet(p, lower=lower, upper=upper)
        result = solve_robust(D, P, solver=args.solver, family=family, cells=cells, prior=prior, tol=args.tol)

    if args.out is not None:
        try:
            np.save(args.out, result.q)
        except OSError as exc:
            raise InputError(f"cannot write --out file {args.out!r}: {exc}") from None
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
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
    parser = _ArgumentParser(prog="python -m theory", description="Exact solvers for robust modular generative models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    for name, (add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name))
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return SUBCOMMANDS[args.command][1](args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SolverFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
