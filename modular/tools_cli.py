"""Command line of the bring-your-own-experts tools: ``cache``, ``evaluate``, ``distill``, ``generate``.

``python -m modular cache --expert NAME=SPEC ... --domain NAME=FILES ... --window T --out DIR``
``python -m modular evaluate gate.pt TEST.npz [--mixtures ...] [--json] [--report DIR]``
``python -m modular distill gate.pt DATA.npz --save router.pt``
``python -m modular generate router.pt --expert NAME=SPEC ... --n N --length L [--exact]``

Bad input exits with status 2 and one line on stderr; an interrupted cache (``--max-chunks``)
exits with status 3 and resumes on the next run.
"""

from __future__ import annotations

import json
import os

from theory.commandline import add_out_argument, as_input_error, positive, print_json
from theory.errors import InputError

TOOL_COMMANDS = ("cache", "evaluate", "distill", "generate")


def register(sub) -> None:
    """Add the tools' subcommands to the ``python -m modular`` subparsers ``sub``."""
    c = sub.add_parser("cache", help="cache expert log-probabilities on windowed text and on expert samples")
    c.add_argument("--expert", action="append", required=True, metavar="NAME=SPEC",
                   help="an expert, one per domain in domain order: NAME=hf:DIR (Hugging Face causal LM), "
                        "NAME=torch:FILE.pt (TorchScript with expert.json) or NAME=ngram:FILE.npz")
    c.add_argument("--domain", action="append", required=True, metavar="NAME=FILES",
                   help="a domain's text: comma-separated files or globs; .jsonl files give one document per line")
    c.add_argument("--text-field", default="text", help="JSONL field holding the text")
    c.add_argument("--window", type=positive(int), required=True, metavar="T",
                   help="tokens per sample: documents are cut into non-overlapping windows of T tokens")
    c.add_argument("--split", default="8:1:1", help="train:val:test shares of the documents, by document hash")
    c.add_argument("--expert-samples", type=positive(int, zero=True), default=256, metavar="M",
                   help="sequences sampled from each expert (per split) and scored by all, for the unbiased Z")
    add_out_argument(c, "the cache (DATA.npz, VAL.npz, TEST.npz, manifest.json, chunks/)", folder=True, required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--chunk", type=positive(int), default=256, help="windows or samples per chunk written to OUT/chunks")
    c.add_argument("--batch-size", type=positive(int), default=64, help="sequences per forward pass")
    c.add_argument("--max-chunks", type=positive(int), help="stop after computing this many chunks (resume later)")
    c.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")

    e = sub.add_parser("evaluate", help="held-out NLL and excess of a gate and the baselines, per mixture")
    e.add_argument("gate", help="gate file (gate.pt)")
    e.add_argument("test", help="cached test split (TEST.npz)")
    e.add_argument("--mixtures", help="semicolon-separated mixtures, e.g. '1,0,0;0.5,0.5,0' (default: vertices, "
                                      "pair midpoints, centre)")
    e.add_argument("--static-from", metavar="DATA.npz",
                   help="fit the best static gate on these windows (e.g. the gate's own DATA.npz) rather than on "
                        "the test windows, where it is an oracle")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--report", help="directory for evaluation.md, evaluation.json and evaluation.png")

    d = sub.add_parser("distill", help="train a causal router on rejection samples of the gated model")
    d.add_argument("gate", help="gate file (gate.pt)")
    d.add_argument("data", help="cached training split (DATA.npz) with expert samples")
    d.add_argument("--save", required=True, help="router file to write (router.pt)")
    d.add_argument("--steps", type=positive(int), default=500, help="AdamW steps of the router")
    d.add_argument("--batch-size", type=positive(int), default=128, help="sampled sequences per step")
    d.add_argument("--lr", type=positive(float), default=0.01, help="AdamW learning rate of the router")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")

    g = sub.add_parser("generate", help="sample text from the experts mixed by a router (or exactly by the gate)")
    g.add_argument("router", help="router file (router.pt) written by distill")
    g.add_argument("--expert", action="append", required=True, metavar="NAME=SPEC",
                   help="the experts the router was distilled for, in the same order")
    g.add_argument("--n", type=positive(int), default=4, help="number of sequences")
    g.add_argument("--length", type=positive(int), help="tokens per sequence (default: the cache's window T)")
    g.add_argument("--exact", action="store_true",
                   help="draw from pi_g itself by rejection sampling (needs the gate: --gate or the one distilled)")
    g.add_argument("--gate", help="gate file for --exact (default: the gate the router was distilled from)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    g.add_argument("--json", action="store_true", help="print the samples as JSON")


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load_experts(specs, device, batch_size: int = 64):
    from modular.experts import check_compatible, load_expert

    _quiet_transformers()
    loaded = [load_expert(s, batch_size=batch_size, device=device) for s in specs]
    experts = [x[0] for x in loaded]
    check_compatible(experts)
    return experts, loaded[0][1], [x[2] for x in loaded]


def run_cache(args) -> tuple[int, dict]:
    from modular.cache import build_cache, parse_split, read_documents

    fractions = parse_split(args.split)
    domains = {}
    for spec in args.domain:
        name, sep, files = spec.partition("=")
        if not sep or not name or not files:
            raise InputError(f"--domain {spec!r}: expected NAME=FILES")
        if name in domains:
            raise InputError(f"domain {name!r} given twice")
        domains[name] = read_documents(files, text_field=args.text_field)
        if not domains[name]:
            raise InputError(f"domain {name!r}: {files} holds no text")
    experts, tokenizer, records = _load_experts(args.expert, args.device, args.batch_size)
    res = build_cache(experts, domains, tokenizer, window=args.window, out=args.out, split=fractions,
                      expert_samples=args.expert_samples, seed=args.seed, chunk=args.chunk, expert_records=records,
                      max_chunks=args.max_chunks, progress=not args.quiet)
    out = res.summary()
    out["tokens_per_second"] = (res.tokens_scored / res.seconds) if res.seconds > 0 else None
    return (0 if res.complete else 3), out


def _print_cache(out: dict) -> None:
    if not out["complete"]:
        print(f"incomplete: {out['chunks_done']} of {out['chunks_total']} chunks in {out['out']}/chunks; "
              f"run the same command again to resume")
        return
    c = out["counts"]
    print(f"cache written to {out['out']}: DATA.npz (train), VAL.npz, TEST.npz, manifest.json")
    print("one sample = one window of T consecutive tokens inside a document (non-overlapping; each document's "
          "remainder shorter than T is dropped); log-probabilities in nats per window")
    for name, w in c["windows"].items():
        print(f"  {name}: windows train/val/test {w['train']}/{w['val']}/{w['test']}, documents "
              f"{'/'.join(str(v) for v in c['documents'][name].values())}, tokens dropped {c['tokens_dropped'][name]}")
    print(f"  expert samples: {c['expert_samples']['train']} per expert and split")
    if out["chunks_computed"]:
        print(f"{out['chunks_computed']} chunks in {out['seconds']:.1f} s "
              f"({out['tokens_scored'] / max(out['seconds'], 1e-9):.0f} expert-tokens scored per second)")


def run_evaluate(args) -> tuple[int, dict]:
    from modular.evaluate import evaluate_gate, parse_mixtures, write_report
    from modular.gate_io import load_gate

    loaded = load_gate(args.gate)
    mixtures = None
    if args.mixtures:
        p = loaded.meta.get("p") or loaded.config["p"]
        mixtures = parse_mixtures(args.mixtures, p)
    out = evaluate_gate(loaded, args.test, mixtures=mixtures, static_from=args.static_from)
    if args.report:
        out["report"] = [str(p) for p in write_report(out, args.report)]
    return 0, out


def _print_evaluate(out: dict) -> None:
    from modular.evaluate import markdown_table

    print(f"{out['test']}: windows of T={out['window']} tokens, {out['units']}; excess over each domain's own "
          f"expert; worst case over {len(out['mixtures'])} mixtures; Z from {sum(out['expert_samples'])} "
          f"expert samples")
    print(markdown_table(out), end="")


def run_distill(args) -> tuple[int, dict]:
    from modular.cache import file_sha256
    from modular.distill import distill_cached
    from modular.gate_io import load_gate, save_gate

    loaded = load_gate(args.gate)
    fit, summary = distill_cached(loaded, args.data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                  seed=args.seed, device=args.device)
    meta = {k: loaded.meta.get(k) for k in ("p", "experts", "expert_sha256", "domains", "window", "vocab_size")}
    meta.update(role="router", gate_path=os.path.abspath(args.gate), gate_sha256=file_sha256(args.gate),
                data_sha256=file_sha256(args.data), distill=summary)
    save_gate(args.save, fit.router, meta=meta)
    summary["router"] = args.save
    return 0, summary


def _print_distill(out: dict) -> None:
    print(f"router written to {out['router']}: {out['accepted']} of {out['candidates']} cached expert samples "
          f"accepted by rejection, {out['trained_on']} trained on (rate {out['acceptance']:.3f}, Z = {out['z']:.4f} ± {out['z_se']:.4f})")
    print(f"{out['steps']} steps in {out['seconds']:.1f} s on {out['device']}; final loss {out['final_loss']:.4f} "
          f"nats per token; held-out KL(pi_g/Z || routed) = {out['kl_held_out']:.3f} ± {out['kl_held_out_se']:.3f} "
          f"nats per sequence ({out['held_out']} accepted samples held out)")


def run_generate(args) -> tuple[int, dict]:
    from modular.cache import file_sha256
    from modular.gate_io import load_gate
    from modular.generate import generate_exact, generate_routed

    if args.n < 1:
        raise InputError(f"--n must be positive, got {args.n}")
    router = load_gate(args.router)
    if router.meta.get("role") != "router" or router.kind != "sequence":
        raise InputError(f"{args.router} is not a router file written by python -m modular distill")
    experts, tokenizer, records = _load_experts(args.expert, args.device)
    names, shas = [r["name"] for r in records], [r["sha256"] for r in records]
    if names != router.meta.get("experts") or shas != router.meta.get("expert_sha256"):
        raise InputError(f"the router was distilled for experts {router.meta.get('experts')} (by checksum); "
                         f"got {names}")
    length = args.length or router.meta.get("window")
    if not length or length < 1:
        raise InputError("--length must be a positive number of tokens")
    import torch

    generator = torch.Generator().manual_seed(args.seed)
    out = {"mode": "exact" if args.exact else "routed", "length": length}
    if args.exact:
        gate_path = args.gate or router.meta.get("gate_path")
        if not gate_path or not os.path.exists(gate_path):
            raise InputError("--exact needs the gate file: give --gate gate.pt")
        if not args.gate and file_sha256(gate_path) != router.meta.get("gate_sha256"):
            raise InputError(f"{gate_path} changed since the router was distilled; give --gate explicitly")
        gate = load_gate(gate_path)
        if gate.meta.get("experts") != names:
            raise InputError(f"the gate was fitted with experts {gate.meta.get('experts')}, got {names}")
        tokens, rate = generate_exact(gate, experts, args.n, length, generator=generator)
        out["acceptance"] = rate
    else:
        tokens = generate_routed(router.gate.double(), experts, args.n, length, generator=generator)
    out["samples"] = [{"tokens": row.tolist(), "text": tokenizer.decode(row.tolist())} for row in tokens]
    return 0, out


def _print_generate(out: dict) -> None:
    extra = f", acceptance {out['acceptance']:.3f}" if "acceptance" in out else ""
    print(f"{len(out['samples'])} sequences of {out['length']} tokens ({out['mode']}{extra})")
    for i, s in enumerate(out["samples"]):
        print(f"[{i}] {json.dumps(s['text'], ensure_ascii=False)}")


_RUN = {"cache": (run_cache, _print_cache), "evaluate": (run_evaluate, _print_evaluate),
        "distill": (run_distill, _print_distill), "generate": (run_generate, _print_generate)}


def run_tool(args) -> int:
    """Run one tool subcommand; bad input raises :class:`InputError` (one line, status 2, by ``run_main``)."""
    run, show = _RUN[args.command]
    try:
        code, out = run(args)
    except OSError as exc:
        raise as_input_error(exc) from None
    if getattr(args, "json", False):
        print_json(out, default=str)  # NaN as null with a note; numpy arrays as lists
    else:
        show(out)
    return code
