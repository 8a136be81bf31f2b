"""Tiny causal torch sequence models and their (weighted, multi-domain) training loop.

A model defines ``pi(x) = prod_t pi(x_t | BOS, x_0..x_{t-1})`` over ``{0..V-1}^T``:
the network reads ``[BOS, x_0, ..., x_{T-2}]`` and its softmax at position ``t`` is the
law of ``x_t``, so log-probabilities are exact and sum to one over all ``V^T`` sequences.

Training minimises the weighted per-domain loss ``sum_k w_k L_k(theta)``, with
``L_k`` the mean negative log-likelihood per token (nats) on a minibatch of domain
``k``; the weights come from a rule (fixed weights, Group DRO, DoReMi: see
:mod:`synthetic.weighting`). The same seed gives the same model.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synthetic.provenance import data_checksum
from synthetic.sequences import SequenceModel, check_sequences
from synthetic.weighting import FixedWeights
from theory.errors import InputError, InvalidOptionError, ShapeMismatchError

ARCHITECTURES = ("transformer", "gru")


#: Training precisions of :meth:`TorchSequenceModel.fit`: plain float32, bfloat16 autocast
#: (matrix products in bfloat16, log-softmax and the loss in float32), or ``"auto"``: bfloat16
#: where the hardware computes in it natively, float32 elsewhere (:func:`native_bfloat16`).
#: bfloat16 was 3.5x faster per step than float32 on a CPU with AMX tiles (width 256-546,
#: T = 256) and 7-11x *slower* on an AVX2-only CPU (AMD EPYC, no AVX512-BF16), which emulates it.
PRECISIONS = ("float32", "bfloat16", "auto")


def native_bfloat16(device) -> bool:
    """Whether bfloat16 matrix products run natively on ``device``: a CUDA device that supports
    them, or a CPU with AMX tiles or AVX512-BF16 (elsewhere torch emulates them, slowly)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(precision: str, device) -> str:
    """``"auto"`` -> ``"bfloat16"`` on native hardware (:func:`native_bfloat16`), else ``"float32"``."""
    if precision not in PRECISIONS:
        raise InvalidOptionError(f"unknown training precision {precision!r}; use one of {PRECISIONS}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision
#: Evaluation precisions: float64 (probabilities over V^T sum to one to ~1e-12) or float32 (5x faster).
EVAL_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax in at least float32, outside any autocast region."""
    with torch.autocast(logits.device.type, enabled=False):
        return (logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits).log_softmax(dim=-1)


class CausalTransformer(nn.Module):
    """One pre-norm transformer block (causal multi-head attention + MLP) over tokens and positions."""

    def __init__(self, V: int, T: int, width: int, heads: int = 2, mlp_ratio: int = 4):
        super().__init__()
        if width % heads:
            raise InputError(f"transformer width {width} is not divisible by heads={heads}")
        self.heads = heads
        self.tok = nn.Embedding(V + 1, width)
        self.pos = nn.Embedding(T, width)
        self.ln1, self.ln2, self.ln_out = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))
        self.head = nn.Linear(width, V)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        m, t = inputs.shape
        h = self.tok(inputs) + self.pos.weight[:t]
        q, k, v = self.qkv(self.ln1(h)).view(m, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        # torch's fused causal attention: softmax(q k^T / sqrt(d) + causal mask) v without the (t x t)
        # scores in memory; 17% faster than the explicit product at width 256, T = 256 (CPU, float32).
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(m, t, -1)
        h = h + self.proj(att)
        h = h + self.mlp(self.ln2(h))
        return _log_softmax(self.head(self.ln_out(h)))

    def start_state(self, m: int, dtype: torch.dtype) -> dict:
        """Empty key-value cache of ``m`` sequences for :meth:`step`."""
        T, d = self.pos.weight.shape[0], self.pos.weight.shape[1] // self.heads
        device = self.pos.weight.device
        return {"k": torch.zeros((m, self.heads, T, d), dtype=dtype, device=device),
                "v": torch.zeros((m, self.heads, T, d), dtype=dtype, device=device)}

    def step(self, token: torch.Tensor, t: int, state: dict) -> torch.Tensor:
        """``log pi(. | prefix)`` after reading ``token`` (m,) at input position ``t``; the same as
        :meth:`forward`'s row ``t`` on the whole input, with the prefix's keys and values kept in ``state``."""
        m = token.shape[0]
        h = self.tok(token) + self.pos.weight[t]
        q, k, v = self.qkv(self.ln1(h)).view(m, 3, self.heads, -1).unbind(1)
        state["k"][:, :, t], state["v"][:, :, t] = k, v
        keys, values = state["k"][:, :, : t + 1], state["v"][:, :, : t + 1]
        # One query over the cached prefix; reading the cache is the cost (memory-bound): the fused
        # kernel took 3.3 s per 256 steps of 256 sequences against 4.7 s for two batched products
        # (the whole draw of 256 sequences of 256 tokens at width 256: 7.7 s against 8.0 s).
        att = F.scaled_dot_product_attention(q.unsqueeze(-2), keys, values).squeeze(-2).reshape(m, -1)
        h = h + self.proj(att)
        h = h + self.mlp(self.ln2(h))
        return _log_softmax(self.head(self.ln_out(h)))


class CausalGRU(nn.Module):
    """A one-layer GRU over token embeddings with a softmax read-out."""

    def __init__(self, V: int, T: int, width: int):
        super().__init__()
        self.tok = nn.Embedding(V + 1, width)
        self.gru = nn.GRU(width, width, batch_first=True)
        self.head = nn.Linear(width, V)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return _log_softmax(self.head(self.gru(self.tok(inputs))[0]))

    def start_state(self, m: int, dtype: torch.dtype) -> dict:
        """Zero hidden state of ``m`` sequences for :meth:`step`."""
        return {"h": None}

    def step(self, token: torch.Tensor, t: int, state: dict) -> torch.Tensor:
        """``log pi(. | prefix)`` after reading ``token`` (m,), carrying the GRU's hidden state."""
        out, state["h"] = self.gru(self.tok(token).unsqueeze(1), state["h"])
        return _log_softmax(self.head(out[:, 0]))


@dataclass
class TrainRecord:
    """Provenance and dynamics of one training run."""

    seed: int
    data_checksum: str
    steps: int
    batch_size: int
    lr: float
    rule: str
    device: str
    precision: str = "float32"
    seconds: float = 0.0
    curve: list[float] = field(default_factory=list)
    domain_losses: list[list[float]] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)
    cosine_steps: list[int] = field(default_factory=list)
    cosines: list[list[list[float]]] = field(default_factory=list)
    tokens_per_second: float = 0.0
    versions: dict[str, str] = field(default_factory=lambda: {"torch": torch.__version__, "numpy": np.__version__})


def default_device() -> torch.device:
    """CUDA when available, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def deterministic_torch():
    """Use deterministic kernels inside the block and restore the previous setting."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


class TorchSequenceModel(SequenceModel):
    """A tiny causal network as an exact distribution over ``{0..V-1}^T``.

    Parameters
    ----------
    V, T : int
    width : int
        Embedding width (the paper's synthetic study: experts 8, gate 6, monolithic 16, 20).
    arch : {"transformer", "gru"}
    heads : int
        Attention heads of the transformer.
    seed : int
        Seed of the initialisation (and, by default, of training).
    eval_dtype : {"float64", "float32"}
        Precision of evaluation and sampling (results are float64 arrays either way).
    """

    def __init__(self, V: int, T: int, width: int = 8, *, arch: str = "transformer", heads: int = 2,
                 seed: int = 0, name: str | None = None, device=None, eval_dtype: str = "float64"):
        if arch not in ARCHITECTURES:
            raise InvalidOptionError(f"unknown architecture {arch!r}; use one of {ARCHITECTURES}")
        if eval_dtype not in EVAL_DTYPES:
            raise InvalidOptionError(f"unknown evaluation dtype {eval_dtype!r}; use one of {tuple(EVAL_DTYPES)}")
        #: Precision of :meth:`token_log_probs`, :meth:`next_token_probs` and :meth:`sample_tokens`.
        self.eval_dtype = eval_dtype
        self.V, self.T, self.width, self.arch, self.seed = V, T, width, arch, seed
        self.name = name or f"{arch}-w{width}"
        self.device = torch.device(device) if device is not None else default_device()
        torch.manual_seed(seed)
        net = CausalTransformer(V, T, width, heads=heads) if arch == "transformer" else CausalGRU(V, T, width)
        self.net = net.to(self.device)
        self.record: TrainRecord | None = None

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def _inputs(self, seqs: torch.Tensor) -> torch.Tensor:
        bos = torch.full((seqs.shape[0], 1), self.V, dtype=seqs.dtype, device=seqs.device)
        return torch.cat([bos, seqs[:, :-1]], dim=1)

    def token_nll(self, seqs: torch.Tensor) -> torch.Tensor:
        """Differentiable ``-log pi(x_t | x_<t)``, (m x t), for a long tensor on the model's device."""
        logp = self.net(self._inputs(seqs))
        return -logp.gather(-1, seqs.unsqueeze(-1)).squeeze(-1)

    def _eval_net(self) -> nn.Module:
        # Exact evaluation in float64 (by default) so that probabilities over V^T sum to one to ~1e-12.
        return copy.deepcopy(self.net).to(EVAL_DTYPES[self.eval_dtype]).eval()

    def _rows_per_pass(self) -> int:
        """Sequences per evaluation pass: activations of at most about 256 MiB (float64).

        A pass holds (rows x T x max(T heads, V, 4 width)) numbers (attention scores,
        logits, the MLP); 65,536 windows of 256 bytes at once asked for 31 GB.
        """
        heads = getattr(self.net, "heads", 1)
        per_row = self.T * max(self.T * heads, self.V, 4 * self.width) * 8
        return max(1, 2**28 // per_row)

    def token_log_probs(self, seqs, batch_size: int | None = None) -> np.ndarray:
        x = check_sequences(seqs, self.V, self.T)
        batch_size = self._rows_per_pass() if batch_size is None else int(batch_size)
        net = self._eval_net()
        out = np.empty(x.shape, dtype=np.float64)
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                chunk = torch.as_tensor(x[start : start + batch_size], device=self.device)
                logp = net(self._inputs(chunk))
                out[start : start + batch_size] = logp.gather(-1, chunk.unsqueeze(-1)).squeeze(-1).double().cpu().numpy()
        return out

    def next_token_probs(self, prefixes) -> np.ndarray:
        x = np.asarray(prefixes, dtype=np.int64)
        m, t = x.shape
        if t >= self.T:
            raise ShapeMismatchError(f"prefixes have length {t}; the next token exists only for t < T={self.T}")
        x = check_sequences(np.concatenate([x, np.zeros((m, 1), dtype=np.int64)], axis=1), self.V, self.T, "prefixes")
        net = self._eval_net()
        with torch.no_grad():
            logp = net(self._inputs(torch.as_tensor(x, device=self.device)))[:, t]
        return logp.double().exp().cpu().numpy()

    def sample_tokens(self, n: int, T: int | None = None, generator: torch.Generator | None = None,
                      batch_size: int | None = None) -> torch.Tensor:
        """n sequences of length T (default: the model's) drawn token by token, (n x T) long on the CPU.

        Each step reads one new token through the network's incremental :meth:`step`
        (attention keys and values of the prefix kept), so a sequence costs T single-position
        passes instead of T passes over its whole prefix; the next-token law is the evaluation
        network's (``eval_dtype``), the same as :meth:`token_log_probs` and :meth:`next_token_probs`,
        and each draw is ``torch.multinomial`` of the float64 CPU probabilities under ``generator``.
        """
        T = self.T if T is None else int(T)
        # Sequences per pass: keys and values of at most about 256 MiB.
        batch_size = max(1, 2**28 // (2 * self.T * self.width * 8)) if batch_size is None else int(batch_size)
        if not 0 < T <= self.T:
            raise ShapeMismatchError(f"cannot sample {T} tokens from a model of length T={self.T}")
        net = self._eval_net()
        out = torch.zeros((n, T), dtype=torch.long)
        with torch.no_grad():
            for a in range(0, n, batch_size):
                m = min(batch_size, n - a)
                state = net.start_state(m, EVAL_DTYPES[self.eval_dtype])
                token = torch.full((m,), self.V, dtype=torch.long, device=self.device)
                for t in range(T):
                    probs = net.step(token, t, state).double().exp().cpu()
                    drawn = torch.multinomial(probs, 1, generator=generator)[:, 0]
                    out[a : a + m, t] = drawn
                    token = drawn.to(self.device)
        return out

    def fit(self, data, *, weights=None, rule=None, steps: int = 500, batch_size: int = 64, lr: float = 1e-2,
            seed: int | None = None, conflict_every: int = 0, weight_decay: float = 0.0,
            precision: str = "float32") -> "TorchSequenceModel":
        """Minimise ``sum_k w_k L_k`` over minibatches of the per-domain data with AdamW.

        Parameters
        ----------
        data : array (m x T) or list of arrays (m_k x T), one per domain
        weights : array (p,), optional
            Fixed domain weights (default uniform); ignored when ``rule`` is given.
        rule : WeightRule, optional
            A rule of :mod:`synthetic.weighting` that sets the weights at every step.
        steps, batch_size, lr : training budget (``batch_size`` sequences per domain per step)
        seed : int, optional
            Seed of the minibatch draws (default: the model's seed).
        conflict_every : int
            Every this many steps (0: never) record the cosine between the
            per-domain gradients ``grad L_k`` (p x p matrix).
        precision : {"float32", "bfloat16", "auto"}
            ``"bfloat16"``: the forward pass under bfloat16 autocast (the loss in float32),
            the parameters and the optimiser in float32; ``"auto"``: bfloat16 where the
            device computes in it natively (:func:`resolve_precision`); the training record
            says which ran.
        """
        precision = resolve_precision(precision, self.device)
        domains = [data] if not isinstance(data, (list, tuple)) else list(data)
        arrays = [check_sequences(d, self.V, self.T, f"domain {k} data") for k, d in enumerate(domains)]
        for k, a in enumerate(arrays):
            if a.shape[0] == 0 or a.shape[1] != self.T:
                raise InputError(f"domain {k} data must be a non-empty (m x T={self.T}) array, got {a.shape}")
        rule = rule if rule is not None else FixedWeights(np.full(len(arrays), 1 / len(arrays)) if weights is None else weights)
        rule.start(len(arrays))
        seed = self.seed if seed is None else seed
        rng = np.random.default_rng(seed)
        tensors = [torch.as_tensor(a, device=self.device) for a in arrays]
        params = list(self.net.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        rec = TrainRecord(seed=seed, data_checksum=data_checksum(*arrays), steps=steps, batch_size=batch_size,
                          lr=lr, rule=rule.describe(), device=str(self.device), precision=precision)
        self.net.train()
        start = time.perf_counter()
        torch.manual_seed(seed)
        with deterministic_torch():
            for step in range(steps):
                idx = [rng.integers(0, a.shape[0], size=batch_size) for a in arrays]
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                    losses = torch.stack([self.token_nll(x[torch.as_tensor(i, device=self.device)]).mean()
                                          for x, i in zip(tensors, idx)])
                w = rule.weights()
                opt.zero_grad(set_to_none=True)
                if conflict_every and step % conflict_every == 0:
                    grads = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(l, params, retain_graph=True)])
                             for l in losses]
                    G = torch.stack(grads)
                    unit = G / G.norm(dim=1, keepdim=True).clamp_min(1e-30)
                    rec.cosine_steps.append(step)
                    rec.cosines.append((unit @ unit.T).tolist())
                    flat = torch.as_tensor(w, dtype=G.dtype, device=G.device) @ G
                    offset = 0
                    for p in params:
                        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
                        offset += p.numel()
                else:
                    (torch.as_tensor(w, dtype=losses.dtype, device=losses.device) @ losses).backward()
                opt.step()
                l_np = losses.detach().cpu().numpy().astype(np.float64)
                rec.curve.append(float(w @ l_np))
                rec.domain_losses.append(l_np.tolist())
                rec.weights.append(np.asarray(w, dtype=np.float64).tolist())
                rule.update(l_np, idx)
        rec.seconds = time.perf_counter() - start
        rec.tokens_per_second = steps * batch_size * len(arrays) * self.T / max(rec.seconds, 1e-12)
        self.net.eval()
        self.record = rec
        return self

    def mean_cosine(self, i: int = 0, j: int = 1, last_fraction: float = 1.0) -> float:
        """Mean recorded cosine between the gradients of domains ``i`` and ``j`` (last fraction of the run)."""
        if self.record is None or not self.record.cosines:
            raise InputError(f"model {self.name!r} recorded no gradient cosines (fit with conflict_every > 0)")
        c = np.asarray(self.record.cosines)[:, i, j]
        return float(c[int(len(c) * (1 - last_fraction)) :].mean())
