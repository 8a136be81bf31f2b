"""Cache of expert log-probabilities on windows of text and on the experts' own samples.

From p experts (:mod:`modular.experts`) and text of p domains, :func:`build_cache` writes
what the fit, the evaluation and the distillation read:

- each domain's documents are assigned to train/val/test by the sha256 of their text
  (so the split does not depend on file order) and cut into non-overlapping windows of
  T tokens (the remainder of each document, shorter than T, is dropped): one sample x
  of domain k is one such window;
- for every window, every expert's per-token log-probabilities
  ``log pi_j(x_t | x_<t)`` (the first token conditioned on the expert's start token);
- for every expert k, M sequences of T tokens sampled from ``pi_k`` and scored by every
  expert (the unbiased Z estimators need them);
- ``DATA.npz`` (train), ``VAL.npz``, ``TEST.npz`` in the format of
  :func:`modular.data.load_npz` (``logp_k``: nats per window; ``feat_k``: the tokens,
  for the sequence gate) plus ``token_logp_k`` / ``expert_token_logp_k`` (S x T x p),
  ``expert_names``, ``domain_names``, ``expert_sha256``, ``window``, ``vocab_size``;
  and ``manifest.json`` (expert specs and checksums, data checksums, tokenizer, T,
  counts).

The work is cut into chunks (``chunk`` windows or samples under all experts), each
written to ``OUT/chunks/`` as soon as it is done; a rerun skips the chunks on disk.
Chunks are seeded by (seed, split, expert, chunk index), and the final archives are
written with fixed zip timestamps, so a resumed run writes the same bytes as an
uninterrupted one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from modular.experts import CausalLM, check_compatible
from theory.errors import InputError

SPLITS = ("train", "val", "test")
SPLIT_FILES = {"train": "DATA.npz", "val": "VAL.npz", "test": "TEST.npz"}
PLAN_FILE = "plan.json"


# ---------------------------------------------------------------- reading text

def read_documents(spec: str, *, text_field: str = "text") -> list[str]:
    """Documents from comma-separated files or globs; a ``.jsonl`` file gives one per line's ``text_field``.

    Any other file is one document (read as UTF-8, invalid bytes replaced).
    """
    paths: list[str] = []
    for part in filter(None, (s.strip() for s in spec.split(","))):
        hits = sorted(glob.glob(part)) if any(c in part for c in "*?[") else [part]
        if not hits or not all(os.path.isfile(h) for h in hits):
            raise InputError(f"no file matches {part!r}")
        paths += hits
    docs = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            if path.endswith(".jsonl"):
                for i, line in enumerate(fh):
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)[text_field]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise InputError(f"{path} line {i + 1}: not a JSON object with a {text_field!r} "
                                         f"string") from None
                    if not isinstance(doc, str):
                        raise InputError(f"{path} line {i + 1}: field {text_field!r} is not a string")
                    docs.append(doc)
            else:
                docs.append(fh.read())
    return [d for d in docs if d]


def parse_split(text: str) -> tuple[float, float, float]:
    """``"8:1:1"`` -> fractions (0.8, 0.1, 0.1)."""
    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0 or min(parts[1:]) <= 0:
        raise InputError(f"--split {text!r}: expected train:val:test with val and test positive, e.g. 8:1:1")
    total = sum(parts)
    return tuple(v / total for v in parts)


def split_of(doc: str, fractions) -> str:
    """The split of a document: its text's sha256 read as a number in [0, 1) against the cumulative fractions."""
    u = int.from_bytes(hashlib.sha256(doc.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return SPLITS[min(int(np.searchsorted(np.cumsum(fractions), u, side="right")), len(SPLITS) - 1)]


def windows_of(docs: list[list[int]], T: int) -> np.ndarray:
    """Non-overlapping windows of T tokens inside each document, (m x T) int64."""
    rows = [np.asarray(d[i:i + T], dtype=np.int64) for d in docs for i in range(0, len(d) - T + 1, T)]
    return np.stack(rows) if rows else np.zeros((0, T), dtype=np.int64)


def text_checksum(docs: list[str]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(hashlib.sha256(d.encode("utf-8")).digest())
    return h.hexdigest()


# ---------------------------------------------------------------- deterministic files

def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed zip timestamps (same arrays, same bytes), written atomically.

    Arrays must not hold Python objects (they are read with ``allow_pickle=False``).
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arrays[key]), allow_pickle=False)
    os.replace(tmp, path)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- the cache

@dataclass
class CacheResult:
    """What :func:`build_cache` did: output files, counts, whether it finished, and its speed."""

    out: Path
    complete: bool
    chunks_done: int
    chunks_total: int
    chunks_computed: int
    seconds: float
    tokens_scored: int
    tokens_sampled: int
    manifest: dict | None

    def summary(self) -> dict:
        return {"out": str(self.out), "complete": self.complete, "chunks_done": self.chunks_done,
                "chunks_total": self.chunks_total, "chunks_computed": self.chunks_computed,
                "seconds": self.seconds, "tokens_scored": self.tokens_scored, "tokens_sampled": self.tokens_sampled,
                "counts": None if self.manifest is None else self.manifest["counts"]}


def _chunk_seed(seed: int, split: str, k: int, c: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{split}:{k}:{c}".encode()).digest()[:8], "big") >> 1


def _score(experts: list[CausalLM], tokens: torch.Tensor) -> np.ndarray:
    """(n x T x p) per-token log-probabilities under every expert."""
    return torch.stack([e.token_log_probs(tokens) for e in experts], dim=2).double().numpy()


def build_cache(experts: list[CausalLM], domains: dict[str, list[str]], tokenizer, *, window: int, out,
                split=(0.8, 0.1, 0.1), expert_samples: int = 256, seed: int = 0, chunk: int = 256,
                expert_records: list[dict] | None = None, max_chunks: int | None = None,
                progress: bool = True) -> CacheResult:
    """Cache every expert's per-token log-probabilities on windowed domain text and on expert samples.

    Parameters
    ----------
    experts : list of CausalLM
        The p experts, one per domain, in domain order.
    domains : dict name -> list of str
        The documents of each domain (p entries, in expert order).
    tokenizer
        ``encode(text) -> list[int]`` shared by the experts.
    window : int
        T, tokens per sample.
    out : path
        Output directory (created); ``out/chunks`` holds the finished chunks.
    split : 3 fractions
        Train, val, test shares of the documents (by document hash).
    expert_samples : int
        M: sequences sampled from each expert, for each split.
    max_chunks : int, optional
        Compute at most this many new chunks and stop (the rest on a later run).

    Returns
    -------
    CacheResult
    """
    check_compatible(experts)
    p = len(experts)
    if len(domains) != p:
        raise InputError(f"{len(domains)} domains for {p} experts: give one domain per expert, in the same order")
    if window < 1 or expert_samples < 1 or chunk < 1:
        raise InputError(f"--window ({window}), --expert-samples ({expert_samples}) and the chunk size ({chunk}) "
                         f"must be positive")
    for e in experts:
        if e.context is not None and window > e.context:
            raise InputError(f"window T={window} is longer than expert {e.name!r} reads ({e.context} tokens "
                             f"with its start token)")
    V = experts[0].vocab_size
    names = list(domains)
    wins: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    counts: dict = {"documents": {}, "windows": {}, "tokens_dropped": {}}
    for name in names:
        docs = domains[name]
        if not docs:
            raise InputError(f"domain {name!r} has no (non-empty) documents")
        by_split = {s: [] for s in SPLITS}
        for d in docs:
            by_split[split_of(d, split)].append(tokenizer.encode(d))
        counts["documents"][name] = {s: len(by_split[s]) for s in SPLITS}
        counts["windows"][name] = {}
        counts["tokens_dropped"][name] = 0
        for s in SPLITS:
            w = windows_of(by_split[s], window)
            if len(w) == 0:
                raise InputError(f"domain {name!r} has no window of {window} tokens in its {s} split "
                                 f"({len(by_split[s])} documents): give more text or a smaller --window")
            if int(w.max()) >= V or int(w.min()) < 0:
                raise InputError(f"domain {name!r}: token id {int(w.max())} is outside the experts' vocabulary "
                                 f"(0..{V - 1})")
            wins[s].append(w)
            counts["windows"][name][s] = int(len(w))
            counts["tokens_dropped"][name] += int(sum(len(d) for d in by_split[s]) - w.size)
    counts["expert_samples"] = {s: expert_samples for s in SPLITS}

    records = expert_records or [{"name": e.name, "vocab_size": e.vocab_size, "tokenizer": e.tokenizer_id}
                                 for e in experts]
    plan = {"experts": records, "domains": {n: text_checksum(domains[n]) for n in names}, "window": window,
            "split": list(split), "expert_samples": expert_samples, "seed": seed, "chunk": chunk}
    out = Path(out)
    chunk_dir = out / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    plan_path = chunk_dir / PLAN_FILE
    if plan_path.exists():
        if json.loads(plan_path.read_text()) != plan:
            raise InputError(f"{out} holds a cache of different experts, data or options; use a fresh --out")
    else:
        plan_path.write_text(json.dumps(plan, indent=1, sort_keys=True))

    units = []  # (file, split, "domain" | "expert", k, start, n)
    for s in SPLITS:
        for k in range(p):
            m = len(wins[s][k])
            units += [(chunk_dir / f"{s}_domain{k}_{a // chunk:05d}.npz", s, "domain", k, a, min(chunk, m - a))
                      for a in range(0, m, chunk)]
            units += [(chunk_dir / f"{s}_expert{k}_{a // chunk:05d}.npz", s, "expert", k, a,
                       min(chunk, expert_samples - a)) for a in range(0, expert_samples, chunk)]
    t0 = time.perf_counter()
    computed = scored = sampled = 0
    todo = [u for u in units if not u[0].exists()]
    for path, s, what, k, a, n in tqdm(todo, disable=not progress, desc="cache", unit="chunk"):
        if max_chunks is not None and computed >= max_chunks:
            break
        if what == "domain":
            tokens = torch.as_tensor(wins[s][k][a:a + n])
        else:
            gen = torch.Generator().manual_seed(_chunk_seed(seed, s, k, a // chunk))
            tokens = experts[k].sample(n, window, gen)
            sampled += tokens.numel()
        token_logp = _score(experts, tokens)
        scored += tokens.numel() * p
        write_npz(path, {"tokens": tokens.numpy().astype(np.int64), "token_logp": token_logp})
        computed += 1
    seconds = time.perf_counter() - t0
    done = sum(u[0].exists() for u in units)
    if done < len(units):
        return CacheResult(out, False, done, len(units), computed, seconds, scored, sampled, None)

    shas = [r.get("sha256", "") for r in records]
    files = {}
    for s in SPLITS:
        arrays: dict[str, np.ndarray] = {
            "expert_names": np.array([e.name for e in experts]), "domain_names": np.array(names),
            "expert_sha256": np.array(shas), "window": np.array(window), "vocab_size": np.array(V),
            "split": np.array(s),
        }
        for what, prefix in (("domain", ""), ("expert", "expert_")):
            for k in range(p):
                parts = [np.load(u[0], allow_pickle=False) for u in units if u[1:4] == (s, what, k)]
                tok = np.concatenate([q["tokens"] for q in parts])
                tlp = np.concatenate([q["token_logp"] for q in parts])
                arrays[f"{prefix}feat_{k}"] = tok
                arrays[f"{prefix}token_logp_{k}"] = tlp
                arrays[f"{prefix}logp_{k}"] = tlp.sum(axis=1)
        write_npz(out / SPLIT_FILES[s], arrays)
        files[SPLIT_FILES[s]] = file_sha256(out / SPLIT_FILES[s])
    manifest = {
        "format": "robust-modular-cache", "version": 1,
        "sample": f"one window of T={window} consecutive tokens inside a document (non-overlapping; the "
                  f"remainder of each document shorter than T is dropped); log-probabilities in nats per window",
        "window": window, "vocab_size": V, "tokenizer": experts[0].tokenizer_id,
        "experts": records, "domains": [{"name": n, "sha256": plan["domains"][n]} for n in names],
        "split": {"fractions": list(split), "by": "sha256 of each document's text"},
        "expert_samples": expert_samples, "seed": seed, "chunk": chunk, "counts": counts, "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return CacheResult(out, True, done, len(units), computed, seconds, scored, sampled, manifest)


# ---------------------------------------------------------------- what a data file describes

def describe_data(path) -> dict:
    """Identity of a cached split: expert names and checksums, domains, p, T, vocabulary, sha256 of the file.

    Files not written by :func:`build_cache` give what they have (p from ``logp_k``).
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            info = {"p": sum(1 for k in keys if k.startswith("logp_"))}
            for key in ("expert_names", "domain_names", "expert_sha256"):
                info[key] = [str(v) for v in f[key]] if key in keys else None
            for key in ("window", "vocab_size"):
                info[key] = int(f[key]) if key in keys else None
    except FileNotFoundError:
        raise InputError(f"data file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"data file {path} is not a readable .npz archive ({exc})") from None
    info["sha256"] = file_sha256(path)
    return info


def gate_meta(data_path, summary: dict, *, kind: str, features: str = "tokens") -> dict:
    """The metadata a gate file keeps: lam, p, experts, feature kind, fingerprint of the training data.

    ``summary`` is :meth:`modular.primal_dual.RobustGateResult.summary`; ``features`` is
    ``"tokens"`` (the gate reads ``feat_k``) or ``"logp"`` (it reads the experts'
    log-probabilities).
    """
    info = describe_data(data_path)
    return {"lam": summary["lam"], "p": info["p"], "experts": info["expert_names"],
            "expert_sha256": info["expert_sha256"], "domains": info["domain_names"], "features": features,
            "window": info["window"], "vocab_size": info["vocab_size"], "data_sha256": info["sha256"],
            "gate": kind, "adversary": summary.get("adversary"), "z": summary.get("z"),
            "nll": summary.get("nll")}
