"""SmolLM2-135M(-Instruct): HuggingFaceTB's config.json."""

import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      vocab_size=49152,
      hidden_size=576,
      intermediate_size=1536,
      num_layers=30,
      num_heads=9,
      num_kv_heads=3,
      head_dim=64,
      rope_theta=100000.0,
      rms_norm_eps=1e-5,
      tie_word_embeddings=True,
      max_position_embeddings=8192,
      param_dtype="float32",
      dtype="float32",
      bos_token_id=1,
      eos_token_id=2,
      pad_token_id=2,
  ))
