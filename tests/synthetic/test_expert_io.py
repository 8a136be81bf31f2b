"""The suite's n-gram models as experts: adapter and table file agree with the model."""

import numpy as np
import torch

from modular.experts import NGramTable, load_expert, sequence_log_probs
from synthetic.expert_io import as_expert, ngram_table
from synthetic.ngram import NGramModel


def _model(order, smoothing="kneser-ney"):
    rng = np.random.default_rng(0)
    return NGramModel(5, order, smoothing=smoothing).fit(rng.integers(5, size=(60, 12)))


def test_adapter_and_table_equal_the_model(tmp_path):
    for order, smoothing in ((1, "add-k"), (2, "kneser-ney"), (3, "kneser-ney")):
        model = _model(order, smoothing)
        x = np.random.default_rng(1).integers(5, size=(7, 9))
        ref = model.token_log_probs(x)
        assert np.allclose(as_expert(model).token_log_probs(torch.as_tensor(x)).numpy(), ref)
        table = ngram_table(model)
        table.save(tmp_path / f"m{order}.npz")
        loaded = load_expert(f"m=ngram:{tmp_path / f'm{order}.npz'}")[0]
        assert isinstance(loaded, NGramTable)
        assert np.allclose(loaded.token_log_probs(torch.as_tensor(x)).numpy(), ref, atol=1e-12)
        assert np.allclose(torch.exp(loaded.next_token_log_probs(torch.as_tensor(x[:, :4]))).numpy(),
                           model.next_token_probs(x[:, :4]))


def test_samples_of_the_adapter_are_reproducible():
    e = as_expert(_model(2))
    a = e.sample(20, 6, torch.Generator().manual_seed(3))
    assert torch.equal(a, e.sample(20, 6, torch.Generator().manual_seed(3)))
    assert torch.isfinite(sequence_log_probs(e, a)).all()
