"""Child process for the kill -9 resume test: runs the tiny federation into a run directory."""

import sys

import torch

from fedsafe.federation.simulator import Simulator

sys.path.insert(0, sys.argv[2])
from _tiny import tiny_data, tiny_model, tiny_spec, tiny_store  # noqa: E402

torch.set_num_threads(1)
store = tiny_store(sys.argv[1])
with store.lock():
    Simulator(spec=tiny_spec(rounds=int(sys.argv[3]), keep_received=3), data=tiny_data(), model_factory=tiny_model,
              store=store).run()
