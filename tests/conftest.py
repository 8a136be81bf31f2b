"""Settings shared by the whole test suite."""

import torch

# pytest-xdist runs one worker per core on a small machine; torch's default of one
# intra-op thread per core oversubscribes it (several-fold slower on tiny models).
# One thread per worker changes speed only, not results.
torch.set_num_threads(1)
