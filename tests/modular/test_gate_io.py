"""Gate files: every gate kind round-trips bit for bit; foreign, pickled and corrupt files are refused."""

import os
import pickle

import pytest
import torch

from modular.gate_io import load_gate, save_gate
from modular.gates import make_gate
from theory.errors import InputError


def _gates():
    torch.manual_seed(0)
    yield make_gate("tabular", 3, n_outcomes=7), torch.arange(7)
    yield make_gate("linear", 3, d=4, mean=torch.randn(4), std=torch.rand(4) + 0.5), torch.randn(5, 4)
    yield make_gate("mlp", 2, d=4, hidden=8), torch.randn(5, 4)
    yield make_gate("sequence", 3, vocab=11), torch.randint(0, 11, (5, 6))


@pytest.mark.parametrize("index", range(4))
def test_round_trip_is_bit_identical(tmp_path, index):
    gate, x = list(_gates())[index]
    with torch.no_grad():
        for prm in gate.parameters():
            prm.add_(torch.randn_like(prm))
    path = tmp_path / "gate.pt"
    save_gate(path, gate, meta={"lam": [0.2, 0.8], "note": "x"})
    loaded = load_gate(path)
    assert loaded.meta == {"lam": [0.2, 0.8], "note": "x"}
    gate.eval()
    with torch.no_grad():
        assert torch.equal(gate(x), loaded.gate(x))


def test_pickled_code_is_not_executed(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "robust-modular-gate", "x": Evil()}, fh)
    with pytest.raises(InputError):
        load_gate(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a torch file", None])
def test_corrupt_or_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "g.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError):
        load_gate(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_gate(tmp_path / "nope.pt")
