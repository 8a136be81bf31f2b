"""Checksums of training data, recorded by every fitted model."""

from __future__ import annotations

import hashlib

import numpy as np


def data_checksum(*arrays) -> str:
    """sha256 (hex) of the dtypes, shapes and bytes of the given arrays, in order.

    ``None`` entries are skipped; lists of 1-D arrays (documents) are hashed element by
    element, so the checksum changes with any token, weight or document boundary.
    """
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            continue
        parts = a if isinstance(a, (list, tuple)) else [a]
        for part in parts:
            arr = np.ascontiguousarray(part)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
    return h.hexdigest()
