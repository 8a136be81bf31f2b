"""Fixtures of the tool tests: tiny Hugging Face experts built once per session (offline)."""

import pytest


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from transformers.utils import logging as hf_logging

    from tests.modular.hf_fixtures import build_models

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    return build_models(tmp_path_factory.mktemp("hf"))
