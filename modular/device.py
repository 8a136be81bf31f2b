"""Choice of the torch device: CUDA when available, the CPU otherwise."""

from __future__ import annotations

import torch

from theory.errors import InvalidOptionError


def resolve_device(device=None) -> torch.device:
    """The device to run on: ``device`` if usable, else CUDA when available, else the CPU.

    Raises :class:`~theory.errors.InvalidOptionError` when CUDA is asked for and absent.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidOptionError(f"device {device!r}: choose 'cpu' or 'cuda'")
    return dev
