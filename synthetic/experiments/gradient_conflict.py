"""Gradient conflict: the cosine between per-domain gradients of one monolithic model.

A monolithic torch model is trained at even weights on two domains; every few steps the
gradients ``grad L_A`` and ``grad L_B`` of the per-domain losses are recorded
(:meth:`synthetic.models.TorchSequenceModel.fit` with ``conflict_every``). On the
conflict task (A steps +1 mod V, B steps -1) the domains ask for opposite next
tokens. The compatible pair is two independent samples of domain A: any two domains
whose next-token laws differ somewhere conflict at the joint optimum (there
``grad L_A = -grad L_B``), so a shared optimum is what "compatible" means for one model.
"""

from __future__ import annotations

import numpy as np

from synthetic.experiments.common import require_option, seed_streams, sha256_array, single_thread_torch
from synthetic.markov import conflict_task, shift_chain
from synthetic.models import TorchSequenceModel

PAIRS = ("conflict", "compatible")


def domain_pair(pair: str, V: int, T: int, noise: float):
    """The two domains of the ``conflict`` task, or a ``compatible`` pair (domain A twice)."""
    require_option("domain pair", pair, PAIRS)
    if pair == "conflict":
        return conflict_task(V, T, noise)
    A = shift_chain(V, T, +1, noise, "A")
    return A, A


def gradient_cosines(config: dict) -> dict:
    """Cosine between the per-domain gradients during training, and the per-domain losses.

    config: ``pair``, ``V``, ``T``, ``noise``, ``m``, ``width``, ``steps``, ``every``, ``seed``.
    """
    A, B = domain_pair(config["pair"], config["V"], config["T"], config["noise"])
    (sample_seeds,) = seed_streams(config["seed"], 2)
    data = [d.sample(config["m"], s) for d, s in zip((A, B), sample_seeds)]
    with single_thread_torch():
        model = TorchSequenceModel(config["V"], config["T"], config["width"], seed=config["seed"])
        model.fit(data, steps=config["steps"], conflict_every=config["every"])
    rec = model.record
    losses = np.asarray(rec.domain_losses)
    rows = [{"pair": config["pair"], "seed": config["seed"], "step": int(step), "cosine": float(cos[0][1]),
             "loss_0": float(losses[step, 0]), "loss_1": float(losses[step, 1])}
            for step, cos in zip(rec.cosine_steps, rec.cosines)]
    return {"rows": rows, "checksums": {f"gradient_conflict/{config['pair']}/s{config['seed']}/train_{k}":
                                        sha256_array(d) for k, d in enumerate(data)}}
