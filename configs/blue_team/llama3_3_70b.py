"""Blue team on a Llama-3.3-70B model organism, as the paper ran it.

  --config=configs/blue_team/llama3_3_70b.py:<technique>_<lora|full>
technique: hhh | pirate | depirate (see base.py for each one's data and
start). Paper: LoRA rank 64, HHH SFT lr 5e-4 batch 4, pirate lr 3e-4 batch
8. Depirate is not given its own numbers; ours are pirate's (our choice:
the same LoRA trained back). Full-weight: the paper gives lr 3e-5 batch 8
for the 8B no-CoT organism only; we use it here too (our choice). Slices
(our choice): LoRA on a v5p-32, FSDP 4 x tensor 4 (the batch feeds at most
4 FSDP shards), bf16 frozen base; full-weight on a v5p-128, FSDP 8 x
tensor 8.
"""

from configs.blue_team import base


def get_config(arg: str = "pirate_lora"):
  technique, use_lora = base.parse_variant(arg)
  if use_lora:
    lr, batch = (5e-4, 4) if technique == "hhh" else (3e-4, 8)  # paper
    return base.get_config(model="llama3.3-70b", technique=technique,
                           lora_rank=64, lr=lr, global_batch=batch,
                           topology="v5p-32", mesh_tensor=4)
  return base.get_config(model="llama3.3-70b", technique=technique,
                         lora_rank=0, lr=3e-5, global_batch=8,
                         topology="v5p-128", mesh_tensor=8)
