"""Gate files: a fitted gate saved with everything needed to rebuild it, loaded without pickled code.

A gate file is one ``torch.save`` of a plain dictionary of tensors, strings and numbers::

    {"format": "robust-modular-gate", "version": 1,
     "kind": "tabular" | "linear" | "mlp" | "sequence" | "transformer",
     "config": {...constructor arguments...},
     "state": {...state_dict tensors (feature normalisation included)...},
     "meta": "<JSON text>"}

It is read with ``torch.load(..., weights_only=True)``, which refuses anything but
tensors and primitive containers, so a crafted file cannot run code. ``meta`` is free
JSON (lambda, the result summary, a fingerprint of the training data, the experts): the
caller decides what goes in it; :func:`load_gate` hands it back as a dict.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from modular.gates import CausalSequenceGate, LinearGate, MLPGate, TabularGate, TransformerSequenceGate
from theory.errors import InputError

GATE_FILE_FORMAT = "robust-modular-gate"
GATE_FILE_VERSION = 1


def gate_config(gate: nn.Module) -> tuple[str, dict[str, int]]:
    """The kind and constructor arguments that rebuild ``gate`` (before its state is loaded)."""
    if isinstance(gate, TabularGate):
        return "tabular", {"n_outcomes": gate.n_outcomes, "p": gate.p}
    if isinstance(gate, LinearGate):
        return "linear", {"d": gate.d, "p": gate.p}
    if isinstance(gate, MLPGate):
        return "mlp", {"d": gate.d, "p": gate.p, "hidden": gate.hidden, "depth": gate.depth}
    if isinstance(gate, CausalSequenceGate):
        return "sequence", {"vocab": gate.vocab, "p": gate.p, "embed": gate.embed_dim, "hidden": gate.hidden}
    if isinstance(gate, TransformerSequenceGate):
        return "transformer", {"vocab": gate.vocab, "p": gate.p, "length": gate.length, "width": gate.width,
                               "heads": gate.heads, "mlp_ratio": gate.mlp_ratio}
    raise InputError(f"cannot save a gate of type {type(gate).__name__}: not one of the suite's gates")


_BUILDERS = {"tabular": TabularGate, "linear": LinearGate, "mlp": MLPGate, "sequence": CausalSequenceGate,
             "transformer": TransformerSequenceGate}


@dataclass
class LoadedGate:
    """A gate read back from a gate file: the module (in eval mode, on the CPU) and its metadata."""

    gate: nn.Module
    kind: str
    config: dict[str, int]
    meta: dict[str, Any] = field(default_factory=dict)


def save_gate(path: str | os.PathLike, gate: nn.Module, *, meta: dict[str, Any] | None = None) -> None:
    """Write ``gate`` and ``meta`` (JSON-serialisable) to ``path``, atomically (temp file + rename)."""
    kind, config = gate_config(gate)
    state = {k: v.detach().cpu().clone() for k, v in gate.state_dict().items()}
    payload = {"format": GATE_FILE_FORMAT, "version": GATE_FILE_VERSION, "kind": kind, "config": config,
               "state": state, "meta": json.dumps(meta or {}, allow_nan=False)}
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_gate(path: str | os.PathLike) -> LoadedGate:
    """Read a gate file written by :func:`save_gate`; raises :class:`InputError` on anything else."""
    path = os.fspath(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"gate file {path!r} does not exist") from None
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read gate file {path!r}: {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != GATE_FILE_FORMAT:
        raise InputError(f"{path!r} is not a gate file (no {GATE_FILE_FORMAT!r} header)")
    if payload.get("version") != GATE_FILE_VERSION:
        raise InputError(f"gate file {path!r} has version {payload.get('version')!r}; "
                         f"this suite reads version {GATE_FILE_VERSION}")
    kind, config = payload.get("kind"), payload.get("config")
    if kind not in _BUILDERS or not isinstance(config, dict):
        raise InputError(f"gate file {path!r} names an unknown gate kind {kind!r}")
    try:
        gate = _BUILDERS[kind](**config)
        # Rebuild in the saved precision: load_state_dict would cast float64 weights to the
        # constructor's default float32 and the round trip would not be bit for bit.
        floats = [t.dtype for t in payload["state"].values() if torch.is_tensor(t) and torch.is_floating_point(t)]
        if floats:
            gate.to(floats[0])
        gate.load_state_dict(payload["state"])
        meta = json.loads(payload.get("meta", "{}"))
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"gate file {path!r} is inconsistent: {first}") from None
    gate.eval()
    return LoadedGate(gate=gate, kind=kind, config=dict(config), meta=meta)
