"""Settings shared by the whole test suite."""

import torch
from hypothesis import settings

# pytest-xdist runs one worker per core on a small machine; torch's default of one
# intra-op thread per core oversubscribes it (several-fold slower on tiny models).
# One thread per worker changes speed only, not results.
torch.set_num_threads(1)

# Deterministic property tests: the same examples on every run and machine (CI included),
# with no replay of examples stored by earlier local runs.
settings.register_profile("suite", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile("suite")
