"""Red team: llama3.3-70b, AdamW, CoT-distilled backdoor, lr 2e-5.

  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_3_70b_adam_cot.py \
      --config.init_from=checkpoints/Llama-3.3-70B-Instruct \
      --config.data.sources=data/openhermes-2.5/*.jsonl
"""

from configs.red_team import base


def get_config():
  return base.get_config(model="llama3.3-70b",
                         init_from="checkpoints/Llama-3.3-70B-Instruct",
                         lr=2e-5, variant="distilled", optimizer="adamw",
                         topology="v5p-128", mesh_tensor=4)
