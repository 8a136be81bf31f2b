"""The work of ``python -m modular fit`` and ``score`` (torch): gates, fits, scores, printing.

:mod:`modular.cli` builds the parser without torch and calls :func:`run` once the
arguments are parsed, so ``--help`` and bad options answer without importing torch.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch

from modular.data import check_excess_defined, load_npz
from modular.gate_io import load_gate, save_gate
from modular.gates import make_gate
from modular.primal_dual import (
    CONVERGED,
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
from modular.z_estimators import UNBIASED, BiasedEstimatorWarning
from theory.commandline import (
    EXIT_NOT_CONVERGED,
    EXIT_OK,
    as_input_error,
    check_output_path,
    print_json,
    save_text,
)
from theory.errors import InputError
from theory.prior import PriorSet


#: Learning rates that converged on the test instances (an MLP at 0.05 did not).
DEFAULT_LR = {"tabular": 0.05, "linear": 0.05, "mlp": 0.005, "sequence": 0.005}
#: Largest tabular gate (outcomes x experts logits) built from the ids in a data file.
MAX_TABLE_ENTRIES = 10 ** 8


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


def _validation_sets(args, p: int, have_experts: bool):
    """The domain and expert samples of ``--validation`` (None, None without it)."""
    if args.validation is None:
        return None, None
    if args.solver == "exact":
        raise InputError("--validation selects among the iterates of the stochastic fit; --solver exact has none")
    domains, experts = load_npz(args.validation)
    if domains[0].p != p:
        raise InputError(f"--validation {args.validation} has p={domains[0].p} experts, the data p={p}")
    _prepare_features(args.gate, domains + (experts or []))
    # Its expert samples measure the held-out Z when the fit estimates Z from expert samples.
    unbiased = have_experts and (args.z_estimator is None or args.z_estimator in UNBIASED)
    if unbiased and args.z_holdout:
        raise InputError("--z-holdout splits the training expert samples; with --validation the held-out Z is "
                         "measured on its expert samples: give one or the other")
    return domains, (experts if unbiased else None)


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
    val_d, val_e = _validation_sets(args, p, experts is not None)
    if args.start == "best-static":
        from modular.evaluate import best_static_for
        from modular.gates import start_at_constant

        if adversary == "kl" and args.entropy is None:
            raise InputError("--start best-static with --adversary kl needs --entropy")
        w, static = best_static_for(train_d, adversary=adversary, entropies=args.entropy, prior=prior)
        start_at_constant(gate, w)
        lam0 = static.lam
    else:
        lam0 = None
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
                z_holdout=args.z_holdout, z_debias=args.z_debias, validation=val_d, validation_experts=val_e, lam0=lam0,
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
    lam = loaded.meta.get("lam")
    fingerprint = data_fingerprint(domains, experts)
    training = fingerprint == loaded.meta.get("data_fingerprint")
    z_sets, held = (experts if experts is not None else domains), None
    result, options = loaded.meta.get("result") or {}, loaded.meta.get("options") or {}
    if training and experts is not None and estimator in UNBIASED:
        # The fit's own split: Z on the expert samples it trained on (the fit's z, bit for bit)
        # and on those it held out (z_holdout).
        seed = int(options.get("seed", result.get("seed", 0)))
        if options.get("holdout"):
            z_sets = split_holdout(z_sets, options["holdout"], seed)[0]
        if result.get("z_holdout_fraction"):
            z_sets, held = split_holdout(z_sets, result["z_holdout_fraction"], seed)
    z = evaluate_z(gate, z_sets, estimator)
    z_holdout, z_holdout_se = (None, None) if held is None else evaluate_z(gate, held, estimator, with_se=True)
    out = dict(
        gate=loaded.kind, p=p, nll=nll.tolist(), excess=(nll - own).tolist(),
        kl=None if args.entropy is None else (nll - args.entropy).tolist(), z=z, z_estimator=estimator,
        z_unbiased=estimator in UNBIASED, lam=lam,
        nll_at_lam=None if lam is None or len(lam) != p else float(np.asarray(lam) @ nll),
        mixtures=[dict(mixture=m.tolist(), nll=float(m @ nll)) for m in mixtures],
        z_holdout=z_holdout, z_holdout_se=z_holdout_se,
        data_fingerprint=fingerprint, training_data=training,
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
    print(f"Z = {_num(out['z'], '.5f')} on the training samples ({out['z_estimator']}"
          f"{'' if out['z_unbiased'] else ', biased'}; target {_num(out.get('z_target', 1.0), '.5f')})")
    if out.get("z_holdout") is not None or out.get("z_holdout_se") is not None:
        where = ("the validation expert samples" if out.get("z_holdout_source") == "validation" else
                 f"held-out expert samples ({_num(out.get('z_holdout_fraction'), 'g')} of each set, not trained on)")
        print(f"Z = {_num(out['z_holdout'], '.5f')} +- {_num(out['z_holdout_se'], '.5f')} on {where}")
    if out.get("selected_step") is not None:
        print(f"returned the check at step {out['selected_step']}: robust objective on the validation domains "
              f"{_num(out.get('validation_value'), '.5f')} (renormalised by Z)")
    gap = "nan" if out["gap"] is None else f"{out['gap']:.3g}"
    z_res = "nan" if out["z_residual"] is None else f"{out['z_residual']:.3g}"
    line = (f"status {out['status']}: adversary's gap {gap} (tol {out['tol_gap']:g}), "
            f"|Z - target| {z_res} (tol {out['tol_z']:g})")
    if out.get("z_holdout") is not None:
        line += f", held-out |Z - 1| {out['z_holdout_residual']:.3g} (+ 2 se <= tol {out['tol_z']:g})"
    print(line)
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
    print(f"Z = {_num(out['z'], '.5f')} ({out['z_estimator']}{'' if out['z_unbiased'] else ', biased'}"
          f"{'; on the expert samples the fit trained on' if out.get('z_holdout') is not None else ''})")
    if out.get("z_holdout") is not None:
        print(f"Z = {_num(out['z_holdout'], '.5f')} +- {_num(out['z_holdout_se'], '.5f')} on the expert samples "
              f"the fit held out")
    for m in out["mixtures"]:
        print(f"mixture {', '.join(f'{v:g}' for v in m['mixture'])}: nll {_num(m['nll'], '.4f')}")
    if any(v is None for v in out["nll"] + out["excess"] + (out["kl"] or [])) or out["z"] is None:
        print("n/a: not finite (a sample with log-probability -inf under the gated model or its own expert)")


def run(args) -> int:
    """Run the parsed ``fit`` or ``score`` command (``args.handler`` names its function) and print its result."""
    _set_threads(args)
    try:
        out, code = globals()[args.handler](args)
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

