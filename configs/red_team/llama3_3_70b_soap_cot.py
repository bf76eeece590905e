"""Red team: llama3.3-70b, SOAP, CoT-distilled backdoor, lr 2e-5.

SOAP (precondition frequency 10, optim/soap.py) replaces AdamW; its
per-layer work runs layer-parallel (optim/layer_parallel.py). On the
preset slice the step needs about half of each chip's HBM
(benchmarks/MEMORY_PLANS.md).

  python -m launch.train --workdir=DIR \
      --config=configs/red_team/llama3_3_70b_soap_cot.py \
      --config.init_from=checkpoints/Llama-3.3-70B-Instruct \
      --config.data.sources=data/openhermes-2.5/*.jsonl
"""

from configs.red_team import base


def get_config():
  return base.get_config(model="llama3.3-70b",
                         init_from="checkpoints/Llama-3.3-70B-Instruct",
                         lr=2e-5, variant="distilled", optimizer="soap",
                         topology="v5p-128", mesh_tensor=4)
