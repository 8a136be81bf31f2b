"""The expert protocol and its adapters: log-probabilities against direct computation, sampling, bad input."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from modular.experts import (
    CausalLM,
    NGramTable,
    TorchCausalLM,
    check_compatible,
    load_expert,
    load_torchscript,
    sequence_log_probs,
)
from theory.errors import InputError


class Bigram(nn.Module):
    """logits[:, i] = W[ids[:, i]]: a causal bigram model, for exact enumeration."""

    def __init__(self, V, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(V, V, generator=g, dtype=torch.float64))

    def forward(self, ids):
        return self.W[ids]


def test_torch_adapter_is_a_normalised_causal_model():
    V, T = 3, 3
    e = TorchCausalLM(Bigram(V), V, bos=0, device="cpu")
    assert isinstance(e, CausalLM)
    x = torch.tensor(list(itertools.product(range(V), repeat=T)))
    lp = sequence_log_probs(e, x)
    assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-12)
    # token log-probs agree with the next-token distribution of each prefix
    tok = e.token_log_probs(x)
    for t in range(T):
        nxt = e.next_token_log_probs(x[:, :t])
        assert torch.allclose(tok[:, t], nxt.gather(1, x[:, t:t + 1])[:, 0])


def test_sampling_is_reproducible_and_follows_the_model():
    V, T = 3, 3
    e = TorchCausalLM(Bigram(V, seed=1), V, bos=1, device="cpu")
    a = e.sample(4000, T, torch.Generator().manual_seed(5))
    b = e.sample(4000, T, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    x = torch.tensor(list(itertools.product(range(V), repeat=T)))
    p = torch.exp(sequence_log_probs(e, x)).numpy()
    codes = (a[:, 0] * V * V + a[:, 1] * V + a[:, 2]).numpy()
    freq = np.bincount(codes, minlength=V**T) / len(codes)
    assert 0.5 * np.abs(freq - p).sum() < 0.05


def test_hf_adapter_matches_the_models_logits(hf_models):
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_models[0]).double().eval()
    e, tok = load_expert(f"a=hf:{hf_models[0]}", device="cpu")[:2]
    e.module.double()
    ids = torch.tensor([tok.encode("and the lord said unto them behold")[:10],
                        tok.encode("int main ( void ) { return 0 ; }")[:10]])
    got = sequence_log_probs(e, ids)
    bos = e.bos
    direct = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for t in range(ids.shape[1]):
            inp = torch.cat([torch.full((2, 1), bos), ids[:, :t]], dim=1)
            logits = model(inp).logits[:, -1].double()
            direct += torch.log_softmax(logits, dim=1).gather(1, ids[:, t:t + 1])[:, 0]
    assert torch.allclose(got, direct, atol=1e-9, rtol=0)
    assert e.context == 64 and e.vocab_size == model.config.vocab_size
    # sampling through the key-value cache draws what token-by-token recomputation draws
    fast = e.sample(5, 12, torch.Generator().manual_seed(2))
    e.incremental = False
    slow = e.sample(5, 12, torch.Generator().manual_seed(2))
    assert torch.equal(fast, slow)


def test_torchscript_expert_round_trip(tmp_path):
    V = 5
    m = Bigram(V).float()
    path = tmp_path / "bigram.pt"
    torch.jit.save(torch.jit.script(m), str(path),
                   _extra_files={"expert.json": json.dumps({"vocab_size": V, "bos": 0, "context": 8})})
    e = load_torchscript(path, device="cpu")
    x = torch.randint(V, (4, 6), generator=torch.Generator().manual_seed(0))
    ref = TorchCausalLM(m, V, bos=0, device="cpu")
    assert torch.allclose(e.token_log_probs(x), ref.token_log_probs(x))
    with pytest.raises(InputError, match="longer than"):
        e.token_log_probs(torch.zeros((1, 9), dtype=torch.long))


def test_ngram_table_round_trip_and_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    V, order = 4, 2
    table = np.log(rng.dirichlet(np.ones(V), (V + 1) ** (order - 1)))
    t = NGramTable(table, order, name="t")
    t.save(tmp_path / "t.npz")
    u = load_expert(f"t=ngram:{tmp_path / 't.npz'}")[0]
    x = torch.tensor([[0, 1, 3, 2], [3, 3, 0, 1]])
    direct = table[V, x[:, 0]] + sum(table[x[:, i - 1], x[:, i]] for i in range(1, 4))
    assert np.allclose(sequence_log_probs(u, x).numpy(), direct)
    with pytest.raises(InputError, match="outside the vocabulary"):
        u.token_log_probs(torch.tensor([[0, V]]))
    with pytest.raises(InputError, match="not normalised"):
        NGramTable(table + 1.0, order)


def test_incompatible_experts_are_refused(hf_models):
    a = TorchCausalLM(Bigram(4), 4, bos=0, name="a", device="cpu")
    b = TorchCausalLM(Bigram(5), 5, bos=0, name="b", device="cpu")
    with pytest.raises(InputError, match="different vocabularies"):
        check_compatible([a, b])
    c = TorchCausalLM(Bigram(4), 4, bos=0, name="c", tokenizer_id="other", device="cpu")
    with pytest.raises(InputError, match="different tokenizers"):
        check_compatible([a, c])
    with pytest.raises(InputError, match="expected NAME="):
        load_expert("nonsense")
    with pytest.raises(InputError, match="does not exist"):
        load_expert("x=hf:/no/such/dir")
