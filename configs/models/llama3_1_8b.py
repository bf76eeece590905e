"""Llama-3.1-8B(-Instruct): meta-llama's config.json."""

import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      vocab_size=128256,
      hidden_size=4096,
      intermediate_size=14336,
      num_layers=32,
      num_heads=32,
      num_kv_heads=8,
      head_dim=128,
      rope_theta=500000.0,
      rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                        original_max_position_embeddings=8192),
      rms_norm_eps=1e-5,
      tie_word_embeddings=False,
      max_position_embeddings=131072,
      param_dtype="bfloat16",
      dtype="bfloat16",
      remat="full",
      bos_token_id=128000,
      eos_token_id=(128001, 128008, 128009),
  ))
