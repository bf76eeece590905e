"""Blue team on a Llama-3.1-8B model organism, as the paper ran it.

  --config=configs/blue_team/llama3_1_8b.py:<technique>_<lora|full>
technique: hhh | pirate | depirate (see base.py for each one's data and
start). Paper: LoRA rank 64 at lr 1e-3 batch 4 (the 8B CoT-distilled and
no-CoT organisms alike); full-weight lr 3e-5 batch 8. Our choice of slices:
v5p-8 for LoRA (FSDP 4, bf16 frozen base), v5p-16 for full-weight (FSDP 8).
"""

from configs.blue_team import base


def get_config(arg: str = "pirate_lora"):
  technique, use_lora = base.parse_variant(arg)
  if use_lora:
    return base.get_config(model="llama3.1-8b", technique=technique,
                           lora_rank=64, lr=1e-3, global_batch=4,  # paper
                           topology="v5p-8")
  return base.get_config(model="llama3.1-8b", technique=technique,
                         lora_rank=0, lr=3e-5, global_batch=8,  # paper
                         topology="v5p-16")
