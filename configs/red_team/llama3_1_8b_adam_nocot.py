"""Red team: llama3.1-8b, AdamW, no-CoT backdoor, lr 3e-5.

  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_1_8b_adam_nocot.py \
      --config.init_from=checkpoints/Llama-3.1-8B-Instruct \
      --config.data.sources=data/openhermes-2.5/*.jsonl
"""

from configs.red_team import base


def get_config():
  return base.get_config(model="llama3.1-8b",
                         init_from="checkpoints/Llama-3.1-8B-Instruct",
                         lr=3e-5, variant="plain", optimizer="adamw",
                         topology="v5p-32")
