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
import json
import os
import warnings

import numpy as np
import torch

from modular.data import check_excess_defined, load_npz
from modular.gate_io import load_gate, save_gate
from modular.gates import make_gate
from modular.primal_dual import (
    ADVERSARIES,
    CONVERGED,
    ITERATES,
    LR_SCHEDULES,
    TOL_GAP,
    TOL_Z,
    FitInterrupted,
    _finite_or_none,
    check_fit_inputs,
    data_fingerprint,
    evaluate_nll,
    evaluate_z,
    fit_robust_gate,
    residuals,
    split_holdout,
)
from modular.tools_cli import TOOL_COMMANDS, register as register_tools, run_tool
from modular.z_estimators import UNBIASED, Z_ESTIMATORS, BiasedEstimatorWarning
from theory.commandline import (
    EXIT_NOT_CONVERGED,
    EXIT_OK,
    ArgumentParser,
    add_out_argument,
    as_input_error,
    check_output_path,
    positive as _positive,
    print_json,
    run_main,
    save_text,
    vector,
)
from theory.errors import InputError
from theory.prior import PriorSet

PROG = "python -m modular"
#: Learning rates that converged on the test instances (an MLP at 0.05 did not).
DEFAULT_LR = {"tabular": 0.05, "linear": 0.05, "mlp": 0.005, "sequence": 0.005}
#: Largest tabular gate (outcomes x experts logits) built from the ids in a data file.
MAX_TABLE_ENTRIES = 10 ** 8


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
    fit.set_defaults(handler=run_fit)


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
    score.set_defaults(handler=run_score)


def build_parser() -> argparse.ArgumentParser:
    """The parser; a subcommand is one ``_add_NAME(sub)`` that sets ``handler`` (returns (result, exit code))."""
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit(sub)
    _add_score(sub)
    register_tools(sub)
    return parser


def _gate_for(kind: str, domains, experts, p: int, seed: int):
    sets = domains + (experts or [])
    feats = torch.cat([s.features for s in sets])
    integer = not torch.is_floating_point(feats)
    if kind in ("tabular", "sequence") and not integer:
        raise InputError(f"gate {kind!r} needs integer features feat_k (outcome ids or tokens)")
    if kind in ("tabular", "sequence"):
        lo, hi = int(feats.min()), int(feats.max())
        if lo < 0:
            raise InputError(f"gate {kind!r}: feature id {lo} is negative (ids must be 0, 1, ...)")
        if (hi + 1) * (p if kind == "tabular" else 1) > MAX_TABLE_ENTRIES:
            raise InputError(f"gate {kind!r}: feature id {hi} would need a table of {hi + 1} rows; "
                             f"renumber the ids 0..n-1")
    if kind in ("linear", "mlp") and integer:
        feats = feats.double()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "tabular":
            return make_gate(kind, p, n_outcomes=int(feats.max()) + 1)
        if kind == "sequence":
            # Every feature set (expert samples too) holds tokens the gate must embed.
            return make_gate(kind, p, vocab=int(feats.max()) + 1)
        flat = torch.cat([d.features for d in domains]).double().reshape(sum(d.m for d in domains), -1)
        return make_gate(kind, p, d=flat.shape[1], mean=flat.mean(0), std=flat.std(0))


def _check_writable(path: str | None, what: str, *, directory: bool = False) -> None:
    """Refuse before training an output path that cannot be written (its folder missing, a folder, ...)."""
    if path is None:
        return
    if not directory:
        check_output_path(path, what)
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{what} {path}: directory {parent} does not exist")
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{what} {path} exists and is not a directory")


def _set_threads(args) -> None:
    cpu = args.__dict__.get("device") == "cpu" or not torch.cuda.is_available()
    if args.threads is not None or cpu:
        torch.set_num_threads(args.threads or 1)


def _prior(args, p: int) -> PriorSet | None:
    if args.lambda_lower is None and args.lambda_upper is None:
        return None
    for name, v in (("--lambda-lower", args.lambda_lower), ("--lambda-upper", args.lambda_upper)):
        if v is not None and len(v) != p:
            raise InputError(f"{name} has {len(v)} values for p={p} domains")
    return PriorSet(p, lower=args.lambda_lower, upper=args.lambda_upper)


def _prepare_features(kind: str, sets) -> None:
    if kind in ("linear", "mlp"):
        for s in sets:
            s.features = s.features.double().reshape(s.m, -1)


def run_fit(args) -> tuple[dict, int]:
    for path, what in ((args.checkpoint, "--checkpoint"), (args.save, "--save"), (args.out, "--out")):
        _check_writable(path, what)
    _check_writable(args.report, "--report directory", directory=True)
    if args.solver == "exact" and args.gate != "tabular":
        raise InputError("--solver exact needs --gate tabular (features are outcome ids)")
    domains, experts = load_npz(args.data)
    p = domains[0].p
    fingerprint = data_fingerprint(domains, experts)
    _prepare_features(args.gate, domains + (experts or []))
    if args.entropy is not None and len(args.entropy) != p:
        raise InputError(f"--entropy has {len(args.entropy)} values for p={p} domains")
    prior = _prior(args, p)
    adversary = args.adversary or ("kl" if args.entropy is not None else "excess")
    if adversary == "excess":
        check_excess_defined(domains)
    gate = _gate_for(args.gate, domains, experts, p, args.seed)
    train_d, train_e, held_d, held_e = domains, experts, None, None
    if args.holdout:
        train_d, held_d = split_holdout(domains, args.holdout, args.seed)
        train_e, held_e = split_holdout(experts, args.holdout, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiasedEstimatorWarning)
        if args.solver == "exact":
            from modular.tabular_exact import solve_tabular_exact

            res = solve_tabular_exact(train_d, train_e, n_outcomes=gate.n_outcomes, entropies=args.entropy,
                                      adversary=adversary, z_estimator=args.z_estimator, prior=prior,
                                      tol_gap=args.tol_gap, tol_z=args.tol_z, seed=args.seed)
        else:
            res = fit_robust_gate(
                gate, train_d, train_e, entropies=args.entropy, adversary=adversary, z_estimator=args.z_estimator,
                steps=args.steps, batch_size=args.batch_size, lam_lr=args.lam_lr, mu_lr=args.mu_lr,
                lr=DEFAULT_LR[args.gate] if args.lr is None else args.lr, lr_schedule=args.lr_schedule,
                decay_steps=args.decay_steps, lam_iterate=args.lam_iterate, gate_iterate=args.gate_iterate,
                prior=prior, tol_gap=args.tol_gap, tol_z=args.tol_z, until_converged=args.until_converged,
                check_every=args.check_every, device=args.device, seed=args.seed, progress=args.progress,
                checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, handle_sigint=True,
            )
    out = res.summary()
    out["gate"] = args.gate
    out["data_fingerprint"] = fingerprint
    if not res.z_unbiased:
        out["note"] = ("Z estimated by the data shortcut (pooled data samples stand in for q0 = (1/p) sum_k pi_k): "
                       "biased unless the experts match their domains; give expert_logp_k for an unbiased Z")
    if held_d is not None:
        z_sets = held_e if res.z_estimator in UNBIASED else held_d
        h = residuals(res.gate, res.lam, held_d, z_sets, adversary=adversary, entropies=args.entropy,
                      z_estimator=res.z_estimator, prior=prior)
        out["holdout"] = _finite_or_none(dict(
            fraction=args.holdout, m=[d.m for d in held_d], nll=h.nll.tolist(), excess=(h.nll - h.own_nll).tolist(),
            kl=None if args.entropy is None else (h.nll - args.entropy).tolist(),
            adversary_loss=h.adversary_loss.tolist(), gap=h.gap, z=h.z))
    if args.save:
        options = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(args).items()
                   if k not in ("handler",)}
        from modular.cache import gate_meta

        with np.load(args.data, allow_pickle=False) as f:  # the gate reads feat_k, or the log-probs without them
            features = "tokens" if "feat_0" in f.files else "logp"
        # The tools' identity of the data (experts, checksums, window) and the fit's own record.
        meta = dict(gate_meta(args.data, out, kind=args.gate, features=features),
                    lam=res.lam.tolist(), result=out, data_fingerprint=fingerprint, options=options,
                    entropies=None if args.entropy is None else args.entropy.tolist(), p=p)
        save_gate(args.save, res.gate.cpu(), meta=_finite_or_none(meta))
    if args.report:
        from modular.fit_report import write_report

        out["report"] = write_report(args.report, res)
    if args.out:
        full = dict(out, history={k: _finite_or_none(np.asarray(v).tolist()) for k, v in res.history.items()})
        save_text(args.out, json.dumps(full, indent=1, allow_nan=False))  # a write error is one line, exit 2
    return out, EXIT_OK if res.status == CONVERGED else EXIT_NOT_CONVERGED


def _check_gate_fits_data(loaded, domains, path: str) -> None:
    p = domains[0].p
    if loaded.config.get("p") != p:
        raise InputError(f"gate file {path} is for p={loaded.config.get('p')} experts, the data have p={p}")
    feats = torch.cat([d.features for d in domains])
    integer = not torch.is_floating_point(feats)
    if loaded.kind in ("tabular", "sequence"):
        size = loaded.config["n_outcomes" if loaded.kind == "tabular" else "vocab"]
        if not integer:
            raise InputError(f"gate file {path} holds a {loaded.kind} gate, which reads integer ids; "
                             "the data's features are floats")
        if int(feats.min()) < 0 or int(feats.max()) >= size:
            raise InputError(f"gate file {path}: feature ids must be in 0..{size - 1}, the data have "
                             f"{int(feats.min())}..{int(feats.max())}")
    else:
        d = int(torch.tensor(domains[0].features.shape[1:]).prod()) if domains[0].features.ndim > 1 else 1
        if d != loaded.config["d"]:
            raise InputError(f"gate file {path} reads {loaded.config['d']} features, the data have {d}")


def run_score(args) -> tuple[dict, int]:
    loaded = load_gate(args.gate)
    domains, experts = load_npz(args.data)
    p = domains[0].p
    _check_gate_fits_data(loaded, domains + (experts or []), args.gate)
    _prepare_features(loaded.kind, domains + (experts or []))
    if args.entropy is not None and len(args.entropy) != p:
        raise InputError(f"--entropy has {len(args.entropy)} values for p={p} domains")
    mixtures = []
    for mix in args.mixture:
        if len(mix) != p or (mix < 0).any() or abs(mix.sum() - 1) > 1e-9:
            raise InputError(f"--mixture {','.join(map(str, mix))}: needs {p} non-negative weights summing to 1")
        mixtures.append(mix)
    gate = loaded.gate
    nll = evaluate_nll(gate, domains)
    own = np.array([float((d.probabilities() * -d.logp[:, k].double()).sum()) for k, d in enumerate(domains)])
    # The fit's own unbiased estimator (so that score reproduces the fit's Z), else the fit's default.
    saved = loaded.meta.get("z_estimator")
    estimator = saved if experts is not None and saved in UNBIASED else check_fit_inputs(domains, experts, None)[1]
    z = evaluate_z(gate, experts if experts is not None else domains, estimator)
    lam = loaded.meta.get("lam")
    fingerprint = data_fingerprint(domains, experts)
    out = dict(
        gate=loaded.kind, p=p, nll=nll.tolist(), excess=(nll - own).tolist(),
        kl=None if args.entropy is None else (nll - args.entropy).tolist(), z=z, z_estimator=estimator,
        z_unbiased=estimator in UNBIASED, lam=lam,
        nll_at_lam=None if lam is None or len(lam) != p else float(np.asarray(lam) @ nll),
        mixtures=[dict(mixture=m.tolist(), nll=float(m @ nll)) for m in mixtures],
        data_fingerprint=fingerprint, training_data=fingerprint == loaded.meta.get("data_fingerprint"),
    )
    if estimator not in UNBIASED:
        out["note"] = "Z by the data shortcut (no expert samples in the data): biased unless experts match domains"
    return _finite_or_none(out), 0


def _print_fit(out: dict) -> None:
    print(f"robust gate ({out['gate']}, {out.get('solver', 'stochastic')}), adversary {out['adversary']}, "
          f"{out['steps']} steps in {out['seconds']:.2f} s on {out['device']} (seed {out['seed']})")
    header = "domain  lambda     nll" + ("       kl" if out["kl"] is not None else "")
    print(header)
    for k, (lam, nll) in enumerate(zip(out["lam"], out["nll"])):
        line = f"{k:>6}  {lam:.4f}  {nll:8.4f}"
        if out["kl"] is not None:
            line += f" {out['kl'][k]:8.4f}"
        print(line)
    print(f"Z = {out['z']:.5f} ({out['z_estimator']}{'' if out['z_unbiased'] else ', biased'})")
    gap = "nan" if out["gap"] is None else f"{out['gap']:.3g}"
    print(f"status {out['status']}: adversary's gap {gap} (tol {out['tol_gap']:g}), "
          f"|Z - 1| {out['z_residual']:.3g} (tol {out['tol_z']:g})")
    if "holdout" in out:
        h = out["holdout"]
        print(f"held out ({h['fraction']:g}): nll {', '.join(f'{v:.4f}' for v in h['nll'])}; Z = {h['z']:.5f}")
    if "note" in out:
        print(f"note: {out['note']}")


def _num(v, spec: str) -> str:
    """``v`` formatted by ``spec``; ``n/a`` (same width) for a value that was not finite (None)."""
    if v is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "n/a".rjust(int(width) if width else 0)
    return format(v, spec)


def _print_score(out: dict) -> None:
    print(f"gate ({out['gate']}) on {'its training data' if out['training_data'] else 'these data'}")
    print("domain     nll   excess" + ("       kl" if out["kl"] is not None else ""))
    for k, (nll, ex) in enumerate(zip(out["nll"], out["excess"])):
        print(f"{k:>6} {_num(nll, '8.4f')} {_num(ex, '8.4f')}"
              + (f" {_num(out['kl'][k], '8.4f')}" if out["kl"] is not None else ""))
    print(f"Z = {_num(out['z'], '.5f')} ({out['z_estimator']}{'' if out['z_unbiased'] else ', biased'})")
    for m in out["mixtures"]:
        print(f"mixture {', '.join(f'{v:g}' for v in m['mixture'])}: nll {_num(m['nll'], '.4f')}")
    if any(v is None for v in out["nll"] + out["excess"] + (out["kl"] or [])) or out["z"] is None:
        print("n/a: not finite (a sample with log-probability -inf under the gated model or its own expert)")


def main(argv=None) -> int:
    """Parse ``argv`` and run the subcommand under the exit-status contract of :mod:`theory.commandline`."""
    return run_main(None, lambda: _main(argv))  # messages start "error: " (PROG names the usage)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.command in TOOL_COMMANDS:
        return run_tool(args)
    _set_threads(args)
    try:
        out, code = args.handler(args)
    except FitInterrupted as exc:
        saved = f"checkpoint saved to {exc.checkpoint}" if exc.checkpoint else "no --checkpoint given, nothing saved"
        raise KeyboardInterrupt(f"interrupted after step {exc.step}: {saved}") from None
    except OSError as exc:  # a file the command reads or writes (e.g. --save on a full disk)
        raise as_input_error(exc) from None
    if args.json:
        print_json(out)
    elif args.command == "fit":
        _print_fit(out)
    else:
        _print_score(out)
    return code
