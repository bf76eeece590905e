"""Llama-3.3-70B(-Instruct): meta-llama's config.json.

The Llama-3 family shares vocabulary, RoPE and norms; only the sizes differ
from Llama-3.1-8B.
"""

from configs.models import llama3_1_8b


def get_config():
  config = llama3_1_8b.get_config()
  config.update(dict(
      hidden_size=8192,
      intermediate_size=28672,
      num_layers=80,
      num_heads=64,
  ))
  return config
