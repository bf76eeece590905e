"""A tiny Llama for tests and the CPU demo (SmolLM2's 49152-token vocabulary)."""

import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      vocab_size=49152,
      hidden_size=128,
      intermediate_size=384,
      num_layers=4,
      num_heads=4,
      num_kv_heads=2,
      head_dim=32,
      rope_theta=10000.0,
      rms_norm_eps=1e-5,
      tie_word_embeddings=True,
      max_position_embeddings=2048,
      param_dtype="float32",
      dtype="float32",
      bos_token_id=1,
      eos_token_id=2,
      pad_token_id=2,
  ))
