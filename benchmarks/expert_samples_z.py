"""How many expert samples the unbiased Z needs: standard error of Z against M, on real text.

Three byte-level bigram experts (Kneser-Ney, :mod:`synthetic.ngram`) fitted to the train
documents of CPython's ``docs``, ``code`` and ``notes`` text (:mod:`synthetic.text`),
cached by :func:`modular.cache.build_cache` with windows of T bytes and ``M_max``
samples per expert; a sequence gate fitted by the excess game; then, on the test
split's expert samples, the estimate ``Z = sum_k mean_{x ~ pi_k} g(x, k)`` for the
robust gate and for the (unnormalised) posterior gate, its standard error from the
formula ``sqrt(sum_k Var_k / M)`` and the spread of Z over repeated subsamples of M.

``python -m benchmarks.expert_samples_z --out DIR`` writes ``z_se.csv`` and prints it.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from modular.cache import build_cache, split_of
from modular.data import load_npz
from modular.evaluate import gate_log_probs, posterior_log_gate
from modular.experts import BytesTokenizer
from modular.gate_io import LoadedGate
from modular.gates import make_gate
from modular.primal_dual import fit_robust_gate
from synthetic.expert_io import ngram_table
from synthetic.ngram import NGramModel
from synthetic.text import TEXT_DOMAINS, _read
from theory.commandline import EXIT_OK, ArgumentParser, add_out_argument, positive, run_main, save_text

PROG = "python -m benchmarks.expert_samples_z"


def build_parser() -> ArgumentParser:
    ap = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_out_argument(ap, "z_se.csv and the cache it is computed from (cache/)", folder=True, required=True)
    ap.add_argument("--window", type=positive(int), default=32, help="tokens (bytes) per sample")
    ap.add_argument("--max-samples", type=positive(int), default=2048, help="expert samples M_max per expert")
    ap.add_argument("--max-bytes", type=positive(int), default=300_000, help="text per domain (documents in name order)")
    ap.add_argument("--steps", type=positive(int), default=400, help="steps of the gate's fit")
    ap.add_argument("--repeats", type=positive(int), default=300, help="subsamples of M per estimate of the spread")
    return ap


def main(argv=None) -> int:
    """Run the measurement and write ``z_se.csv``; exit status by :mod:`theory.commandline`."""
    return run_main(PROG, lambda: _main(argv))


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    fractions = (0.8, 0.1, 0.1)
    domains, experts = {}, []
    for name in TEXT_DOMAINS:
        docs, size = [], 0
        for key, raw in sorted(_read(name).items()):
            if size >= args.max_bytes:
                break
            docs.append(raw.decode("utf-8", errors="replace"))
            size += len(raw)
        domains[name] = docs
        train = [BytesTokenizer().encode(d) for d in docs if split_of(d, fractions) == "train"]
        experts.append(ngram_table(NGramModel(256, 2).fit([np.asarray(t) for t in train]), name=name))
    t0 = time.perf_counter()
    res = build_cache(experts, domains, BytesTokenizer(), window=args.window, out=out / "cache",
                      expert_samples=args.max_samples, chunk=512, split=fractions, progress=False)
    print(f"cache: {time.perf_counter() - t0:.1f} s, counts {res.manifest['counts']['windows']}")
    doms, samples = load_npz(out / "cache" / "DATA.npz")
    torch.manual_seed(0)
    gate = make_gate("sequence", 3, vocab=256)
    fit = fit_robust_gate(gate, doms, samples, adversary="excess", steps=args.steps, lr=0.005, batch_size=128)
    print(f"fit: lam {np.round(fit.lam, 3)}, Z {fit.z:.4f}, {fit.seconds:.1f} s")
    loaded = LoadedGate(fit.gate.cpu().double().eval(), "sequence", {"vocab": 256, "p": 3}, {"features": "tokens"})
    _, test_samples = load_npz(out / "cache" / "TEST.npz")
    terms = {
        "robust gate": [torch.exp(gate_log_probs(loaded, s)[:, k]).numpy() for k, s in enumerate(test_samples)],
        "posterior gate": [torch.exp(posterior_log_gate(s.logp)[:, k]).numpy() for k, s in enumerate(test_samples)],
    }
    rng = np.random.default_rng(0)
    rows = []
    for gate_name, per_k in terms.items():
        sd = math.sqrt(sum(float(t.var(ddof=1)) for t in per_k))
        for M in (16, 64, 256, 1024):
            reps = [sum(float(rng.choice(t, M, replace=False).mean()) for t in per_k) for _ in range(args.repeats)]
            # Subsamples of M out of M_max: finite-population correction of the spread.
            fpc = math.sqrt((args.max_samples - M) / (args.max_samples - 1))
            rows.append({"gate": gate_name, "M": M, "z_all": sum(float(t.mean()) for t in per_k),
                         "se_formula": sd / math.sqrt(M), "se_subsample": float(np.std(reps, ddof=1)) / fpc,
                         "per_sample_sd": sd, "M_for_se_0.01": math.ceil((sd / 0.01) ** 2)})
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    save_text(out / "z_se.csv", table.to_csv(index=False))
    print(table.to_string(index=False))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
