"""Command line: ``python -m modular fit DATA.npz [options]``.

Fits a robust gate to cached expert log-probabilities (format: :func:`modular.data.load_npz`)
and prints the least-favourable mixture, per-domain NLL (and KL when the domain entropies
are given), Z and the estimator used. Exit status (:mod:`theory.commandline`): 0 done,
2 bad input (one line on stderr), 3 a result that is not finite or not converged (still
printed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np
import torch

from modular.data import check_excess_defined, check_ids, load_npz
from modular.gates import make_gate
from modular.primal_dual import ADVERSARIES, fit_robust_gate
from modular.z_estimators import Z_ESTIMATORS, BiasedEstimatorWarning
from theory.commandline import (
    EXIT_NOT_CONVERGED,
    EXIT_OK,
    ArgumentParser,
    check_number,
    check_output_path,
    dumps,
    parse_vector,
    print_json,
    run_main,
    save_text,
)
from theory.errors import InputError

PROG = "python -m modular"


#: Learning rates that converged on the test instances (an MLP at 0.05 did not).
DEFAULT_LR = {"tabular": 0.05, "linear": 0.05, "mlp": 0.005, "sequence": 0.005}


def _entropies(text: str) -> np.ndarray:
    try:
        return parse_vector(text, "--entropy")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _OneLineParser(ArgumentParser):
    """The suite's parser (:class:`theory.commandline.ArgumentParser`): one-line usage errors, defaults in --help."""


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m modular", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    fit = sub.add_parser("fit", help="fit a robust gate to cached expert log-probabilities")
    fit.add_argument("data", help="DATA.npz with logp_k (and optionally feat_k, expert_logp_k, expert_feat_k)")
    fit.add_argument("--entropy", type=_entropies, help="h1,...,hp: domain entropies in nats (enables KL output)")
    fit.add_argument("--steps", type=int, default=2000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    fit.add_argument("--json", action="store_true", help="print the result as JSON")
    fit.add_argument("--gate", choices=["linear", "mlp", "tabular", "sequence"], default="linear",
                     help="gate network (tabular: feat_k are integer outcome ids; sequence: token ids)")
    fit.add_argument("--lr", type=float,
                     help="AdamW learning rate of the gate; default 0.05 (tabular, linear) or 0.005 (mlp, sequence: "
                          "at 0.05 the MLP gate diverged and lambda collapsed to a vertex on a 3-domain test set)")
    fit.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                     help="cosine: anneal the gate's learning rate to zero (Z and value closer to the optimum on long "
                          "minibatch runs, lambda further from lambda*; no gain with whole batches or short runs)")
    fit.add_argument("--lam-lr", type=float, default=0.1, help="exponentiated-gradient step on lambda")
    fit.add_argument("--batch-size", type=int, default=256, help="samples per domain (and expert) per step")
    fit.add_argument("--z-estimator", choices=Z_ESTIMATORS,
                     help="default: expert-samples when expert_logp_k are given, else data-shortcut (biased)")
    fit.add_argument("--adversary", choices=ADVERSARIES,
                     help="what lambda maximises; default: kl with --entropy, else excess")
    fit.add_argument("--lam-iterate", choices=["last", "average"], default="average")
    fit.add_argument("--checkpoint", help="checkpoint path (resumed when it exists)")
    fit.add_argument("--checkpoint-every", type=int, default=100)
    fit.add_argument("--out", help="also write the JSON result (with training history) to this path")
    fit.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    return parser


def _gate_for(kind: str, domains, p: int, seed: int, experts=None):
    feats = torch.cat([d.features for d in domains])
    integer = not torch.is_floating_point(feats)
    if kind in ("tabular", "sequence") and not integer:
        raise InputError(f"gate {kind!r} needs integer features feat_k (outcome ids or tokens)")
    if kind in ("linear", "mlp") and integer:
        feats = feats.double()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "tabular":
            return make_gate(kind, p, n_outcomes=check_ids(domains + (experts or []), p))
        if kind == "sequence":
            return make_gate(kind, p, vocab=check_ids(domains + (experts or []), p))
        flat = feats.reshape(len(feats), -1)
        return make_gate(kind, p, d=flat.shape[1], mean=flat.mean(0), std=flat.std(0))


def run_fit(args) -> dict:
    domains, experts = load_npz(args.data)
    p = domains[0].p
    if args.gate in ("linear", "mlp"):
        for s in domains + (experts or []):
            s.features = s.features.double().reshape(s.m, -1)
    if args.entropy is not None and len(args.entropy) != p:
        raise InputError(f"--entropy has {len(args.entropy)} values for p={p} domains")
    adversary = args.adversary or ("kl" if args.entropy is not None else "excess")
    if adversary == "excess":
        check_excess_defined(domains)
    gate = _gate_for(args.gate, domains, p, args.seed, experts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiasedEstimatorWarning)
        res = fit_robust_gate(
            gate, domains, experts, entropies=args.entropy, adversary=adversary, z_estimator=args.z_estimator,
            steps=args.steps, batch_size=args.batch_size, lam_lr=args.lam_lr,
            lr=DEFAULT_LR[args.gate] if args.lr is None else args.lr, lr_schedule=args.lr_schedule,
            lam_iterate=args.lam_iterate, device=args.device, seed=args.seed, progress=args.progress,
            checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
        )
    out = res.summary()
    out["gate"] = args.gate
    if not res.z_unbiased:
        out["note"] = ("Z estimated by the data shortcut (pooled data samples stand in for q0 = (1/p) sum_k pi_k): "
                       "biased unless the experts match their domains; give expert_logp_k for an unbiased Z")
    if args.out:
        full = dict(out, history={k: v.tolist() for k, v in res.history.items()})
        save_text(args.out, dumps(full, indent=1) + "\n")
    return out


def _print_table(out: dict) -> None:
    print(f"robust gate ({out['gate']}), adversary {out['adversary']}, {out['steps']} steps "
          f"in {out['seconds']:.2f} s on {out['device']} (seed {out['seed']})")
    header = "domain  lambda     nll" + ("       kl" if out["kl"] is not None else "")
    print(header)
    for k, (lam, nll) in enumerate(zip(out["lam"], out["nll"])):
        line = f"{k:>6}  {lam:.4f}  {nll:8.4f}"
        if out["kl"] is not None:
            line += f" {out['kl'][k]:8.4f}"
        print(line)
    print(f"Z = {out['z']:.5f} ({out['z_estimator']}{'' if out['z_unbiased'] else ', biased'})")
    if "note" in out:
        print(f"note: {out['note']}")


#: Numeric options checked before any data is read: (attribute, option, check_number keywords).
_NUMBER_CHECKS = (
    ("steps", "--steps", {"nonnegative": True}),
    ("batch_size", "--batch-size", {"positive": True}),
    ("lr", "--lr", {"positive": True}),
    ("lam_lr", "--lam-lr", {"positive": True}),
    ("checkpoint_every", "--checkpoint-every", {"positive": True}),
)


def _converged(out: dict) -> bool:
    """A result is final when its status (if it reports one) is optimal and its numbers are finite."""
    from theory.result import OPTIMAL

    numbers = [out.get("value"), out.get("z"), *(out.get("lam") or []), *(out.get("nll") or [])]
    finite = all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in numbers)
    return finite and out.get("status", OPTIMAL) == OPTIMAL


def main(argv=None) -> int:
    """Parse ``argv``, fit, print; exit status by the contract of :mod:`theory.commandline`."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        for attr, option, checks in _NUMBER_CHECKS:
            if getattr(args, attr, None) is not None:
                check_number(getattr(args, attr), option, **checks)
        for attr, option in (("out", "--out"), ("checkpoint", "--checkpoint")):
            if getattr(args, attr, None) is not None:
                check_output_path(getattr(args, attr), option)
        try:
            out = run_fit(args)
        except OSError as exc:
            raise InputError(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from None
        if args.json:
            print_json(out)
        else:
            _print_table(out)
        if not _converged(out):
            print(f"{PROG}: warning: the fit did not reach a finite, converged result (printed above)", file=sys.stderr)
            return EXIT_NOT_CONVERGED
        return EXIT_OK

    return run_main(PROG, body)
