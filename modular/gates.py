"""Gate networks ``g_theta(x) = softmax(f_theta(x))`` over p frozen experts.

Every gate is a ``torch.nn.Module`` whose ``forward(features)`` returns the (B x p) gate
logits ``f_theta(x)``; the gated model is never formed in probability space:
``log pi_g(x) = logsumexp_k(log_softmax(f(x))_k + log pi_k(x))`` (:func:`gated_log_prob`).

What a gate reads (its "features") depends on the gate:

- :class:`TabularGate`: integer outcome ids, one free logit vector per outcome;
- :class:`LinearGate`, :class:`MLPGate`: float feature vectors, by default the vector of
  the experts' log-probabilities of x (the Bayes-posterior gate ``softmax(log pi_k(x) +
  b_k)`` is then a linear gate);
- :class:`CausalSequenceGate`: token-id sequences (B x T), read causally;
- :class:`TransformerSequenceGate`: token-id sequences (B x T), read by one transformer block.
"""

from __future__ import annotations

import torch
from torch import nn

from modular.vocabulary import GATE_KINDS
from theory.errors import InvalidOptionError, ShapeMismatchError



def mixture_log_prob(log_gate: torch.Tensor, expert_logp: torch.Tensor) -> torch.Tensor:
    """``log sum_k g(x,k) pi_k(x) = logsumexp_k(log g(x,k) + log pi_k(x))`` from a log-gate.

    The gated model when the gate is already in log space (rows of ``exp(log_gate)``
    summing to one); :func:`gated_log_prob` takes the logits instead.
    """
    return torch.logsumexp(log_gate + expert_logp, dim=-1)


def gated_log_prob(gate_logits: torch.Tensor, expert_logp: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of the gated model, ``log sum_k g(x,k) pi_k(x)`` with ``g = softmax(f)``.

    Parameters
    ----------
    gate_logits : (..., p) tensor
        ``f_theta(x)``.
    expert_logp : (..., p) tensor
        ``log pi_k(x)``; ``-inf`` (the expert gives x no mass) is allowed.

    Returns
    -------
    (...) tensor of ``log pi_g(x)``.
    """
    return mixture_log_prob(torch.log_softmax(gate_logits, dim=-1), expert_logp)


def output_layer(gate: nn.Module) -> nn.Linear | None:
    """The affine layer that produces a gate's logits (None for :class:`TabularGate`).

    Every gate of this module ends in one (``linear``, ``net[-1]``, ``head``); another
    module may name its own with an ``output_layer`` attribute.
    """
    for name in ("output_layer", "head", "linear"):
        layer = getattr(gate, name, None)
        if isinstance(layer, nn.Linear):
            return layer
    net = getattr(gate, "net", None)
    if isinstance(net, nn.Sequential) and isinstance(net[-1], nn.Linear):
        return net[-1]
    return None


def start_at_constant(gate: nn.Module, w) -> nn.Module:
    """Make the gate the constant gate ``g(x, .) = w`` for every input x (in place).

    The constant gates are a subfamily of every gate here: the output layer's weights set
    to zero and its bias to ``log w`` (a tabular gate's every row to ``log w``). A fit
    started there begins at the constant gate's value with ``Z = sum_k w_k = 1`` exactly,
    and the first step already moves the hidden layers (the output weights receive a
    gradient, through which the rest then does). Weights below ``1e-12`` are raised to it
    (a logit of ``-inf`` would never move).
    """
    w = torch.as_tensor(w, dtype=torch.float64).reshape(-1)
    if w.numel() == 0 or not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
        raise InvalidOptionError(f"constant gate weights must be non-negative, finite and not all zero, got {w.tolist()}")
    log_w = torch.log(torch.clamp(w / w.sum(), min=1e-12))
    with torch.no_grad():
        if isinstance(gate, TabularGate):
            if log_w.numel() != gate.p:
                raise ShapeMismatchError(f"{log_w.numel()} constant weights for a gate over p={gate.p} experts")
            gate.logits.copy_(log_w.to(gate.logits).expand_as(gate.logits))
            return gate
        layer = output_layer(gate)
        if layer is None or layer.bias is None:
            raise InvalidOptionError(f"{type(gate).__name__} has no output layer with a bias to start at a constant gate")
        if log_w.numel() != layer.out_features:
            raise ShapeMismatchError(f"{log_w.numel()} constant weights for a gate over p={layer.out_features} experts")
        layer.weight.zero_()
        layer.bias.copy_(log_w.to(layer.bias))
    return gate


class _Standardise(nn.Module):
    """Fixed affine map ``(z - mean) / std`` whose statistics travel with the state dict.

    A constant feature (``std`` zero) is only centred.
    """

    def __init__(self, d: int, mean=None, std=None):
        super().__init__()
        mean = torch.zeros(d) if mean is None else torch.as_tensor(mean).reshape(d)
        std = torch.ones(d) if std is None else torch.as_tensor(std).reshape(d)
        self.register_buffer("mean", mean.clone().to(torch.get_default_dtype()))
        std = std.clone().to(torch.get_default_dtype())
        self.register_buffer("std", torch.where(std > 1e-12, std, torch.ones_like(std)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std


class TabularGate(nn.Module):
    """``f_theta(x) = theta[x]``: a free logit vector for each of n outcome ids.

    The gate family is then all of G1's per-outcome simplices, so on an enumerated finite
    instance the fit solves the same problem as the exact solvers of ``theory``.
    Initialised at zero (the uniform gate).
    """

    def __init__(self, n_outcomes: int, p: int):
        super().__init__()
        self.n_outcomes, self.p = int(n_outcomes), int(p)
        self.logits = nn.Parameter(torch.zeros(self.n_outcomes, self.p))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits[ids.reshape(-1).long()]


class LinearGate(nn.Module):
    """``f_theta(z) = W (z - mean)/std + b`` on a d-dimensional feature vector z."""

    def __init__(self, d: int, p: int, *, mean=None, std=None):
        super().__init__()
        self.d, self.p = int(d), int(p)
        self.standardise = _Standardise(self.d, mean, std)
        self.linear = nn.Linear(self.d, self.p)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardise(z))


class MLPGate(nn.Module):
    """``f_theta(z)`` = a small MLP (GELU hidden layers) on standardised features z."""

    def __init__(self, d: int, p: int, *, hidden: int = 64, depth: int = 2, mean=None, std=None):
        super().__init__()
        self.d, self.p = int(d), int(p)
        self.hidden, self.depth = int(hidden), int(depth)
        self.standardise = _Standardise(self.d, mean, std)
        layers: list[nn.Module] = []
        width = self.d
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        layers.append(nn.Linear(width, self.p))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardise(z))


class CausalSequenceGate(nn.Module):
    """A tiny causal model over token ids (embedding + GRU) that outputs gate logits.

    ``forward(tokens)`` gives the logits for the whole sequence (from the state after the
    last token): a gate ``g(x, .)`` for sequences x. ``prefix_logits(tokens)`` gives, for
    every position t, logits that depend on ``x_<t`` only (a begin-of-sequence token is
    prepended and the sequence shifted right): a causal router ``gamma(x_<t, .)``.
    """

    def __init__(self, vocab: int, p: int, *, embed: int = 16, hidden: int = 32):
        super().__init__()
        self.vocab, self.p = int(vocab), int(p)
        self.embed_dim, self.hidden = int(embed), int(hidden)
        self.bos = self.vocab
        self.embed = nn.Embedding(self.vocab + 1, embed)
        self.rnn = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, self.p)

    def _states(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        if tokens.ndim != 2:
            raise ShapeMismatchError(f"sequence gate expects (batch x T) token ids, got shape {tuple(tokens.shape)}")
        bos = torch.full_like(tokens[:, :1], self.bos)
        out, _ = self.rnn(self.embed(torch.cat([bos, tokens], dim=1)))
        return out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self._states(tokens)[:, -1])

    def prefix_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B x T x p) logits; entry t depends on ``tokens[:, :t]`` only."""
        return self.head(self._states(tokens)[:, :-1])


def make_gate(kind: str, p: int, *, n_outcomes: int | None = None, d: int | None = None,
              vocab: int | None = None, mean=None, std=None, hidden: int = 64,
              length: int | None = None) -> nn.Module:
    """Build a gate by name (one of :data:`GATE_KINDS`) with the size it needs."""
    if kind == "tabular":
        if n_outcomes is None:
            raise InvalidOptionError("gate 'tabular' needs n_outcomes (the number of integer outcome ids)")
        return TabularGate(n_outcomes, p)
    if kind == "linear":
        return LinearGate(d, p, mean=mean, std=std)
    if kind == "mlp":
        return MLPGate(d, p, hidden=hidden, mean=mean, std=std)
    if kind == "sequence":
        if vocab is None:
            raise InvalidOptionError("gate 'sequence' needs vocab (the number of token ids)")
        return CausalSequenceGate(vocab, p)
    if kind == "transformer":
        if vocab is None or length is None:
            raise InvalidOptionError("gate 'transformer' needs vocab (the number of token ids) and length (the longest T)")
        return TransformerSequenceGate(vocab, p, length)
    raise InvalidOptionError(f"unknown gate {kind!r}; choose one of {', '.join(GATE_KINDS)}")


class TransformerSequenceGate(nn.Module):
    """Gate logits from one pre-norm transformer block over the whole token sequence.

    ``f_theta(x) = W LN(mean_t h_t(x)) + b`` where ``h_t`` is the output at position t of
    one causal block (``torch.nn.TransformerEncoderLayer``: multi-head self-attention and
    a GELU MLP, no dropout) over token plus position embeddings. Causal attention lets
    each position compare its token with the earlier ones (a step ``x_t - x_{t-1}`` is
    visible at position t); the mean over positions then reads the whole sequence.
    """

    def __init__(self, vocab: int, p: int, length: int, *, width: int = 6, heads: int = 2, mlp_ratio: int = 4):
        super().__init__()
        if width % heads:
            raise InvalidOptionError(f"transformer gate width {width} is not divisible by heads={heads}")
        self.vocab, self.p, self.length = int(vocab), int(p), int(length)
        self.width, self.heads, self.mlp_ratio = int(width), int(heads), int(mlp_ratio)
        self.tok = nn.Embedding(self.vocab, self.width)
        self.pos = nn.Embedding(self.length, self.width)
        self.block = nn.TransformerEncoderLayer(self.width, self.heads, dim_feedforward=self.mlp_ratio * self.width,
                                                dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(self.width)
        self.head = nn.Linear(self.width, self.p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        if tokens.ndim != 2 or tokens.shape[1] > self.length:
            raise ShapeMismatchError(f"transformer gate expects (batch x T <= {self.length}) token ids, "
                                     f"got shape {tuple(tokens.shape)}")
        t = tokens.shape[1]
        h = self.tok(tokens) + self.pos.weight[:t]
        mask = torch.ones(t, t, dtype=torch.bool, device=tokens.device).triu(1)  # True: may not attend
        h = self.block(h, src_mask=mask)
        return self.head(self.norm(h.mean(dim=1)))
