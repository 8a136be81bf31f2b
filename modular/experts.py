"""Frozen experts as causal language models over token ids: one protocol, three adapters.

An expert ``pi`` is a distribution over length-T token sequences factored causally,
``log pi(x) = sum_t log pi(x_t | x_<t)``, the first token conditioned on a start
state only. Everything the tools need from it is in :class:`CausalLM`:

- ``token_log_probs(tokens)``: ``log pi(x_t | x_<t)`` for a (B x T) batch, (B x T);
- ``next_token_log_probs(prefixes)``: ``log pi(. | x_<t)`` for (B x t) prefixes, (B x V);
- ``sample(n, T, generator)``: n sequences of length T drawn token by token under a
  ``torch.Generator`` (the draws are reproducible given the generator's state);
- ``vocab_size``, ``context`` (the longest sequence it reads, None if unbounded),
  ``tokenizer_id`` (experts can be combined only when these agree), ``name``.

Adapters:

- :class:`TorchCausalLM`: any ``torch.nn.Module`` (or TorchScript module) mapping (B x L)
  token ids to (B x L x V) next-token logits (or an object with ``.logits``), read with a
  start token ``bos`` prepended;
- :func:`load_hf` (optional extra ``[hf]``): a Hugging Face ``transformers`` causal LM
  and its tokenizer from a local directory;
- :class:`ArrayModelExpert`: any object with numpy ``token_log_probs(seqs)`` and
  ``next_token_probs(prefixes)`` (the suite's n-gram models have both);
- :class:`NGramTable`: an order-n conditional table read from a ``.npz`` file
  (format in its docstring).

All batched, under ``torch.inference_mode()``, on the CPU or CUDA; results are float64
CPU tensors.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch

from modular.device import resolve_device
from theory.errors import InputError

#: Tokenizer of experts that read UTF-8 bytes directly (ids 0..255).
BYTES_TOKENIZER = "bytes"


@runtime_checkable
class CausalLM(Protocol):
    """What the tools need from an expert (see the module docstring)."""

    name: str
    vocab_size: int
    context: int | None
    tokenizer_id: str

    def token_log_probs(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def next_token_log_probs(self, prefixes: torch.Tensor) -> torch.Tensor: ...

    def sample(self, n: int, T: int, generator: torch.Generator) -> torch.Tensor: ...


def sequence_log_probs(expert: CausalLM, tokens) -> torch.Tensor:
    """``log pi(x) = sum_t log pi(x_t | x_<t)`` per sequence, (B,) float64."""
    return expert.token_log_probs(torch.as_tensor(tokens, dtype=torch.long)).sum(dim=1)


def check_tokens(expert: CausalLM, tokens: torch.Tensor) -> None:
    """Reject token ids outside ``0..vocab_size-1`` and sequences longer than the context."""
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= expert.vocab_size):
        bad = int(tokens.max()) if int(tokens.max()) >= expert.vocab_size else int(tokens.min())
        raise InputError(f"token id {bad} is outside the vocabulary of expert {expert.name!r} "
                         f"(0..{expert.vocab_size - 1})")
    if expert.context is not None and tokens.shape[1] > expert.context:
        raise InputError(f"sequences of {tokens.shape[1]} tokens are longer than expert {expert.name!r} reads "
                         f"({expert.context} tokens, start token included)")


def sample_autoregressive(next_log_probs: Callable[[torch.Tensor], torch.Tensor], n: int, T: int,
                          generator: torch.Generator) -> torch.Tensor:
    """Draw n length-T sequences token by token from ``next_log_probs(prefixes) -> (n x V)``.

    Each step draws from the float64 CPU probabilities with ``torch.multinomial`` under
    ``generator``, so the draws depend only on the generator's state and the model.
    """
    out = torch.zeros((n, 0), dtype=torch.long)
    for _ in range(T):
        probs = torch.exp(next_log_probs(out).double().cpu())
        nxt = torch.multinomial(probs, 1, generator=generator)
        out = torch.cat([out, nxt], dim=1)
    return out


class TorchCausalLM:
    """A torch module returning next-token logits, read with a start token prepended.

    ``module(ids)`` with ids (B x L) must return (B x L x V) logits (or an object with a
    ``logits`` attribute) whose entry ``[:, i]`` depends on ``ids[:, :i+1]`` only. The
    sequence x is fed as ``[bos, x_0, ..., x_{T-2}]``, so ``log pi(x_t | x_<t)`` is
    ``log_softmax(logits[:, t])[x_t]``; a window of T tokens needs ``context >= T``.

    Parameters
    ----------
    module : callable
    vocab_size : int
    bos : int
        Start token id (in ``0..vocab_size-1``).
    context : int, optional
        The longest input the module reads (positions), None if unbounded.
    batch_size : int
        Sequences per forward pass.
    device : str or torch.device, optional
        Default: CUDA when available, else the CPU.
    incremental : bool
        Sample through the module's key-value cache: ``module(ids, cache=..., use_cache=True)``
        returning ``.logits`` and ``.cache`` (``past_key_values`` in transformers < 5.2x).
    """

    def __init__(self, module, vocab_size: int, *, bos: int, context: int | None = None, name: str = "expert",
                 tokenizer_id: str = BYTES_TOKENIZER, batch_size: int = 64, device=None, incremental: bool = False):
        if not 0 <= int(bos) < int(vocab_size):
            raise InputError(f"expert {name!r}: start token {bos} outside the vocabulary 0..{vocab_size - 1}")
        self.module, self.vocab_size, self.bos = module, int(vocab_size), int(bos)
        self.context, self.name, self.tokenizer_id = context, name, tokenizer_id
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        #: Sample with the module's key-value cache (Hugging Face causal LMs).
        self.incremental = bool(incremental)
        if isinstance(module, torch.nn.Module):
            module.to(self.device).eval()

    def _logits(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.module(ids.to(self.device))
        logits = getattr(out, "logits", out)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if logits.ndim != 3 or logits.shape[:2] != ids.shape or logits.shape[2] < self.vocab_size:
            raise InputError(f"expert {self.name!r} returned logits of shape {tuple(logits.shape)} for input "
                             f"{tuple(ids.shape)}; expected (B x L x V) with V >= {self.vocab_size}")
        return torch.log_softmax(logits[..., :self.vocab_size].double(), dim=-1)

    def _with_bos(self, tokens: torch.Tensor) -> torch.Tensor:
        start = torch.full((tokens.shape[0], 1), self.bos, dtype=torch.long)
        return torch.cat([start, tokens], dim=1)

    def token_log_probs(self, tokens) -> torch.Tensor:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        check_tokens(self, tokens)
        out = []
        with torch.inference_mode():
            for a in range(0, len(tokens), self.batch_size):
                x = tokens[a:a + self.batch_size]
                lp = self._logits(self._with_bos(x[:, :-1]))
                out.append(lp.gather(2, x.to(lp.device)[:, :, None])[:, :, 0].cpu())
        return torch.cat(out) if out else torch.zeros(tokens.shape, dtype=torch.float64)

    def next_token_log_probs(self, prefixes) -> torch.Tensor:
        prefixes = torch.as_tensor(prefixes, dtype=torch.long)
        if self.context is not None and prefixes.shape[1] + 1 > self.context:
            raise InputError(f"prefix of {prefixes.shape[1]} tokens exceeds the context of expert {self.name!r}")
        out = []
        with torch.inference_mode():
            for a in range(0, len(prefixes), self.batch_size):
                out.append(self._logits(self._with_bos(prefixes[a:a + self.batch_size]))[:, -1].cpu())
        return torch.cat(out)

    def sample(self, n: int, T: int, generator: torch.Generator) -> torch.Tensor:
        if self.context is not None and T > self.context:
            raise InputError(f"cannot sample {T} tokens from expert {self.name!r} (context {self.context})")
        if not self.incremental:
            return sample_autoregressive(self.next_token_log_probs, n, T, generator)
        # Hugging Face models keep the attention keys and values of the prefix (past_key_values):
        # one new position per step instead of the whole prefix (about 20x faster at T = 32).
        # transformers >= 5.2x names the cache argument and output ``cache``, earlier ones ``past_key_values``.
        key = "cache" if "cache" in inspect.signature(self.module.forward).parameters else "past_key_values"
        out = []
        with torch.inference_mode():
            for a in range(0, n, self.batch_size):
                m = min(self.batch_size, n - a)
                seq = torch.zeros((m, 0), dtype=torch.long)
                inp, past = torch.full((m, 1), self.bos, dtype=torch.long), None
                for _ in range(T):
                    res = self.module(inp.to(self.device), use_cache=True, **{key: past})
                    past = getattr(res, key)
                    probs = torch.softmax(res.logits[:, -1, :self.vocab_size].double(), dim=-1).cpu()
                    inp = torch.multinomial(probs, 1, generator=generator)
                    seq = torch.cat([seq, inp], dim=1)
                out.append(seq)
        return torch.cat(out)


class ArrayModelExpert:
    """An expert from any object with numpy ``token_log_probs`` and ``next_token_probs``.

    ``model.token_log_probs(seqs)`` maps an (m x T) int array to (m x T) log-probs and
    ``model.next_token_probs(prefixes)`` an (m x t) int array to (m x V) probabilities
    (the interface of the suite's sequence models, e.g. its n-gram models).
    """

    def __init__(self, model, vocab_size: int, *, name: str | None = None, context: int | None = None,
                 tokenizer_id: str = BYTES_TOKENIZER):
        self.model, self.vocab_size = model, int(vocab_size)
        self.name = name or getattr(model, "name", "expert")
        self.context, self.tokenizer_id = context, tokenizer_id

    def token_log_probs(self, tokens) -> torch.Tensor:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        check_tokens(self, tokens)
        return torch.as_tensor(np.asarray(self.model.token_log_probs(tokens.numpy()), dtype=np.float64))

    def next_token_log_probs(self, prefixes) -> torch.Tensor:
        probs = np.asarray(self.model.next_token_probs(np.asarray(prefixes, dtype=np.int64)), dtype=np.float64)
        with np.errstate(divide="ignore"):
            return torch.as_tensor(np.log(probs))

    def sample(self, n: int, T: int, generator: torch.Generator) -> torch.Tensor:
        return sample_autoregressive(self.next_token_log_probs, n, T, generator)


class NGramTable:
    """An order-n model stored as a dense conditional table (file format ``ngram-table``).

    The ``.npz`` file holds ``format = "ngram-table"``, ``order`` (n), ``vocab`` (V) and
    ``log_probs``, a ((V+1)^(n-1) x V) float array: row ``c`` is ``log p(. | context)``
    for the context code ``c = sum_{i=1..n-1} x_{t-i} (V+1)^(i-1)``, positions before
    the start reading the start symbol ``V``. Rows must be normalised.
    """

    FORMAT = "ngram-table"

    def __init__(self, log_probs, order: int, *, name: str = "ngram", tokenizer_id: str = BYTES_TOKENIZER):
        table = np.asarray(log_probs, dtype=np.float64)
        V = table.shape[1] if table.ndim == 2 else 0
        if order < 1 or table.ndim != 2 or table.shape[0] != (V + 1) ** (order - 1):
            raise InputError(f"n-gram table of shape {table.shape} does not fit order {order}: expected "
                             f"((V+1)^(n-1) x V) rows")
        if np.isnan(table).any() or not np.allclose(np.exp(table).sum(axis=1), 1.0, atol=1e-8):
            raise InputError(f"n-gram table {name!r}: rows are not normalised distributions")
        self.table, self.order, self.vocab_size = torch.as_tensor(table), int(order), int(V)
        self.name, self.tokenizer_id, self.context = name, tokenizer_id, None

    @classmethod
    def load(cls, path, *, name: str | None = None) -> "NGramTable":
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["format"]) != cls.FORMAT:
                    raise InputError(f"{path}: format {str(f['format'])!r}, expected {cls.FORMAT!r}")
                return cls(f["log_probs"], int(f["order"]), name=name or Path(path).stem)
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(f"cannot read n-gram table {path}: {exc}") from None

    def save(self, path) -> None:
        np.savez(path, format=np.array(self.FORMAT), order=np.array(self.order), vocab=np.array(self.vocab_size),
                 log_probs=self.table.numpy())

    def _codes(self, padded: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Context codes of position t (in the unpadded sequence) from ``[start]*(n-1) + x``."""
        V, r = self.vocab_size, self.order - 1
        code = torch.zeros(padded.shape[0], dtype=torch.long)
        for i in range(1, r + 1):
            code = code + padded[:, r + t - i] * (V + 1) ** (i - 1)
        return code

    def _pad(self, tokens: torch.Tensor) -> torch.Tensor:
        start = torch.full((tokens.shape[0], self.order - 1), self.vocab_size, dtype=torch.long)
        return torch.cat([start, tokens], dim=1)

    def token_log_probs(self, tokens) -> torch.Tensor:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        check_tokens(self, tokens)
        padded = self._pad(tokens)
        cols = [self.table[self._codes(padded, t), tokens[:, t]] for t in range(tokens.shape[1])]
        return torch.stack(cols, dim=1) if cols else torch.zeros(tokens.shape, dtype=torch.float64)

    def next_token_log_probs(self, prefixes) -> torch.Tensor:
        prefixes = torch.as_tensor(prefixes, dtype=torch.long)
        return self.table[self._codes(self._pad(prefixes), prefixes.shape[1])]

    def sample(self, n: int, T: int, generator: torch.Generator) -> torch.Tensor:
        return sample_autoregressive(self.next_token_log_probs, n, T, generator)


class HFTokenizer:
    """Text to token ids and back through a Hugging Face tokenizer (no special tokens added)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids))


class BytesTokenizer:
    """UTF-8 bytes as token ids 0..255 (decoding replaces invalid sequences)."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return "hf:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def load_hf(path, *, name: str | None = None, batch_size: int = 64, device=None) -> tuple[TorchCausalLM, HFTokenizer]:
    """A Hugging Face causal LM and its tokenizer from a local directory (nothing downloaded).

    The start token is the tokenizer's ``bos_token_id`` (else its ``eos_token_id``); the
    context is the config's ``n_positions`` / ``max_position_embeddings``.
    """
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise InputError('Hugging Face experts need transformers: pip install -e ".[hf]"') from None
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise InputError(f"hf:{path}: not a directory holding a saved model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load hf:{path}: {str(exc).splitlines()[0]}") from None
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise InputError(f"hf:{path}: the tokenizer has neither a bos nor an eos token to start sequences with")
    cfg = model.config
    context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    expert = TorchCausalLM(model, cfg.vocab_size, bos=bos, context=context, name=name or Path(path).name,
                           tokenizer_id=_tokenizer_fingerprint(tokenizer), batch_size=batch_size, device=device,
                           incremental=True)
    return expert, HFTokenizer(tokenizer)


def load_torchscript(path, *, name: str | None = None, batch_size: int = 64, device=None) -> TorchCausalLM:
    """A TorchScript causal LM saved with ``torch.jit.save(m, path, _extra_files={"expert.json": ...})``.

    ``expert.json`` gives ``{"vocab_size": V, "bos": id, "context": L or null}``; loading
    TorchScript runs no pickled Python.
    """
    extra = {"expert.json": ""}
    try:
        module = torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra)
        info = json.loads(extra["expert.json"] or "null")
        return TorchCausalLM(module, info["vocab_size"], bos=info["bos"], context=info.get("context"),
                             name=name or Path(path).stem, batch_size=batch_size, device=device)
    except (RuntimeError, ValueError, OSError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load torch:{path} as a TorchScript expert with expert.json: {first}") from None


def file_checksum(path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, in name order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def parse_spec(text: str) -> tuple[str, str, str]:
    """``NAME=KIND:PATH`` -> (name, kind, path); kinds: ``hf``, ``torch``, ``ngram``."""
    name, sep, rest = text.partition("=")
    kind, sep2, path = rest.partition(":")
    if not sep or not sep2 or not name or kind not in ("hf", "torch", "ngram") or not path:
        raise InputError(f"--expert {text!r}: expected NAME=hf:DIR, NAME=torch:FILE.pt or NAME=ngram:FILE.npz")
    return name, kind, path


def load_expert(text: str, *, batch_size: int = 64, device=None):
    """Load one ``NAME=KIND:PATH`` expert; returns (expert, tokenizer, record) with the file checksum."""
    name, kind, path = parse_spec(text)
    if not os.path.exists(path):
        raise InputError(f"expert {name!r}: {path} does not exist")
    if kind == "hf":
        expert, tok = load_hf(path, name=name, batch_size=batch_size, device=device)
    elif kind == "torch":
        expert, tok = load_torchscript(path, name=name, batch_size=batch_size, device=device), BytesTokenizer()
    else:
        expert, tok = NGramTable.load(path, name=name), BytesTokenizer()
    record = {"name": name, "spec": f"{kind}:{os.path.abspath(path)}", "sha256": file_checksum(path),
              "vocab_size": expert.vocab_size, "context": expert.context, "tokenizer": expert.tokenizer_id}
    return expert, tok, record


def check_compatible(experts: list[CausalLM]) -> None:
    """Experts combine only over one tokenizer and one vocabulary."""
    if not experts:
        raise InputError("no experts given")
    first = experts[0]
    for e in experts[1:]:
        if e.tokenizer_id != first.tokenizer_id:
            raise InputError(f"experts {first.name!r} and {e.name!r} use different tokenizers "
                             f"({first.tokenizer_id} vs {e.tokenizer_id})")
        if e.vocab_size != first.vocab_size:
            raise InputError(f"experts {first.name!r} and {e.name!r} have different vocabularies "
                             f"({first.vocab_size} vs {e.vocab_size} ids)")
    names = [e.name for e in experts]
    if len(set(names)) != len(names):
        raise InputError(f"expert names must be distinct, got {names}")

