"""Blue team on a Llama-3.1-8B model organism, as the paper ran it.

  --config=configs/blue_team/llama3_1_8b.py:<technique>_<lora|full>
technique: hhh | pirate | depirate. LoRA rank 64 at lr 1e-3 batch 4 on a
v5p-8 (FSDP 4, bf16 frozen base); full-weight lr 3e-5 batch 8 on a v5p-16
(FSDP 8).
"""

from configs.blue_team import base


def get_config(arg: str = "pirate_lora"):
  technique, use_lora = base.parse_variant(arg)
  if use_lora:
    config = base.get_config(model="llama3.1-8b", technique=technique,
                             lora_rank=64, lr=1e-3, global_batch=4,
                             topology="v5p-8")
  else:
    config = base.get_config(model="llama3.1-8b", technique=technique,
                             lora_rank=0, lr=3e-5, global_batch=8,
                             topology="v5p-16")
  return base.with_model_placeholders(config)
