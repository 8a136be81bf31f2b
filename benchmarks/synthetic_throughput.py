"""Throughput of the synthetic/ models on this machine's CPU (or GPU when present).

Measures (1) training throughput of the tiny torch sequence models, in tokens per
second of the weighted multi-domain loop of :meth:`TorchSequenceModel.fit`, on the
conflict task (V=5, T=4) and on byte windows of real text (V=256, T=64); (2) n-gram
counting (fit) and scoring speed in tokens per second on the standard library's
source (the ``code`` text domain). Prints a pandas table and writes CSV.

Usage: ``python -m benchmarks.synthetic_throughput [--quick] [--threads N] [--out PATH]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from synthetic.markov import conflict_task
from synthetic.models import TorchSequenceModel
from synthetic.ngram import NGramModel
from synthetic.text import load_text_domain
from theory.commandline import EXIT_OK, ArgumentParser, add_out_argument, positive, run_main, save_text


PROG = "python -m benchmarks.synthetic_throughput"


def torch_rows(steps: int, repeats: int) -> list[dict]:
    A, B = conflict_task(V=5, T=4, noise=0.05)
    conflict_data = [A.sample(4096, seed=0), B.sample(4096, seed=1)]
    text = load_text_domain("docs", "train").windows(64)
    configs = [("conflict V=5 T=4", 5, 4, conflict_data, arch, w) for arch, w in
               [("transformer", 6), ("transformer", 8), ("transformer", 16), ("transformer", 20), ("gru", 8)]]
    configs += [("docs bytes V=256 T=64", 256, 64, [text], arch, w) for arch, w in [("transformer", 16), ("gru", 16)]]
    rows = []
    for task, V, T, data, arch, width in configs:
        rates = []
        for r in range(repeats):
            model = TorchSequenceModel(V, T, width, arch=arch, seed=r)
            model.fit(data, steps=steps, batch_size=64)
            rates.append(model.record.tokens_per_second)
        rows.append({"benchmark": "torch training", "task": task, "model": f"{arch} w{width}",
                     "parameters": model.n_parameters, "device": str(model.device),
                     "tokens_per_s_median": float(np.median(rates)), "tokens_per_s_min": float(np.min(rates)),
                     "repeats": repeats, "steps": steps})
    return rows


def ngram_rows(repeats: int, max_order: int) -> list[dict]:
    train = list(load_text_domain("code", "train").docs)
    test = list(load_text_domain("code", "test").docs)
    n_train, n_test = sum(d.size for d in train), sum(d.size for d in test)
    rows = []
    for order in range(1, max_order + 1):
        for smoothing in ("kneser-ney", "add-k"):
            fit_s, score_s = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model = NGramModel(256, order, smoothing=smoothing).fit(train)
                t1 = time.perf_counter()
                nll = -model.flat_log_probs(test).mean()
                t2 = time.perf_counter()
                fit_s.append(t1 - t0)
                score_s.append(t2 - t1)
            rows.append({"benchmark": "n-gram counting", "task": f"code bytes ({n_train} train tokens)",
                         "model": f"{order}-gram {smoothing}", "device": "cpu",
                         "tokens_per_s_median": n_train / float(np.median(fit_s)),
                         "tokens_per_s_min": n_train / float(np.max(fit_s)),
                         "score_tokens_per_s": n_test / float(np.median(score_s)),
                         "test_bits_per_byte": float(nll / np.log(2)), "repeats": repeats})
    return rows


def main(argv=None) -> int:
    """Run the benchmark; exit status by :mod:`theory.commandline`."""
    return run_main(PROG, lambda: _main(argv))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, repeats and n-gram orders")
    parser.add_argument("--threads", type=positive(int), default=None, help="torch intra-op threads (default: torch's)")
    add_out_argument(parser, "the CSV table", creates_folder=True, type=Path,
                     default=Path("results/benchmarks/synthetic_throughput.csv"))
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    steps, repeats, max_order = (20, 1, 3) if args.quick else (100, 3, 4)
    table = pd.DataFrame(torch_rows(steps, repeats) + ngram_rows(repeats, max_order))
    table["threads"] = torch.get_num_threads()
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:,.3g}".format):
        print(table.to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_text(args.out, table.to_csv(index=False))
    print(f"wrote {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
