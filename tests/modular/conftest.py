import torch

# The test workers share two cores with other work: one intra-op thread each.
torch.set_num_threads(1)
