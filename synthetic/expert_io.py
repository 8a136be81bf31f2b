"""The suite's sequence models as experts of :mod:`modular.experts`.

:func:`as_expert` wraps a fitted model (n-gram or any :class:`~synthetic.sequences.SequenceModel`)
for the tools' Python API; :func:`ngram_table` turns an n-gram model into the dense
``ngram-table`` file format that ``python -m modular cache --expert NAME=ngram:FILE.npz``
reads (rows ``log p(. | context code)`` with the start symbol ``V``, the same context
codes as :func:`synthetic.sequences.context_codes`).
"""

from __future__ import annotations

import numpy as np
import torch

from modular.experts import ArrayModelExpert, NGramTable
from synthetic.ngram import NGramModel
from theory.errors import InputError

#: Largest table (rows x V) written: 2^25 float64 entries, 256 MiB.
MAX_TABLE_ENTRIES = 2**25


class IncrementalSampler(ArrayModelExpert):
    """An :class:`ArrayModelExpert` that samples through the model's own ``sample_tokens``.

    The suite's torch models (:class:`synthetic.models.TorchSequenceModel`) keep the
    prefix's attention keys and values while sampling, about 50x faster than re-reading
    the whole prefix at every token (1.9 s against 38 ms per 256-byte sequence at width
    256, one thread), from the same next-token law.
    """

    def sample(self, n: int, T: int, generator) -> torch.Tensor:
        return self.model.sample_tokens(n, T, generator)


def as_expert(model, *, name: str | None = None) -> ArrayModelExpert:
    """A fitted sequence model over ``{0..V-1}`` as a :class:`modular.experts.CausalLM`."""
    cls = IncrementalSampler if hasattr(model, "sample_tokens") else ArrayModelExpert
    return cls(model, model.V, name=name or model.name)


def ngram_table(model: NGramModel, *, name: str | None = None) -> NGramTable:
    """The conditional table ``log p(w | c)`` of a fitted n-gram model for every context code c."""
    V, r = model.V, model.order - 1
    rows = (V + 1) ** r
    if rows * V > MAX_TABLE_ENTRIES:
        raise InputError(f"an order-{model.order} table over V={V} has {rows * V} entries (> {MAX_TABLE_ENTRIES})")
    codes = np.repeat(np.arange(rows, dtype=np.int64), V)
    tokens = np.tile(np.arange(V, dtype=np.int64), rows)
    table = np.log(model.prob(codes, tokens)).reshape(rows, V)
    return NGramTable(table, model.order, name=name or model.name)
