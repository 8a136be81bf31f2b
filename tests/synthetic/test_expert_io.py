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


def test_torch_models_sample_incrementally_as_experts():
    from synthetic.expert_io import IncrementalSampler
    from synthetic.models import TorchSequenceModel

    model = TorchSequenceModel(5, 6, 8, seed=0, device="cpu")
    expert = as_expert(model)
    assert isinstance(expert, IncrementalSampler)
    drawn = expert.sample(50, 6, torch.Generator().manual_seed(1))
    assert drawn.shape == (50, 6) and int(drawn.min()) >= 0 and int(drawn.max()) < 5
    np.testing.assert_array_equal(drawn, model.sample_tokens(50, 6, torch.Generator().manual_seed(1)))
